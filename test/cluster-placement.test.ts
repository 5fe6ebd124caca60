import test from 'brittle'
import crypto from 'node:crypto'
import { fragmentHolders, manifestHolders, manifestTop, nameHolders, nameHash, assignFragments, fragmentMoves, repairAssignment, type PlacementMember } from '../src/cluster/placement'
import { IdsBeside } from '../src/object/ids-beside'
import type { ViewMember } from '../src/object/cluster-object-store'

function members (count: number): PlacementMember[] {
  return Array.from({ length: count }, () => ({ publicKey: crypto.randomBytes(32) }))
}

function ids (count: number): Buffer[] {
  return Array.from({ length: count }, () => crypto.randomBytes(16))
}

const keys = (list: PlacementMember[]): string[] => list.map((m) => m.publicKey.toString('hex'))

test('placement is deterministic and independent of the order members are listed in', (t) => {
  const ms = members(12)
  const shuffled = [...ms].reverse()
  for (const id of ids(200)) {
    t.alike(keys(fragmentHolders(id, ms, 6)), keys(fragmentHolders(id, shuffled, 6)))
    t.alike(keys(manifestHolders(id, ms, 2)), keys(manifestHolders(id, shuffled, 2)))
  }
  const h = nameHash('report.pdf')
  t.ok(h.equals(nameHash('report.pdf')) && !h.equals(nameHash('report.pdf ')), 'name hashes are stable and distinct')
  t.alike(keys(nameHolders(h, ms, 2)), keys(nameHolders(h, shuffled, 2)))
})

test('manifestTop picks the same holders, in the same order, as ranking every member', (t) => {
  for (const count of [1, 3, 4, 12]) {
    const ms = members(count === 12 ? 12 : 7)
    for (const id of ids(300)) t.alike(keys(manifestTop(id, ms, count)), keys(manifestHolders(id, ms, count - 1)))
  }
})

test('a small create gets a fresh random id whose manifest holders are its name record holders, ready ids first', async (t) => {
  const view = (ms: PlacementMember[]): ViewMember[] => ms.map((m) => ({ publicKey: m.publicKey, site: {} as unknown as ViewMember['site'] }))
  const ids = new IdsBeside()
  let ms = members(6)
  const seen = new Set<string>()
  let fromReady = 0
  for (let i = 0; i < 300; i++) {
    if (i === 150) ms = members(6)  // another membership: nothing filed under the old one is handed out
    const now = view(ms)  // a new array of new objects each time, as the cluster view gives them
    const name = `file-${i}`
    const before = ids.readyIds
    const id = ids.take(name, now, 3)
    if (ids.readyIds === before - 1) fromReady++
    t.absent(seen.has(id.toString('hex')), 'never handed out twice')
    seen.add(id.toString('hex'))
    t.alike(keys(manifestTop(id, now, 3)).sort(), keys(nameHolders(nameHash(name), now, 2)).sort(), `create ${i}: manifest and name on the same nodes`)
    await new Promise((resolve) => setImmediate(resolve))  // the turn after a create, where ids are tried
  }
  t.comment(`${fromReady} of 300 creates took a ready id`)
  t.ok(fromReady > 200, 'ids tried between creates are used')
  // Fewer manifest copies than name records (a 3-node cluster's 2+1): every manifest holder holds the name.
  const small = view(members(3))
  for (let i = 0; i < 50; i++) {
    const id = ids.take(`small-${i}`, small, 2)
    const holders = new Set(keys(nameHolders(nameHash(`small-${i}`), small, 2)))
    t.ok(keys(manifestTop(id, small, 2)).every((k) => holders.has(k)))
  }
})

test('fragments go to n distinct nodes, manifests and names to m+1, and too few nodes is an error', (t) => {
  const ms = members(8)
  let spread = 0
  for (const id of ids(500)) {
    const f = fragmentHolders(id, ms, 6)
    t.is(new Set(keys(f)).size, 6)
    const man = manifestHolders(id, ms, 2)
    t.is(new Set(keys(man)).size, 3)
    if (keys(man).some((k) => !keys(f).includes(k))) spread++
  }
  t.ok(spread > 0, 'manifest placement is independent of fragment placement')
  t.is(manifestHolders(crypto.randomBytes(16), members(2), 2).length, 2, 'all members when fewer than m+1')
  t.exception(() => fragmentHolders(crypto.randomBytes(16), members(5), 6), /UNAVAILABLE/)
  const dup = members(6)
  dup.push({ publicKey: Buffer.from(dup[0].publicKey) })
  t.exception(() => fragmentHolders(crypto.randomBytes(16), dup, 6), /BAD_ARGUMENT/)
})

test('load spreads evenly: every node holds close to n/N of the fragments', (t) => {
  const ms = members(10)
  const count = new Map<string, number>()
  const all = ids(10_000)
  for (const id of all) for (const k of keys(fragmentHolders(id, ms, 6))) count.set(k, (count.get(k) ?? 0) + 1)
  const expected = all.length * 6 / 10
  for (const [k, c] of count) t.ok(Math.abs(c - expected) < expected * 0.1, `${k.slice(0, 8)} holds ${c}, expected about ${expected}`)
})

test('adding a node moves only the fragments whose new placement includes it, one per object, about 1/N of all', (t) => {
  const n = 6
  const ms = members(10)
  const newcomer = { publicKey: crypto.randomBytes(32) }
  const grown = [...ms, newcomer]
  let moved = 0
  let affected = 0
  let wrong = 0
  for (const id of ids(10_000)) {
    const before = assignFragments(id, ms, n)
    const includesNew = fragmentHolders(id, grown, n).includes(newcomer)
    const moves = fragmentMoves(id, grown, n, before)
    moved += moves.length
    if (includesNew) affected++
    // Exactly the objects whose new holder set includes the newcomer move, and only one
    // fragment each: the one on the holder the newcomer displaced, and it goes to the newcomer.
    const ok = includesNew
      ? moves.length === 1 && moves[0].to === newcomer && !fragmentHolders(id, grown, n).includes(moves[0].from as PlacementMember)
      : moves.length === 0
    if (!ok) wrong++
  }
  t.is(wrong, 0, 'moves happen exactly where the new placement includes the new node')
  t.is(moved, affected, 'one fragment per affected object')
  const fraction = moved / (10_000 * n)
  t.comment(`moved ${moved} of ${10_000 * n} fragments (${(fraction * 100).toFixed(2)} %), 1/(N+1) = ${(100 / 11).toFixed(2)} %`)
  t.ok(fraction > 0.07 && fraction < 0.115, 'about 1/(N+1) of the fragments move')
})

test('removing a node moves exactly the fragments it held, each to a node that was not a holder', (t) => {
  const n = 6
  const ms = members(10)
  const gone = ms[3]
  const shrunk = ms.filter((m) => m !== gone)
  let wrong = 0
  for (const id of ids(2_000)) {
    const before = assignFragments(id, ms, n)
    const moves = fragmentMoves(id, shrunk, n, before)
    const held = before.indexOf(gone)
    const ok = held === -1
      ? moves.length === 0
      : moves.length === 1 && moves[0].index === held && moves[0].from === gone && !before.includes(moves[0].to)
    if (!ok) wrong++
  }
  t.is(wrong, 0)
})

test('healing placement: a lost holder\'s fragment goes to a live member holding none; a down one keeps its place; fewer members than fragments share', (t) => {
  const ms = members(8)
  for (const id of ids(200)) {
    const start = fragmentHolders(id, ms, 6)
    const lost = start[2]
    const live = ms.filter((m) => m !== lost)
    const next = repairAssignment(id, live, new Set(live), 6, start.map((m) => m === lost ? null : m)) as PlacementMember[]
    t.alike(keys(next.filter((_, i) => i !== 2)), keys(start.filter((_, i) => i !== 2)), 'only the lost fragment moves')
    t.ok(live.includes(next[2]) && !start.includes(next[2]), 'to a live member that held none')

    // Down (in the pool, not live): stays where it is during the grace period.
    const down = repairAssignment(id, ms, new Set(live), 6, start)
    t.alike(keys(down as PlacementMember[]), keys(start), 'nothing moves while a holder is only down')
  }
  // Five members, six fragments: one holds two, and losing none of them moves nothing.
  const five = members(5)
  const id = crypto.randomBytes(16)
  const first = repairAssignment(id, five, new Set(five), 6, new Array(6).fill(null)) as PlacementMember[]
  t.is(new Set(first).size, 5, 'all five members hold a fragment')
  const again = repairAssignment(id, five, new Set(five.slice(1)), 6, first)
  t.alike(keys(again as PlacementMember[]), keys(first), 'a member holding two keeps both while it is only down')
})
