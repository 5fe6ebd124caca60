// Fuzz targets: every decoder of outside input, fed random and mutated bytes. A target returns
// normally or throws a DdfsError (the clear error the input deserves); anything else (another
// exception, a crash, a hang, unbounded memory) is a finding. Inputs come from a seeded PRNG, so
// a seed replays a run; seeds of valid encodings (fixtures/fuzz/) steer the mutations.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import net from 'node:net'
import { PassThrough } from 'node:stream'
import type c from 'compact-encoding'
import { DdfsError } from '../../src/errors'
import { FrameConnection } from '../../src/wire/connection'
import * as messages from '../../src/wire/messages'
import { MessageType } from '../../src/wire/messages'
import { decodeManifest, encodeManifest, decodeNameRecord, encodeNameRecord, readTrailer, writeTrailer, checkName, TRAILER_BYTES } from '../../src/object/records'
import { parseFlags, type FlagSpec } from '../../src/cli/args'
import { formatDevice, openDevice } from '../../src/store/native-store'
import { listen } from '../../src/cluster/transport'
import { randomKeyPair } from '../../src/cluster/identity'

/** xorshift128+: fast, seeded, good enough to pick mutations. */
export class Rng {
  private a: bigint
  private b: bigint
  constructor (seed: number) {
    this.a = BigInt(seed) * 0x9e3779b97f4a7c15n + 1n
    this.b = BigInt(seed) ^ 0x2545f4914f6cdd1dn
    for (let i = 0; i < 8; i++) this.next()
  }

  next (): number {
    let s1 = this.a
    const s0 = this.b
    this.a = s0
    s1 ^= (s1 << 23n) & 0xffffffffffffffffn
    this.b = s1 ^ s0 ^ (s1 >> 17n) ^ (s0 >> 26n)
    return Number((this.b + s0) & 0xffffffffn)
  }

  int (n: number): number { return n <= 0 ? 0 : this.next() % n }
  bytes (n: number): Buffer { const b = Buffer.allocUnsafe(n); for (let i = 0; i < n; i++) b[i] = this.next() & 255; return b }
}

/** A mutated copy of `seed`: bit flips, byte sets, truncation, insertion, duplication, splicing. */
export function mutate (rng: Rng, seed: Buffer, max = 64 * 1024): Buffer {
  let b = Buffer.from(seed)
  const rounds = 1 + rng.int(6)
  for (let r = 0; r < rounds; r++) {
    switch (rng.int(7)) {
      case 0: if (b.length > 0) b[rng.int(b.length)] ^= 1 << rng.int(8); break
      case 1: if (b.length > 0) b[rng.int(b.length)] = [0, 0xff, 0x7f, 0x80, rng.int(256)][rng.int(5)]; break
      case 2: b = b.subarray(0, rng.int(b.length + 1)); break
      case 3: { const at = rng.int(b.length + 1); b = Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(16)), b.subarray(at)]); break }
      case 4: { const at = rng.int(b.length + 1); const n = rng.int(Math.max(1, b.length - at)); b = Buffer.concat([b, b.subarray(at, at + n)]); break }
      case 5: if (b.length >= 4) { const at = rng.int(b.length - 3); b.writeUInt32LE([0, 0xffffffff, 0x7fffffff, rng.next()][rng.int(4)], at) } break
      default: b = Buffer.concat([b, rng.bytes(rng.int(32))])
    }
  }
  return b.length > max ? b.subarray(0, max) : b
}

/** The outcome a decoder may have on bad input: a DdfsError with one of these codes. */
function expected (err: unknown, codes: string[]): void {
  if (err instanceof DdfsError && codes.includes(err.code)) return
  throw new Error(`unexpected ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
}

export interface Target {
  name: string
  /** Valid encodings to mutate. */
  seeds: () => Buffer[]
  /** Runs one input; resolves when done (a DdfsError is fine, anything else throws). */
  run: (input: Buffer) => Promise<void> | void
  /** Slow targets (processes, files, sockets) get a share of the inputs. */
  weight: number
  close?: () => Promise<void>
}

const ID = Buffer.alloc(16, 0xab)
const MESSAGE_ENCODERS: Array<[string, c.Encoder<any>, unknown]> = [
  ['error', messages.errorMessage, { code: 'NOT_FOUND', message: 'x' }],
  ['put', messages.putMessage, { size: 5, name: 'a', k: 4, m: 2, allowDegraded: false, follow: true }],
  ['put_end', messages.putEndMessage, { hash: 12345n }],
  ['id', messages.idMessage, { id: ID }],
  ['get', messages.getMessage, { id: ID, offset: 7, length: 9 }],
  ['get_head', messages.getHeadMessage, { size: 9, hash: 1n }],
  ['put_local', messages.putLocalMessage, { path: '/tmp/x', put: { size: 1, name: null, k: 0, m: 0, allowDegraded: false } }],
  ['get_local', messages.getLocalMessage, { id: ID, path: '/tmp/y' }],
  ['entry_key', messages.entryKeyMessage, { id: ID, kind: 0, stripe: 3, index: 5 }],
  ['entry_reply', messages.entryReplyMessage, { tombstone: true }],
  ['entry_remove', messages.entryRemoveMessage, { id: ID, tombstone: true }],
  ['name', messages.nameMessage, { name: 'report.txt' }],
  ['name_set', messages.nameSetMessage, { name: 'report.txt', id: ID }],
  ['optional_id', messages.optionalIdMessage, { id: ID }],
  ['site_catalog', messages.siteCatalogMessage, { objects: [{ id: ID, size: 10, createdAt: 1 }], names: [{ name: 'n', id: ID, version: 2 }] }],
  ['catalog', messages.catalogMessage, [{ id: ID, size: 10, createdAt: 1, name: 'n' }, { id: ID, size: 0, createdAt: 0, name: null }]],
  ['capacity_request', messages.capacityRequest, { cluster: true }],
  ['capacity', messages.capacityMessage, { size: 1e9, free: 5e8, nodes: 6 }],
  ['put_grow', messages.putGrowMessage, { size: 1 << 30, final: true }],
  ['device', messages.deviceMessage, { path: '/dev/loop0', format: true }],
  ['list', messages.listMessage, { after: ID, limit: 100 }],
  ['entry_remove_slot', messages.entryRemoveMessage, { id: ID, tombstone: false, slot: { kind: 0, index: 3 } }],
  ['ids', messages.idsMessage, [ID, ID]],
  ['entry_states_request', messages.entryStatesRequest, { kind: 1, ids: [ID] }],
  ['entry_states', messages.entryStatesMessage, [0, 1, 2, 1 << 20]],
  ['fragment_counts', messages.fragmentCountsMessage, [[0, 3, 5, 3], []]],
  ['drain', messages.drainMessage, { drain: true }],
  ['rebuild', messages.rebuildMessage, { id: ID, indices: [0, 5], first: 64, count: 64, urgent: true }],
  ['rebuilt', messages.rebuiltMessage, 1 << 30],
  ['put_small', messages.putSmallMessage, { put: { size: 4096, name: 'a', k: 0, m: 0, allowDegraded: false }, hash: 99n }],
  ['put_small_reply', messages.putSmallReply, { id: ID, createdAt: 1700000000000, replaced: ID }],
  ['create_put', messages.createPutMessage, { id: ID, nameHash: ID, manifestBytes: 700 }]
]

function encodeWith<T> (enc: c.Encoder<T>, value: T): Buffer {
  const state = { start: 0, end: 0, buffer: null as unknown as Buffer, cache: null }
  enc.preencode(state as c.State, value)
  state.buffer = Buffer.alloc(state.end)
  enc.encode(state as c.State, value)
  return state.buffer
}

/** A valid wire frame of `type` carrying `meta` and `payload` (the bytes FrameConnection sends). */
function frameBytes (type: MessageType, meta: Buffer, payload: Buffer): Buffer {
  const sink = new PassThrough()
  const chunks: Buffer[] = []
  sink.on('data', (d: Buffer) => chunks.push(d))
  const conn = new FrameConnection(sink)
  const raw: c.Encoder<Buffer> = { preencode (s, m) { s.end += m.length }, encode (s, m) { (s.buffer as Buffer).set(m, s.start); s.start += m.length }, decode () { return Buffer.alloc(0) } }
  conn.send(type, 7, raw, meta, payload)
  return Buffer.concat(chunks)
}

export function targets (): Target[] {
  const list: Target[] = []

  list.push({
    name: 'wire-frames',
    weight: 10,
    seeds: () => [
      frameBytes(MessageType.Put, encodeWith(messages.putMessage, { size: 5, name: 'a', k: 4, m: 2, allowDegraded: false }), Buffer.alloc(0)),
      frameBytes(MessageType.Data, Buffer.alloc(0), Buffer.from('hello world')),
      Buffer.concat([frameBytes(MessageType.Get, encodeWith(messages.getMessage, { id: ID, offset: 0, length: 9 }), Buffer.alloc(0)), frameBytes(MessageType.Status, Buffer.alloc(0), Buffer.alloc(0))])
    ],
    run: (input) => {
      // Fed in random pieces, as a socket would: frames come out whole or the connection closes.
      const stream = new PassThrough()
      const conn = new FrameConnection(stream)
      let frames = 0
      conn.on('frame', () => { frames++ })
      conn.on('protocol-error', (err: unknown) => expected(err, ['PROTOCOL']))
      conn.on('close', () => {})
      let at = 0
      let cut = 1 + (input.length > 0 ? input[0] : 0)
      while (at < input.length && !conn.closed) {
        stream.emit('data', input.subarray(at, at + cut))
        at += cut
        cut = 1 + ((cut * 31 + 7) % 97)
      }
      if (frames > input.length) throw new Error('more frames than bytes')
    }
  })

  for (const [name, enc, value] of MESSAGE_ENCODERS) {
    list.push({
      name: `message-${name}`,
      weight: 1,
      seeds: () => [encodeWith(enc, value)],
      run: (input) => { try { messages.decodeMeta(enc, input) } catch (err) { expected(err, ['PROTOCOL']) } }
    })
  }

  const manifest = {
    version: 1, size: 5000, k: 4, m: 2, stripeSize: 4 * 1048512, hash: 1n, createdAt: 1700000000000, name: 'a.txt', tombstone: false,
    stripeHashes: [1n, 2n, 3n, 4n, 5n, 6n], holders: Array.from({ length: 6 }, (_, i) => Buffer.alloc(32, i))
  }
  list.push({
    name: 'manifest',
    weight: 3,
    seeds: () => [encodeManifest(manifest), encodeManifest({ ...manifest, holders: undefined, name: null }),
      encodeManifest({ ...manifest, size: 5, holders: undefined, stripeHashes: [], inline: Buffer.from('small') })],
    run: (input) => { try { decodeManifest(input) } catch (err) { expected(err, ['CORRUPT']) } }
  })
  list.push({
    name: 'name-record',
    weight: 2,
    seeds: () => [encodeNameRecord({ name: 'report.txt', id: ID, version: 1700000000000 })],
    run: (input) => { try { decodeNameRecord(input) } catch (err) { expected(err, ['CORRUPT']) } }
  })
  list.push({
    name: 'fragment-trailer',
    weight: 2,
    seeds: () => { const f = Buffer.alloc(100 + TRAILER_BYTES); writeTrailer({ id: ID, stripe: 3, index: 5, k: 4, m: 2, length: 100, hash: 42n }, f, 100); return [f] },
    run: (input) => { try { readTrailer(input) } catch (err) { expected(err, ['CORRUPT']) } }
  })
  list.push({
    name: 'names',
    weight: 2,
    seeds: () => [Buffer.from('report.txt'), Buffer.from('../../etc/passwd'), Buffer.from('a\0b/c'), Buffer.from('d963a52161d67bf9d1e7c09ce313b050')],
    run: (input) => {
      const name = input.toString('utf8')
      try {
        checkName(name)
      } catch (err) {
        expected(err, ['BAD_ARGUMENT'])
        return
      }
      if (name.includes('/') || name.includes('\0') || name === '.' || name === '..' || Buffer.byteLength(name) > 255) throw new Error(`accepted ${JSON.stringify(name)}`)
    }
  })
  const specs: FlagSpec[] = [
    { name: 'server', short: 's', type: 'string', help: '' }, { name: 'port', short: 'p', type: 'number', help: '', default: 8000 },
    { name: 'json', type: 'boolean', help: '' }, { name: 'fragments', short: 'n', type: 'number', help: '' }, { name: 'mount', type: 'string', help: '' }
  ]
  list.push({
    name: 'cli-args',
    weight: 2,
    seeds: () => [Buffer.from('-s\x00127.0.0.1\x00-p\x008000\x00--json'), Buffer.from('--port=99\x00-n\x006\x00--no-json\x00rest')],
    run: (input) => {
      try { parseFlags(input.toString('utf8').split('\0'), specs, 'fuzz') } catch (err) { expected(err, ['BAD_ARGUMENT']) }
    }
  })

  // The native store's on-disk records: a small formatted device with damage in its metadata
  // (superblocks, bitmaps, journal, index) must open consistent or refuse with an error.
  let dir: string | null = null
  let pristine: Buffer | null = null
  list.push({
    name: 'store-metadata',
    weight: 0.05,
    seeds: () => [Buffer.from([0])],
    run: async (input) => {
      if (dir === null) {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-fuzz-'))
        const dev = path.join(dir, 'pristine.img')
        fs.writeFileSync(dev, '')
        fs.truncateSync(dev, 8 * 1024 * 1024)
        await formatDevice(dev, { force: true })
        const s = await openDevice(dev)
        for (let i = 0; i < 20; i++) await s.put({ id: Buffer.alloc(16, i), kind: 1, stripe: 0, index: 0 }, Buffer.alloc(100 + i * 50, i))
        await s.close()
        pristine = fs.readFileSync(dev).subarray(0, 512 * 1024)  // the metadata lives up front
      }
      const dev = path.join(dir, 'fuzzed.img')
      fs.copyFileSync(path.join(dir, 'pristine.img'), dev)
      const damaged = Buffer.from(pristine as Buffer)
      // The input picks where and how: each 6 bytes are (offset u32, xor u8, run u8).
      for (let i = 0; i + 6 <= Math.min(input.length, 60); i += 6) {
        const off = input.readUInt32LE(i) % damaged.length
        for (let j = 0; j <= input[i + 5] % 16 && off + j < damaged.length; j++) damaged[off + j] ^= input[i + 4] | 1
      }
      const fd = fs.openSync(dev, 'r+')
      fs.writeSync(fd, damaged, 0, damaged.length, 0)
      fs.closeSync(fd)
      try {
        const s = await openDevice(dev)
        for (let i = 0; i < 20; i++) {
          try { await s.read({ id: Buffer.alloc(16, i), kind: 1, stripe: 0, index: 0 }) } catch (err) { expected(err, ['CORRUPT', 'NOT_FOUND', 'IO']) }
        }
        await s.close()
      } catch (err) {
        expected(err, ['CORRUPT', 'DEVICE_NOT_FORMATTED', 'IO', 'BAD_ARGUMENT', 'DEVICE_FULL'])
      }
    },
    close: async () => { if (dir !== null) fs.rmSync(dir, { recursive: true, force: true }) }
  })

  // The transport handshake: whatever arrives before the handshake is rejected; the listener lives on.
  let server: Awaited<ReturnType<typeof listen>> | null = null
  let rejects = 0
  list.push({
    name: 'handshake',
    weight: 0.2,
    seeds: () => [Buffer.concat([Buffer.from([1, 0]), Buffer.alloc(32, 9)]), Buffer.alloc(100)],
    run: async (input) => {
      if (server === null) {
        server = await listen({ host: '127.0.0.1', port: 0, secret: Buffer.alloc(32, 1), keyPair: randomKeyPair(), handshakeTimeout: 500 }, (conn) => {
          conn.close()
          throw new Error('a handshake succeeded without the secret')
        })
        server.on('reject', () => { rejects++ })
      }
      const { port } = server.address()
      await new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => { s.end(input) })
        s.on('data', () => {})
        s.on('error', () => resolve())
        s.on('close', () => resolve())
        setTimeout(() => { s.destroy(); resolve() }, 2000)
      })
    },
    close: async () => { await server?.close(); void rejects }
  })

  return list
}
