// Frames of the wire protocol (src/wire/connection.ts, rpc.ts) over in-memory streams, with
// bytes changed in transit: what each frame's XXH64 covers, and who may skip the payload; and a
// request a peer does not know.
import test, { type Test } from 'brittle'
import crypto from 'node:crypto'
import { Duplex, PassThrough } from 'node:stream'
import { FrameConnection, type Frame } from '../src/wire/connection'
import { RpcConnection } from '../src/wire/rpc'
import { MessageType, SELF_CHECKED, emptyMessage } from '../src/wire/messages'
import { RemoteSite } from '../src/cluster/remote-site'
import { EntryKind, type EntryKey } from '../src/store/types'
import { DdfsError } from '../src/errors'

/** The bytes a FrameConnection writes for one send. */
async function bytesOf (send: (c: FrameConnection) => void): Promise<Buffer> {
  const out = new PassThrough()
  const chunks: Buffer[] = []
  out.on('data', (d: Buffer) => chunks.push(d))
  const conn = new FrameConnection(Duplex.from({ readable: new PassThrough(), writable: out }))
  send(conn)
  await new Promise((resolve) => setImmediate(resolve))
  return Buffer.concat(chunks)
}

/** Feeds `bytes` to a FrameConnection: the frame it parsed, or the protocol error it raised. */
async function receive (bytes: Buffer): Promise<Frame | Error> {
  const input = new PassThrough()
  const conn = new FrameConnection(Duplex.from({ readable: input, writable: new PassThrough() }))
  const result = new Promise<Frame | Error>((resolve) => {
    conn.on('frame', resolve)
    conn.on('protocol-error', resolve)
  })
  input.write(bytes)
  return await result
}

const flip = (b: Buffer, at: number): Buffer => { const c = Buffer.from(b); c[at] ^= 1; return c }

test('a frame\'s XXH64 covers its payload, unless the payload is a self-checked fragment', async (t) => {
  const payload = crypto.randomBytes(4096)
  const plain = await bytesOf((c) => c.send(MessageType.Data, 5, null, null, payload))
  const checked = await bytesOf((c) => c.send(MessageType.Data, 5, null, null, payload, undefined, true))
  t.is(checked[4], MessageType.Data | SELF_CHECKED, 'the type byte carries the flag')
  const midPayload = 13 + 2000
  t.ok(await receive(flip(plain, midPayload)) instanceof Error, 'a changed payload byte fails an ordinary frame')
  const f = await receive(flip(checked, midPayload))
  t.ok(!(f instanceof Error) && f.selfChecked && f.payload[2000] !== payload[2000], 'a self-checked frame hands it on, marked, for its reader to check')
  t.ok(await receive(flip(checked, 6)) instanceof Error, 'a changed header byte still fails a self-checked frame')
  const notData = await bytesOf((c) => c.send(MessageType.Ack, 5, null, null, payload, undefined, true))
  t.ok(await receive(notData) instanceof Error, 'only DATA frames may be self-checked')
})

test('a request gets a self-checked reply only when it checks the payload itself', async (t) => {
  const toServer = new PassThrough()
  const toClient = new PassThrough()
  const client = new FrameConnection(Duplex.from({ readable: toClient, writable: toServer }))
  const server = new FrameConnection(Duplex.from({ readable: toServer, writable: toClient }))
  server.on('frame', (f: Frame) => server.send(MessageType.Data, f.requestId, null, null, Buffer.from('fragment'), undefined, true))
  const rpc = new RpcConnection(client, 'peer')
  t.teardown(() => rpc.close())
  await t.exception(rpc.request(MessageType.Capacity, emptyMessage, null, null, 5000), /PROTOCOL: .*does not check it/)
  const f = await rpc.request(MessageType.Capacity, emptyMessage, null, null, 5000, true)
  t.is(f.payload.toString(), 'fragment', 'accepted by a request that checks it')
})

/**
 * A RemoteSite whose peer stands in for a node of an older version (one cannot run in this
 * checkout): it acks the message types in `knows` and answers every other UNSUPPORTED, as Session
 * does. `received`: what it was sent, in order.
 */
function olderPeer (t: Test, knows: MessageType[]): { site: RemoteSite, received: Array<{ type: number, payload: Buffer }> } {
  const toServer = new PassThrough()
  const toClient = new PassThrough()
  const client = new FrameConnection(Duplex.from({ readable: toClient, writable: toServer }))
  const server = new FrameConnection(Duplex.from({ readable: toServer, writable: toClient }))
  const received: Array<{ type: number, payload: Buffer }> = []
  server.on('frame', (f: Frame) => {
    received.push({ type: f.type, payload: Buffer.from(f.payload) })
    if (knows.includes(f.type)) server.send(MessageType.Ack, f.requestId, emptyMessage, null)
    else server.sendError(f.requestId, DdfsError.UNSUPPORTED(`message type ${f.type} is not known to this node`))
  })
  const rpc = new RpcConnection(client, 'older peer')
  t.teardown(() => rpc.close())
  return { site: new RemoteSite('older peer', async () => rpc), received }
}

const nameKey = (): EntryKey => ({ id: crypto.randomBytes(16), kind: EntryKind.Name, stripe: 0, index: 0 })

test('a create reaches a peer of an older version: NamePutNew answered UNSUPPORTED is a refusal, and nothing else is sent', async (t) => {
  const { site, received } = olderPeer(t, [])
  const held = await site.putNewName(nameKey(), Buffer.from('a name record'))
  t.ok(held !== null, 'not stored: the name is set after its object, the careful way')
  t.alike(received.map((r) => r.type), [MessageType.NamePutNew])
})

test('a named put reaches a peer of an older version: NamePut answered UNSUPPORTED falls back to a plain EntryPut', async (t) => {
  const { site, received } = olderPeer(t, [MessageType.EntryPut])
  const record = Buffer.from('a name record')
  t.is(await site.putName(nameKey(), record), null, 'what it replaced there is unknown')
  t.alike(received.map((r) => r.type), [MessageType.NamePut, MessageType.EntryPut], 'asked with NamePut, then stored with EntryPut')
  t.alike(received[1].payload, record, 'the record arrived')
})

test('a create reaches a peer of an older version: CreatePut answered UNSUPPORTED becomes its manifest and its name put one by one', async (t) => {
  const { site, received } = olderPeer(t, [MessageType.EntryPut, MessageType.NamePutNew])
  const manifest = Buffer.from('a manifest')
  const record = Buffer.from('a name record')
  t.is(await site.putCreate(crypto.randomBytes(16), manifest, nameKey(), record), null, 'both stored')
  t.alike(received.map((r) => r.type).sort(), [MessageType.EntryPut, MessageType.NamePutNew, MessageType.CreatePut].sort(), 'asked with CreatePut, then one put each')
  t.alike(received.find((r) => r.type === MessageType.EntryPut)?.payload, manifest, 'the manifest arrived')
  t.alike(received.find((r) => r.type === MessageType.NamePutNew)?.payload, record, 'the record arrived')
})
