import test from 'brittle'
import crypto from 'node:crypto'
import { xxh64, xxh64Async, Xxh64Stream, allocAligned, hashHex } from '../src/hash'

// xxhash-wasm is the reference implementation the TypeScript side could use; the native one
// must agree with it bit for bit, or fragments written by one would fail checks in the other.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const xxhashWasm = require('xxhash-wasm') as () => Promise<{ h64Raw (b: Uint8Array, seed?: bigint): bigint }>

test('native xxh64 matches the reference for known inputs and random buffers', async (t) => {
  const ref = await xxhashWasm()
  t.is(hashHex(xxh64(Buffer.alloc(0))), 'ef46db3751d8e999', 'empty input has the published XXH64')
  for (const size of [1, 7, 31, 32, 33, 4095, 4096, 100_003]) {
    const buf = crypto.randomBytes(size)
    t.is(xxh64(buf), ref.h64Raw(buf), `size ${size}`)
    t.is(xxh64(buf, 42n), ref.h64Raw(buf, 42n), `size ${size} seed 42`)
    t.is(await xxh64Async(buf), ref.h64Raw(buf), `async size ${size}`)
  }
})

test('streaming xxh64 over pieces equals the one-shot hash', (t) => {
  const buf = crypto.randomBytes(1_000_000)
  const s = new Xxh64Stream()
  for (let off = 0; off < buf.length; off += 77_777) s.update(buf.subarray(off, off + 77_777))
  t.is(s.digest(), xxh64(buf))
  t.is(s.reset().update(buf).digest(), xxh64(buf), 'reset starts over')
})

test('aligned buffers start on a 4096-byte boundary', (t) => {
  for (const size of [0, 1, 4096, 1 << 20]) {
    const b = allocAligned(size)
    t.is(b.length, size)
    t.is(b.byteOffset, 0)
  }
})

test('bad arguments are refused with BAD_ARGUMENT', (t) => {
  t.exception(() => xxh64('nope' as unknown as Buffer), /BAD_ARGUMENT/)
  t.exception(() => allocAligned(-1), /BAD_ARGUMENT/)
})
