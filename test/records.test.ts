import test from 'brittle'
import fc from 'fast-check'
import { encodeManifest, decodeManifest, writeTrailer, readTrailer, TRAILER_BYTES, encodeNameRecord, decodeNameRecord, checkName, type Manifest } from '../src/object/records'
import { decodeMeta, putMessage, getMessage, errorMessage, deviceMessage, listMessage, putLocalMessage, getLocalMessage, idMessage } from '../src/wire/messages'
import { DdfsError } from '../src/errors'

const example: Manifest = {
  version: 1, size: 5, k: 4, m: 2, stripeSize: 4 * 1048512, hash: 0x0123456789abcdefn, createdAt: 1700000000000,
  name: 'a.txt', tombstone: false, stripeHashes: [1n, 2n, 3n, 4n, 5n, 0xffffffffffffffffn]
}

test('a manifest encodes to pinned bytes and decodes back', (t) => {
  const bytes = encodeManifest(example)
  t.is(bytes.toString('hex'), '010101050402fe00ff3f00efcdab8967452301ff0068e5cf8b01000005612e7478740601000000000000000200000000000000030000000000000004000000000000000500000000000000ffffffffffffffff63a15462c54e2e19')
  t.alike(decodeManifest(bytes), example)
  const tomb = decodeManifest(encodeManifest({ ...example, name: null, tombstone: true, stripeHashes: [] }))
  t.is(tomb.tombstone, true)
  t.is(tomb.name, null)
})

test('a cluster manifest carries the holder of each fragment index', (t) => {
  const holders = Array.from({ length: 6 }, (_, i) => Buffer.alloc(32, i + 1))
  t.alike(decodeManifest(encodeManifest({ ...example, holders })).holders, holders)
  t.exception(() => encodeManifest({ ...example, holders: [Buffer.alloc(31)] }), /holder/)
  t.exception(() => decodeManifest(encodeManifest({ ...example, holders: holders.slice(0, 5) })), /CORRUPT/)
})

test('name records round-trip, reject damage, and names are checked like file names', (t) => {
  const r = { name: 'report ü.txt', id: Buffer.alloc(16, 9), version: 1700000000123 }
  const bytes = encodeNameRecord(r)
  t.alike(decodeNameRecord(bytes), r)
  for (let i = 0; i < bytes.length; i++) {
    const bad = Buffer.from(bytes)
    bad[i] ^= 0x10
    t.exception(() => decodeNameRecord(bad), /CORRUPT/)
  }
  for (const bad of ['', '.', '..', '../../etc/passwd', 'a/b', 'nul\0here', 'x'.repeat(256), 'd963a52161d67bf9d1e7c09ce313b050']) {
    t.exception(() => checkName(bad), /BAD_ARGUMENT/, `refuses ${JSON.stringify(bad.slice(0, 20))}`)
  }
  checkName('ok name.txt')
  checkName('D963A52161D67BF9D1E7C09CE313B050')  // not an id (ids are lowercase)
})

test('a damaged manifest is CORRUPT, never a wrong manifest', (t) => {
  const bytes = encodeManifest(example)
  for (let i = 0; i < bytes.length; i++) {
    const bad = Buffer.from(bytes)
    bad[i] ^= 0x40
    t.exception(() => decodeManifest(bad), /CORRUPT/)
  }
  t.exception(() => decodeManifest(bytes.subarray(0, 5)), /CORRUPT/)
})

test('fragment trailers round-trip and reject damage', (t) => {
  const frag = Buffer.alloc(100 + TRAILER_BYTES)
  const h = { id: Buffer.alloc(16, 7), stripe: 3, index: 5, k: 4, m: 2, length: 100, hash: 42n }
  writeTrailer(h, frag, 100)
  t.alike(readTrailer(frag), h)
  frag[100 + 30] ^= 1
  t.exception(() => readTrailer(frag), /CORRUPT/)
})

test('random bytes never crash a wire decoder: a PROTOCOL error or a value', (t) => {
  const decoders = [putMessage, getMessage, errorMessage, deviceMessage, listMessage, putLocalMessage, getLocalMessage, idMessage]
  let inputs = 0
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: decoders.length - 1 }), (bytes, d) => {
    inputs++
    try {
      decodeMeta(decoders[d] as never, Buffer.from(bytes))
    } catch (err) {
      return err instanceof DdfsError && err.code === 'PROTOCOL'
    }
    return true
  }), { numRuns: 20000, seed: 1 })
  t.ok(inputs >= 20000, `${inputs} random inputs`)
})

test('a small object\'s data inline in its manifest round-trips; wrong lengths or fragment hashes beside it are CORRUPT', (t) => {
  const data = Buffer.from('hello, inline world')
  const inline: Manifest = { version: 1, size: data.length, k: 4, m: 2, stripeSize: 4 * 1048512, hash: 7n, createdAt: 1700000000000, name: 'x', tombstone: false, stripeHashes: [], inline: data }
  const back = decodeManifest(encodeManifest(inline))
  t.alike(back.inline, data)
  t.is(back.stripeHashes.length, 0)
  t.absent(decodeManifest(encodeManifest({ ...inline, inline: undefined, size: 0 })).inline, 'no flag, no data')
  t.exception(() => decodeManifest(encodeManifest({ ...inline, size: data.length + 1 })), /CORRUPT/, 'data shorter than the size')
  t.exception(() => decodeManifest(encodeManifest({ ...inline, stripeHashes: [1n, 2n, 3n, 4n, 5n, 6n] })), /CORRUPT/, 'fragments and inline data at once')
  t.exception(() => decodeManifest(encodeManifest({ ...inline, holders: Array.from({ length: 6 }, () => Buffer.alloc(32)) })), /CORRUPT/, 'holders and inline data at once')
})
