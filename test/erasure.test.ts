import test from 'brittle'
import crypto from 'node:crypto'
import fc from 'fast-check'
import { encode, encodeSync, reconstruct, reconstructSync } from '../src/erasure/reed-solomon'

function stripe (k: number, m: number, len: number): { data: Buffer[], parity: Buffer[] } {
  return { data: Array.from({ length: k }, () => crypto.randomBytes(len)), parity: Array.from({ length: m }, () => Buffer.alloc(len)) }
}

test('any k of n fragments rebuild every lost one, byte for byte (random schemas and erasures)', async (t) => {
  let runs = 0
  await fc.assert(fc.asyncProperty(
    fc.integer({ min: 1, max: 20 }), fc.integer({ min: 0, max: 12 }), fc.integer({ min: 1, max: 5000 }), fc.infiniteStream(fc.boolean()),
    async (k, m, len, coin) => {
      const { data, parity } = stripe(k, m, len)
      await encode(k, m, data, parity)
      const all = [...data, ...parity]
      const original = all.map((b) => Buffer.from(b))
      // Lose up to m fragments, chosen at random.
      const present = all.map(() => true)
      const order = [...all.keys()].sort(() => (coin.next().value as boolean) ? 1 : -1)
      let count = 0
      for (let i = 0; i < m; i++) if (coin.next().value as boolean) count++
      const lost = order.slice(0, count)
      for (const i of lost) { present[i] = false; all[i].fill(0xa5) }
      await reconstruct(k, m, all, present)
      runs++
      return all.every((b, i) => b.equals(original[i]))
    }
  ), { numRuns: 300, seed: 42 })
  t.ok(runs >= 300, `${runs} random stripes rebuilt`)
})

test('with wanted, only the flagged lost fragments are rebuilt; the other absent ones are left alone', async (t) => {
  const { data, parity } = stripe(4, 2, 4096)
  await encode(4, 2, data, parity)
  const all = [...data, ...parity]
  const original = all.map((b) => Buffer.from(b))
  for (const i of [1, 5]) all[i].fill(0xa5)
  await reconstruct(4, 2, all, [true, false, true, true, true, false], [false, false, false, false, false, true])
  t.ok(all[5].equals(original[5]), 'the wanted fragment is rebuilt')
  t.ok(all[1].every((b) => b === 0xa5), 'the absent fragment not wanted is neither read nor written')
})

test('k + m up to 64, and the data fragments are the data itself', async (t) => {
  for (const [k, m] of [[1, 0], [1, 1], [4, 2], [8, 3], [10, 4], [32, 32], [60, 4], [63, 1]]) {
    const { data, parity } = stripe(k, m, 1024)
    const copy = data.map((b) => Buffer.from(b))
    encodeSync(k, m, data, parity)
    t.ok(data.every((b, i) => b.equals(copy[i])), `${k}+${m}: systematic`)
    const all = [...data, ...parity]
    const present = all.map((_, i) => i >= m)  // lose the first m (data) fragments
    const original = all.map((b) => Buffer.from(b))
    for (let i = 0; i < m; i++) all[i].fill(0)
    reconstructSync(k, m, all, present)
    t.ok(all.every((b, i) => b.equals(original[i])), `${k}+${m}: first ${m} rebuilt`)
  }
})

test('fewer than k fragments is UNAVAILABLE; bad arguments are BAD_ARGUMENT', async (t) => {
  const { data, parity } = stripe(4, 2, 100)
  await encode(4, 2, data, parity)
  await t.exception(reconstruct(4, 2, [...data, ...parity], [true, true, true, false, false, false]), /UNAVAILABLE: 3 of 6/)
  await t.exception(encode(0, 2, [], parity), /BAD_ARGUMENT/)
  await t.exception(encode(40, 30, data, parity), /BAD_ARGUMENT/)
  await t.exception(encode(4, 2, data.slice(0, 3), parity), /BAD_ARGUMENT/)
  await t.exception(encode(4, 2, [...data.slice(0, 3), Buffer.alloc(99)], parity), /same length/)
})
