import test from 'brittle'
import type { Test } from 'brittle'
import net from 'node:net'
import crypto from 'node:crypto'
import { spawn } from 'node:child_process'
import { connect, listen, MAX_FRAME, type SecureConnection, type SecureServer, type AeadName } from '../src/cluster/transport'
import { randomKeyPair, type KeyPair } from '../src/cluster/identity'
import { Xxh64Stream } from '../src/hash'
import { createAead, HEADER_BYTES, TAG_BYTES } from '../src/cluster/aead'

const HOST = '127.0.0.1'
const GIB = 1024 * 1024 * 1024

// Child role for the cross-process test: connect, send `bytes` of a deterministic pattern in
// 1 MiB frames with backpressure, then a last frame with the XXH64 of everything sent.
if (process.argv[2] === '--sender') {
  sender(Number(process.argv[3]), Buffer.from(process.argv[4], 'hex'), Number(process.argv[5])).catch((err) => {
    console.error(err)
    process.exit(1)
  })
} else {
  tests()
}

async function sender (port: number, secret: Buffer, bytes: number): Promise<void> {
  const conn = await connect({ host: HOST, port, secret, keyPair: randomKeyPair() })
  const frame = crypto.randomBytes(1024 * 1024)
  const hasher = new Xxh64Stream()
  let sent = 0
  let i = 0
  while (sent < bytes) {
    frame.writeUInt32LE(i++, 0) // every frame differs, so a dropped or repeated frame changes the hash
    hasher.update(frame)
    sent += frame.length
    if (!conn.send(frame)) await new Promise((resolve) => conn.once('drain', () => resolve(null)))
  }
  const tail = Buffer.alloc(8)
  tail.writeBigUInt64LE(hasher.digest())
  conn.send(tail)
  await new Promise((resolve) => conn.once('close', resolve))
}

interface Pair { server: SecureServer, client: SecureConnection, accepted: SecureConnection, serverKeys: KeyPair, clientKeys: KeyPair }

async function pair (t: Test, aead?: AeadName, port?: number): Promise<Pair> {
  const secret = crypto.randomBytes(32)
  const serverKeys = randomKeyPair()
  const clientKeys = randomKeyPair()
  let onAccept: (c: SecureConnection) => void = () => {}
  const acceptedP = new Promise<SecureConnection>((resolve) => { onAccept = resolve })
  const server = await listen({ host: HOST, port: 0, secret, keyPair: serverKeys }, (c) => onAccept(c))
  t.teardown(() => server.close())
  const client = await connect({ host: HOST, port: port ?? server.address().port, secret, keyPair: clientKeys, aead })
  t.teardown(() => client.close())
  const accepted = await acceptedP
  return { server, client, accepted, serverKeys, clientKeys }
}

function collect (conn: SecureConnection, count: number): Promise<Buffer[]> {
  const frames: Buffer[] = []
  return new Promise((resolve, reject) => {
    conn.on('frame', (f) => {
      frames.push(Buffer.from(f))
      if (frames.length === count) resolve(frames)
    })
    conn.on('close', (err) => reject(err ?? new Error('closed early')))
  })
}

function waitClose (conn: SecureConnection): Promise<Error | null> {
  return new Promise((resolve) => {
    if (conn.closed) resolve(null)
    else conn.once('close', resolve)
  })
}

/**
 * A TCP proxy between client and server that understands the framing (a 34-byte hello, then
 * u32le length-prefixed frames) and lets a test rewrite the client's frames: frame 0 is the
 * handshake's auth frame.
 */
async function proxy (t: Test, target: number, rewrite: (index: number, frame: Buffer) => Buffer[]): Promise<number> {
  const server = net.createServer((down) => {
    const up = net.connect({ host: HOST, port: target })
    up.on('data', (d) => down.write(d))
    up.on('close', () => down.destroy())
    down.on('close', () => up.destroy())
    up.on('error', () => {})
    down.on('error', () => {})
    let buf = Buffer.alloc(0)
    let helloDone = false
    let index = 0
    down.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      if (!helloDone) {
        if (buf.length < 34) return
        up.write(buf.subarray(0, 34))
        buf = buf.subarray(34)
        helloDone = true
      }
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32LE(0)) {
        const len = 4 + buf.readUInt32LE(0)
        for (const out of rewrite(index++, Buffer.from(buf.subarray(0, len)))) up.write(out)
        buf = buf.subarray(len)
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.close(() => resolve()) }))
  return (server.address() as net.AddressInfo).port
}

function tests (): void {
  test('frames cross in both directions intact, in order, and each side learns the other\'s identity', async (t) => {
    const { client, accepted, serverKeys, clientKeys } = await pair(t)
    t.ok(client.remotePublicKey.equals(serverKeys.publicKey), 'client sees the server key')
    t.ok(accepted.remotePublicKey.equals(clientKeys.publicKey), 'server sees the client key')
    const sent = [Buffer.alloc(0), Buffer.from('hello'), crypto.randomBytes(100_000), crypto.randomBytes(MAX_FRAME)]
    const got = collect(accepted, sent.length + 1)
    for (const f of sent) client.send(f)
    client.send([Buffer.from('two '), Buffer.from('parts')])
    const frames = await got
    for (let i = 0; i < sent.length; i++) t.ok(frames[i].equals(sent[i]), `frame ${i} (${sent[i].length} bytes) equal`)
    t.is(frames[sent.length].toString(), 'two parts', 'a Buffer[] frame arrives as one frame')
    const back = collect(client, 1)
    accepted.send(Buffer.from('reply'))
    t.is((await back)[0].toString(), 'reply', 'server to client')
  })

  for (const aead of ['aes-256-gcm', 'chacha20-poly1305', 'xchacha20-poly1305', 'sodium-chacha20-poly1305'] as AeadName[]) {
    test(`the ${aead} AEAD carries large and small frames`, async (t) => {
      const { client, accepted } = await pair(t, aead)
      t.is(client.aead, aead)
      t.is(accepted.aead, aead, 'the responder uses the proposed AEAD')
      const sent = [crypto.randomBytes(3 * 1024 * 1024 + 7), Buffer.from('x')]
      const got = collect(accepted, 2)
      client.send([sent[0].subarray(0, 1000), sent[0].subarray(1000)])
      client.send(sent[1])
      const frames = await got
      t.ok(frames[0].equals(sent[0]) && frames[1].equals(sent[1]), 'frames equal')
      // The dialing side reads into one reused buffer: what it hands out must not change later.
      const back = collect(client, 3)
      for (const f of [sent[0], sent[1], sent[0].subarray(5)]) accepted.send(f)
      const replies = await back
      await new Promise((resolve) => setTimeout(resolve, 50))
      t.ok(replies[0].equals(sent[0]) && replies[1].equals(sent[1]) && replies[2].equals(sent[0].subarray(5)), 'frames to the dialing side equal, and stay equal after later reads')
    })
  }

  test('native AES-256-GCM frames are the same as node:crypto\'s, and a flipped bit fails them', (t) => {
    const key = crypto.randomBytes(32)
    const nonce = (counter: number): Buffer => { const n = Buffer.alloc(12); n.writeUInt32LE(counter, 0); return n }
    const plain = crypto.randomBytes(300_000)
    // Sealed natively (two parts), opened by node:crypto.
    const sealer = createAead('aes-256-gcm', key)
    for (let counter = 0; counter < 2; counter++) {
      const [frame] = sealer.seal([plain.subarray(0, 1234), plain.subarray(1234)], plain.length)
      const header = frame.subarray(0, HEADER_BYTES)
      t.is(header.readUInt32LE(0), plain.length + TAG_BYTES, 'the header holds the body length')
      const d = crypto.createDecipheriv('aes-256-gcm', key, nonce(counter), { authTagLength: TAG_BYTES })
      d.setAAD(header)
      d.setAuthTag(frame.subarray(frame.length - TAG_BYTES))
      t.ok(Buffer.concat([d.update(frame.subarray(HEADER_BYTES, frame.length - TAG_BYTES)), d.final()]).equals(plain), `frame ${counter} opens with node:crypto`)
    }
    // Sealed by node:crypto, opened natively: whole, piece by piece, and with one bit flipped.
    const header = Buffer.alloc(HEADER_BYTES)
    header.writeUInt32LE(plain.length + TAG_BYTES, 0)
    const sealed = (counter: number): Buffer => {
      const c = crypto.createCipheriv('aes-256-gcm', key, nonce(counter), { authTagLength: TAG_BYTES })
      c.setAAD(header)
      return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()])
    }
    const opener = createAead('aes-256-gcm', key)
    t.ok(opener.open(header, sealed(0))?.equals(plain), 'opens whole, in place')
    const stream = opener.openStream?.(header)
    const body = sealed(1)
    const out = Buffer.alloc(plain.length)
    for (let off = 0; off < plain.length; off += 65536) stream?.update(body.subarray(off, Math.min(off + 65536, plain.length)), out.subarray(off, Math.min(off + 65536, plain.length)))
    t.ok(stream?.final(body.subarray(plain.length)) === true && out.equals(plain), 'opens piece by piece into a buffer')
    const bad = sealed(2)
    bad[5000] ^= 1
    t.is(opener.open(header, bad), null, 'a flipped ciphertext bit fails authentication')
    t.ok(opener.open(header, sealed(2))?.equals(plain), 'a failed frame does not advance the counter')
  })

  test('a peer with a wrong secret cannot connect and the server reports the rejection', async (t) => {
    const keyPair = randomKeyPair()
    let connections = 0
    const server = await listen({ host: HOST, port: 0, secret: crypto.randomBytes(32), keyPair }, () => { connections++ })
    t.teardown(() => server.close())
    const rejected = new Promise<string>((resolve) => server.once('reject', (err) => resolve(err.code)))
    await t.exception(connect({ host: HOST, port: server.address().port, secret: crypto.randomBytes(32), keyPair: randomKeyPair() }), /PERMISSION/)
    t.is(await rejected, 'PERMISSION', 'server emits reject with PERMISSION')
    t.is(connections, 0, 'no connection was handed to the server')
  })

  test('a raw TCP client that sends garbage gets only the server hello and is closed', async (t) => {
    const server = await listen({ host: HOST, port: 0, secret: crypto.randomBytes(32), keyPair: randomKeyPair() }, () => t.fail('no connection'))
    t.teardown(() => server.close())
    const rejected = new Promise((resolve) => server.once('reject', resolve))
    const sock = net.connect({ host: HOST, port: server.address().port })
    let received = 0
    sock.on('data', (d) => { received += d.length })
    sock.on('error', () => {})
    sock.write(Buffer.concat([Buffer.from([1, 1]), crypto.randomBytes(32), Buffer.from([96 + 16, 0, 0, 0]), crypto.randomBytes(112)]))
    await new Promise((resolve) => sock.on('close', resolve))
    await rejected
    t.is(received, 34, 'only the 34-byte hello (version, aead, random ephemeral key) came back')
  })

  test('before the handshake completes a frame longer than the auth frame is refused', async (t) => {
    const server = await listen({ host: HOST, port: 0, secret: crypto.randomBytes(32), keyPair: randomKeyPair() }, () => t.fail('no connection'))
    t.teardown(() => server.close())
    const rejected = new Promise<string>((resolve) => server.once('reject', (err) => resolve(err.message)))
    const sock = net.connect({ host: HOST, port: server.address().port })
    sock.on('error', () => {})
    const closed = new Promise((resolve) => sock.on('close', resolve))
    sock.resume() // read to the end, so 'close' follows the server's close
    const len = Buffer.alloc(4)
    len.writeUInt32LE(MAX_FRAME)
    sock.write(Buffer.concat([Buffer.from([1, 1]), crypto.randomBytes(32), len]))
    t.ok(/PROTOCOL: frame length/.test(await rejected), 'rejected on the length alone')
    await closed
  })

  test('a client that never completes the handshake is closed at the deadline, and nothing listening is NODE_NOT_RUNNING', async (t) => {
    const server = await listen({ host: HOST, port: 0, secret: crypto.randomBytes(32), keyPair: randomKeyPair(), handshakeTimeout: 200 }, () => t.fail('no connection'))
    const rejected = new Promise<string>((resolve) => server.once('reject', (err) => resolve(err.message)))
    const sock = net.connect({ host: HOST, port: server.address().port })
    sock.on('error', () => {})
    const closed = new Promise((resolve) => sock.on('close', resolve))
    sock.resume()
    t.ok(/timed out/.test(await rejected), 'the server gave up on the silent client')
    await closed
    const port = server.address().port
    await server.close()
    await t.exception(connect({ host: HOST, port, secret: crypto.randomBytes(32), keyPair: randomKeyPair() }), /NODE_NOT_RUNNING/)
  })

  test('a connection expecting another identity is refused', async (t) => {
    const secret = crypto.randomBytes(32)
    const server = await listen({ host: HOST, port: 0, secret, keyPair: randomKeyPair() }, () => {})
    t.teardown(() => server.close())
    await t.exception(connect({ host: HOST, port: server.address().port, secret, keyPair: randomKeyPair(), remotePublicKey: randomKeyPair().publicKey }), /PERMISSION/)
  })

  test('pause stops delivery at once, even between frames of one read, and resume delivers the rest in order', async (t) => {
    const { client, accepted } = await pair(t)
    const got: string[] = []
    let paused = false
    accepted.on('frame', (f) => {
      got.push(f.toString())
      if (!paused) { paused = true; accepted.pause() }
    })
    const frames = Array.from({ length: 10 }, (_, i) => Buffer.from(`frame ${i}`))
    client.send(frames[0])
    for (const f of frames.slice(1)) client.send(f)
    await new Promise((resolve) => setTimeout(resolve, 50))
    t.alike(got, ['frame 0'], 'one frame delivered while paused')
    const all = new Promise<void>((resolve) => accepted.on('frame', () => { if (got.length === 10) resolve() }))
    accepted.resume()
    await all
    t.alike(got, frames.map((f) => f.toString()), 'the rest, in order')
  })

  test('a frame larger than the maximum is refused before it is sent', async (t) => {
    const { client } = await pair(t)
    t.exception(() => client.send(Buffer.alloc(MAX_FRAME + 1)), /BAD_ARGUMENT/)
  })

  test('a tampered frame closes the connection and is never delivered', async (t) => {
    const secret = crypto.randomBytes(32)
    let onAccept: (c: SecureConnection) => void = () => {}
    const acceptedP = new Promise<SecureConnection>((resolve) => { onAccept = resolve })
    const server = await listen({ host: HOST, port: 0, secret, keyPair: randomKeyPair() }, (c) => onAccept(c))
    t.teardown(() => server.close())
    const port = await proxy(t, server.address().port, (i, f) => {
      if (i === 2) f[f.length - 30] ^= 1 // flip one ciphertext bit of the second data frame
      return [f]
    })
    const client = await connect({ host: HOST, port, secret, keyPair: randomKeyPair() })
    t.teardown(() => client.close())
    const accepted = await acceptedP
    const delivered: string[] = []
    accepted.on('frame', (f) => delivered.push(f.toString()))
    const closed = waitClose(accepted)
    client.send(Buffer.from('first frame, intact'))
    client.send(Buffer.from('second frame, tampered in flight'))
    client.send(Buffer.from('third frame, after the tampered one'))
    const err = await closed
    t.ok(err !== null && /PROTOCOL/.test(err.message), `closed with ${err?.message}`)
    t.alike(delivered, ['first frame, intact'], 'only the intact frame was delivered')
  })

  test('a replayed frame and a reordered pair close the connection', async (t) => {
    for (const mode of ['replay', 'reorder']) {
      const secret = crypto.randomBytes(32)
      let onAccept: (c: SecureConnection) => void = () => {}
      const acceptedP = new Promise<SecureConnection>((resolve) => { onAccept = resolve })
      const server = await listen({ host: HOST, port: 0, secret, keyPair: randomKeyPair() }, (c) => onAccept(c))
      t.teardown(() => server.close())
      let held: Buffer | null = null
      const port = await proxy(t, server.address().port, (i, f) => {
        if (mode === 'replay') return i === 1 ? [f, f] : [f]
        if (i === 1) { held = f; return [] }
        if (i === 2 && held !== null) return [f, held]
        return [f]
      })
      const client = await connect({ host: HOST, port, secret, keyPair: randomKeyPair() })
      t.teardown(() => client.close())
      const accepted = await acceptedP
      const delivered: string[] = []
      accepted.on('frame', (f) => delivered.push(f.toString()))
      const closed = waitClose(accepted)
      client.send(Buffer.from('a'))
      client.send(Buffer.from('b'))
      const err = await closed
      t.ok(err !== null && /PROTOCOL/.test(err.message), `${mode}: closed with ${err?.message}`)
      t.alike(delivered, mode === 'replay' ? ['a'] : [], `${mode}: nothing out of order was delivered`)
    }
  })

  test('1 GiB crosses from another process intact, with backpressure', { timeout: 300_000 }, async (t) => {
    const secret = crypto.randomBytes(32)
    const hasher = new Xxh64Stream()
    let received = 0
    let digest: bigint | null = null
    let maxFrame = 0
    const done = new Promise<void>((resolve, reject) => {
      listen({ host: HOST, port: 0, secret, keyPair: randomKeyPair() }, (conn) => {
        conn.on('frame', (f) => {
          if (received < GIB) {
            hasher.update(f)
            received += f.length
            maxFrame = Math.max(maxFrame, f.length)
          } else {
            digest = f.readBigUInt64LE(0)
            conn.close()
            resolve()
          }
        })
        conn.on('close', (err) => { if (err !== null) reject(err) })
      }).then((server) => {
        t.teardown(() => server.close())
        const child = spawn(process.execPath, [__filename, '--sender', String(server.address().port), secret.toString('hex'), String(GIB)], { stdio: ['ignore', 'inherit', 'inherit'] })
        t.teardown(() => { child.kill('SIGKILL') })
        child.on('exit', (code) => { if (code !== 0) reject(new Error(`sender exited ${code}`)) })
      }, reject)
    })
    await done
    t.is(received, GIB, '1 GiB received')
    t.is(maxFrame, 1024 * 1024, 'frames arrive whole (1 MiB each)')
    t.is(digest, hasher.digest(), 'the XXH64 of the received stream equals the sender\'s')
  })
}
