import test from 'brittle'
import type { Test } from 'brittle'
import crypto from 'node:crypto'
import { connect, listen, MAX_FRAME, type SecureConnection } from '../src/cluster/transport'
import { secureStream } from '../src/cluster/stream'
import { randomKeyPair } from '../src/cluster/identity'
import { FrameConnection, type Frame } from '../src/wire/connection'
import { MessageType } from '../src/wire/messages'
import { release } from '../src/buffers'

const HOST = '127.0.0.1'

async function pair (t: Test): Promise<[SecureConnection, SecureConnection]> {
  const secret = crypto.randomBytes(32)
  let onAccept: (c: SecureConnection) => void = () => {}
  const acceptedP = new Promise<SecureConnection>((resolve) => { onAccept = resolve })
  const server = await listen({ host: HOST, port: 0, secret, keyPair: randomKeyPair() }, (c) => onAccept(c))
  t.teardown(() => server.close())
  const client = await connect({ host: HOST, port: server.address().port, secret, keyPair: randomKeyPair() })
  t.teardown(() => client.close())
  return [client, await acceptedP]
}

test('bytes written to the stream arrive intact, also writes larger than one transport frame', async (t) => {
  const [a, b] = await pair(t)
  const sa = secureStream(a)
  const sb = secureStream(b)
  const data = crypto.randomBytes(3 * MAX_FRAME + 12345)
  const got: Buffer[] = []
  let n = 0
  const done = new Promise<void>((resolve) => sb.on('data', (d: Buffer) => {
    got.push(d)
    n += d.length
    if (n === data.length + 5) resolve()
  }))
  sa.write(data.subarray(0, 1000))
  sa.write(data.subarray(1000))
  sa.write(Buffer.from('tail!'))
  await done
  t.ok(Buffer.concat(got).equals(Buffer.concat([data, Buffer.from('tail!')])), 'same bytes, same order')
  t.ok(got.every((c) => c.length <= MAX_FRAME), 'no chunk exceeds a transport frame')
  const ended = new Promise((resolve) => sb.on('end', resolve))
  sa.end()
  await ended
  t.pass('ending one side ends the other')
})

test('the wire protocol\'s FrameConnection runs over it unchanged', async (t) => {
  const [a, b] = await pair(t)
  const ca = new FrameConnection(secureStream(a))
  const cb = new FrameConnection(secureStream(b))
  const payload = crypto.randomBytes(1024 * 1024)
  const frames: Frame[] = []
  const got = new Promise<void>((resolve) => cb.on('frame', (f: Frame) => { frames.push(f); if (frames.length === 2) resolve() }))
  ca.send(MessageType.Data, 7, null, null, payload)
  ca.send(MessageType.PutEnd, 7, null, null, null)
  await got
  t.is(frames[0].type, MessageType.Data)
  t.is(frames[0].requestId, 7)
  t.ok(frames[0].payload.equals(payload), '1 MiB payload intact and its XXH64 checked')
  t.is(frames[1].type, MessageType.PutEnd)
  ca.close()
  cb.close()
})

test('a frame that came alone in a transport frame can be released; frames that shared one cannot', async (t) => {
  const [client, server] = await pair(t)
  const sending = secureStream(server)
  const sender = new FrameConnection(sending)
  const receiver = new FrameConnection(secureStream(client))  // the dialing side: its reads are its own buffers
  const got: Frame[] = []
  const arrived = new Promise<void>((resolve) => receiver.on('frame', (f: Frame) => { got.push(f); if (got.length === 3) resolve() }))
  const alone = crypto.randomBytes(300_000)
  const first = crypto.randomBytes(200_000)
  const second = crypto.randomBytes(200_000)
  sender.send(MessageType.Data, 1, null, null, alone)
  sending.cork()  // two frames in one write: one transport frame carries both
  sender.send(MessageType.Data, 2, null, null, first)
  sender.send(MessageType.Data, 3, null, null, second)
  sending.uncork()
  await arrived
  t.ok(got[0].payload.equals(alone), 'the frame alone arrives intact')
  release(got[0].payload)
  t.is(got[0].payload.length, 0, 'and its memory is given back on release')
  release(got[1].payload)
  t.ok(got[1].payload.equals(first) && got[2].payload.equals(second), 'releasing one of two frames that shared a transport frame gives back nothing')
})
