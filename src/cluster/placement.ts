// Placement: which members hold an object's fragments, its manifest, or a name record, from
// the id and the membership alone (rendezvous hashing). Every member scores every key with
// XXH64(domain | key | member public key); the highest scores win. Adding a member changes a
// key's holder set only when the newcomer outscores one of the holders, and then it replaces
// exactly the lowest-scored holder: about n/(N+1) of the keys, one fragment each.
import { DdfsError } from '../errors'
import { xxh64 } from '../hash'
import { sodium } from './sodium'

export interface PlacementMember {
  publicKey: Buffer
}

/** Domain bytes keep the three kinds of placement independent of each other. */
const DOMAIN_FRAGMENT = 0x46 // 'F'
const DOMAIN_MANIFEST = 0x4d // 'M'
const DOMAIN_NAME = 0x4e // 'N'

const MAX_KEY = 64
const scratch = Buffer.alloc(1 + MAX_KEY + 32)

/** The rendezvous score of one member for one key (higher wins). */
export function score (domain: number, key: Buffer, member: Buffer): bigint {
  if (key.length > MAX_KEY) throw DdfsError.BAD_ARGUMENT(`a placement key has at most ${MAX_KEY} bytes`)
  if (member.length !== 32) throw DdfsError.BAD_ARGUMENT('a member key has 32 bytes')
  scratch[0] = domain
  key.copy(scratch, 1)
  member.copy(scratch, 1 + key.length)
  return xxh64(scratch.subarray(0, 1 + key.length + 32))
}

/** All members, best first, for `key` in `domain`. Ties (never seen in practice) go by key bytes. */
export function rank<T extends PlacementMember> (domain: number, key: Buffer, members: readonly T[]): T[] {
  const scored = members.map((m) => ({ m, s: score(domain, key, m.publicKey) }))
  scored.sort((a, b) => a.s > b.s ? -1 : a.s < b.s ? 1 : Buffer.compare(a.m.publicKey, b.m.publicKey))
  for (let i = 1; i < scored.length; i++) {
    if (scored[i].m.publicKey.equals(scored[i - 1].m.publicKey)) throw DdfsError.BAD_ARGUMENT('the membership lists a member twice')
  }
  return scored.map((x) => x.m)
}

/**
 * The n distinct members that hold an object's fragments, best first. A first write puts
 * fragment i on holder i; after membership changes use assignFragments() so fragments stay put.
 */
export function fragmentHolders<T extends PlacementMember> (objectId: Buffer, members: readonly T[], n: number): T[] {
  if (!Number.isInteger(n) || n < 1) throw DdfsError.BAD_ARGUMENT(`n must be a positive integer, got ${n}`)
  if (members.length < n) throw DdfsError.UNAVAILABLE(`${n} fragments need ${n} distinct nodes, the cluster has ${members.length}`)
  return rank(DOMAIN_FRAGMENT, objectId, members).slice(0, n)
}

/** The members that hold an object's manifest: m+1 of them (all, if fewer). */
export function manifestHolders<T extends PlacementMember> (objectId: Buffer, members: readonly T[], m: number): T[] {
  return rank(DOMAIN_MANIFEST, objectId, members).slice(0, m + 1)
}

/**
 * The first `count` of manifestRank, found without ranking everyone (a create tries many ids:
 * src/object/ids-beside.ts).
 */
export function manifestTop<T extends PlacementMember> (objectId: Buffer, members: readonly T[], count: number): T[] {
  const top: Array<{ m: T, s: bigint }> = []
  for (const m of members) {
    const s = score(DOMAIN_MANIFEST, objectId, m.publicKey)
    let at = top.length
    while (at > 0 && (top[at - 1].s < s || (top[at - 1].s === s && Buffer.compare(top[at - 1].m.publicKey, m.publicKey) > 0))) at--
    if (at < count) {
      top.splice(at, 0, { m, s })
      if (top.length > count) top.pop()
    }
  }
  return top.map((x) => x.m)
}

/** All members in manifest-holder order: the first m+1 hold it; readers fall back down the list. */
export function manifestRank<T extends PlacementMember> (objectId: Buffer, members: readonly T[]): T[] {
  return rank(DOMAIN_MANIFEST, objectId, members)
}

/**
 * The member of each of n fragment indices. With at least n members, n distinct ones (the
 * fragment holders); with fewer (an explicitly degraded schema) the ranking wraps around.
 */
export function fragmentSpread<T extends PlacementMember> (objectId: Buffer, members: readonly T[], n: number): T[] {
  if (members.length >= n) return fragmentHolders(objectId, members, n)
  if (members.length === 0) throw DdfsError.UNAVAILABLE('the cluster has no members')
  const ranked = rank(DOMAIN_FRAGMENT, objectId, members)
  return Array.from({ length: n }, (_, i) => ranked[i % ranked.length])
}

/** All members in name-record order for a name's hash (see nameHash). */
export function nameRank<T extends PlacementMember> (hash: Buffer, members: readonly T[]): T[] {
  return rank(DOMAIN_NAME, hash, members)
}

/** The members that hold the record of a name (see nameHash): m+1 of them (all, if fewer). */
export function nameHolders<T extends PlacementMember> (hash: Buffer, members: readonly T[], m: number): T[] {
  return rank(DOMAIN_NAME, hash, members).slice(0, m + 1)
}

/** 16-byte BLAKE2b of a name's UTF-8 bytes: the placement key of its name record. */
export function nameHash (name: string): Buffer {
  const out = Buffer.alloc(16)
  sodium.crypto_generichash(out, Buffer.from(name, 'utf8'))
  return out
}

/**
 * Fragment index -> member, kept stable across membership changes: a fragment stays on its
 * member while that member is still among the holders; vacated indices go to the members that
 * entered the holder set, best first. Without `previous` it is the holder order itself.
 */
export function assignFragments<T extends PlacementMember> (objectId: Buffer, members: readonly T[], n: number, previous?: ReadonlyArray<PlacementMember | null>): T[] {
  const holders = fragmentHolders(objectId, members, n)
  if (previous === undefined) return holders
  if (previous.length !== n) throw DdfsError.BAD_ARGUMENT(`previous assignment has ${previous.length} entries, expected ${n}`)
  const out: Array<T | null> = new Array<T | null>(n).fill(null)
  const used = new Set<T>()
  for (let i = 0; i < n; i++) {
    const p = previous[i]
    if (p === null) continue
    const h = holders.find((x) => x.publicKey.equals(p.publicKey))
    if (h !== undefined && !used.has(h)) { out[i] = h; used.add(h) }
  }
  const free = holders.filter((h) => !used.has(h))
  for (let i = 0; i < n; i++) if (out[i] === null) out[i] = free.shift() as T
  return out as T[]
}

export interface FragmentMove<T> { index: number, from: PlacementMember | null, to: T }

/** The fragments that must move when the membership changes from `previous`'s to `members`. */
export function fragmentMoves<T extends PlacementMember> (objectId: Buffer, members: readonly T[], n: number, previous: ReadonlyArray<PlacementMember | null>): Array<FragmentMove<T>> {
  const next = assignFragments(objectId, members, n, previous)
  const moves: Array<FragmentMove<T>> = []
  for (let i = 0; i < n; i++) {
    const p = previous[i]
    if (p === null || !p.publicKey.equals(next[i].publicKey)) moves.push({ index: i, from: p, to: next[i] })
  }
  return moves
}

/**
 * Fragment index -> member for healing. `pool`: the members a fragment may stay on (live ones
 * and those briefly down); `live`: those that may receive one. A fragment stays on its member
 * while that member is in the pool and among the object's n best-ranked there; vacated indices
 * go to the best-ranked live members holding none, and when there are fewer than n of those,
 * to the live members holding fewest (so an object keeps n fragments even on fewer nodes).
 */
export function repairAssignment<T extends PlacementMember> (objectId: Buffer, pool: readonly T[], live: ReadonlySet<T>, n: number,
  previous: ReadonlyArray<PlacementMember | null>): Array<T | null> {
  if (previous.length !== n) throw DdfsError.BAD_ARGUMENT(`previous assignment has ${previous.length} entries, expected ${n}`)
  const ranked = rank(DOMAIN_FRAGMENT, objectId, pool)
  const best = new Set(ranked.slice(0, n))
  // With fewer members than fragments some hold more than one; a fragment may stay as long as
  // its member holds no more than its share.
  const share = Math.max(1, Math.ceil(n / Math.max(1, ranked.length)))
  const out: Array<T | null> = new Array<T | null>(n).fill(null)
  const load = new Map<T, number>()
  for (let i = 0; i < n; i++) {
    const p = previous[i]
    if (p === null) continue
    const h = ranked.find((x) => x.publicKey.equals(p.publicKey))
    if (h !== undefined && best.has(h) && (load.get(h) ?? 0) < share) { out[i] = h; load.set(h, (load.get(h) ?? 0) + 1) }
  }
  const receivers = ranked.filter((x) => live.has(x))
  for (let i = 0; i < n; i++) {
    if (out[i] !== null || receivers.length === 0) continue
    let pick = receivers.find((x) => !load.has(x))
    if (pick === undefined) pick = receivers.reduce((a, b) => (load.get(b) ?? 0) < (load.get(a) ?? 0) ? b : a)
    out[i] = pick
    load.set(pick, (load.get(pick) ?? 0) + 1)
  }
  return out
}
