// Rebuilding fragments: the part of healing that moves bytes. A fragment is copied from where
// it is when that copy is intact (a node joining or draining), otherwise rebuilt from any k of
// the other fragments of its stripe (a node or device lost, a fragment damaged). Whatever is
// written was checked against the hash the manifest recorded for its slot first.
import { DdfsError } from '../errors'
import { EntryKind } from '../store/types'
import { xxh64Async } from '../hash'
import { ownedAlone, release } from '../buffers'
import { reconstruct } from '../erasure/reed-solomon'
import { keyOf, writeTrailer, TRAILER_BYTES, type Manifest } from './records'
import { checkedFragment, stripeShape, type FetchedFragment } from './stripes'
import type { EntrySite } from './types'

export interface FragmentWork {
  index: number
  /** The holder of an intact copy to copy from, or null: rebuild it from the other fragments. */
  from: EntrySite | null
  to: EntrySite
}

/** Repair traffic yields to client traffic on the nodes that serve it. */
const BACKGROUND = { background: true }

/** Stripes in flight per call: a few, so a large object streams through bounded memory. */
const STRIPES_IN_FLIGHT = 12
/**
 * Stripes being rebuilt at once by this process, over every object and request (each holds k
 * fragments and the rebuilt ones: about 5 MiB for 4+2): enough to keep both cores busy while
 * some stripes wait on reads, and a bound on memory however many objects arrive at once.
 */
const STRIPES_PER_PROCESS = 32
let stripesBusy = 0
const stripeWaiters: Array<() => void> = []

async function stripeSlot<T> (fn: () => Promise<T>): Promise<T> {
  while (stripesBusy >= STRIPES_PER_PROCESS) await new Promise<void>((resolve) => stripeWaiters.push(resolve))
  stripesBusy++
  try {
    return await fn()
  } finally {
    stripesBusy--
    stripeWaiters.shift()?.()
  }
}

export function stripeCount (manifest: Manifest): number {
  return manifest.stripeHashes.length / (manifest.k + manifest.m)
}

/**
 * Writes fragment `w.index` of stripes first..end-1 (default: every stripe) to `w.to` for each
 * work item. `sources[i]`: the site holding fragment i now (null when none). `pace(bytes)` is
 * awaited after each stripe: the repair rate limit. Resolves with the fragment bytes written.
 */
export async function rebuildFragments (id: Buffer, manifest: Manifest, work: FragmentWork[], sources: Array<EntrySite | null>,
  pace: (bytes: number) => Promise<void>, local?: EntrySite, first = 0, end = stripeCount(manifest)): Promise<number> {
  let written = 0
  let next = first
  const worker = async (): Promise<void> => {
    while (next < end) {
      const s = next++
      const bytes = await stripeSlot(async () => await rebuildStripe(id, manifest, s, work, sources, local))
      written += bytes
      await pace(bytes)
    }
  }
  await Promise.all(Array.from({ length: Math.max(0, Math.min(STRIPES_IN_FLIGHT, end - first)) }, worker))
  return written
}

/** Rebuilds one fragment of one stripe from the others: what scrub does with a damaged one. */
export async function rebuildOne (id: Buffer, manifest: Manifest, s: number, index: number, sources: Array<EntrySite | null>): Promise<Buffer> {
  const entries = await gatherAndDecode(id, manifest, s, new Set([index]), sources, undefined, false)
  return await sealFragment(id, manifest, s, index, entries.get(index) as Buffer)
}

async function rebuildStripe (id: Buffer, manifest: Manifest, s: number, work: FragmentWork[], sources: Array<EntrySite | null>, local?: EntrySite): Promise<number> {
  const { fragLen } = stripeShape(manifest, s)
  const rebuild: FragmentWork[] = []
  let written = 0
  for (const w of work) {
    if (w.from !== null) {
      try {
        const fetched = await fetchFrom(w.from, id, s, w.index)
        await checkedFragment(id, manifest, s, w.index, fragLen, async () => fetched)
        await w.to.putEntry(keyOf(id, EntryKind.Fragment, s, w.index), fetched.entry, BACKGROUND)
        release(fetched.entry)
        written += fragLen
        continue
      } catch {
        // The copy is gone or damaged: rebuild this one from the others below.
      }
    }
    rebuild.push(w)
  }
  if (rebuild.length === 0) return written
  const missing = new Set(rebuild.map((w) => w.index))
  // First without hashing the inputs again: each was checked against its block hashes where it
  // is stored and crossed the wire under an XXH64 and an AEAD tag, and what is decoded from them
  // is checked against the manifest before it is written. Only when that check fails is the
  // stripe decoded again from inputs whose hashes are checked one by one (a bad one is skipped).
  const decodeAndSeal = async (trusting: boolean): Promise<Buffer[]> => {
    const entries = await gatherAndDecode(id, manifest, s, missing, sources, local, trusting)
    return await Promise.all(rebuild.map(async (w) => await sealFragment(id, manifest, s, w.index, entries.get(w.index) as Buffer)))
  }
  let sealed: Buffer[]
  try {
    sealed = await decodeAndSeal(true)
  } catch (err) {
    if (DdfsError.from(err).code !== 'CORRUPT') throw err
    sealed = await decodeAndSeal(false)
  }
  for (const [j, w] of rebuild.entries()) {
    await w.to.putEntry(keyOf(id, EntryKind.Fragment, s, w.index), sealed[j], BACKGROUND)
    release(sealed[j])
    written += fragLen
  }
  return written
}

/**
 * Fetches k intact fragments of stripe s other than `missing` (`local`'s own first: no network,
 * then data fragments before parity) and decodes the missing ones, each straight into the buffer
 * of its stored form (data, then room for the trailer): index -> that buffer. `trusting`: the
 * inputs' trailers are checked against the manifest but their data is not hashed again;
 * otherwise every input's data is hashed, wherever it comes from.
 */
async function gatherAndDecode (id: Buffer, manifest: Manifest, s: number, missing: Set<number>, sources: Array<EntrySite | null>,
  local: EntrySite | undefined, trusting: boolean): Promise<Map<number, Buffer>> {
  const { k, m } = manifest
  const n = k + m
  const { fragLen } = stripeShape(manifest, s)
  const shards: Array<Buffer | null> = new Array(n).fill(null)
  const candidates = [...Array(n).keys()].filter((i) => !missing.has(i) && sources[i] !== null)
    .sort((a, b) => Number(sources[b] === local) - Number(sources[a] === local) || a - b)
  const problems: string[] = []
  let good = 0
  let next = 0
  while (good < k && next < candidates.length) {
    const batch = candidates.slice(next, next + k - good)
    next += batch.length
    const results = await Promise.allSettled(batch.map((i) =>
      checkedFragment(id, manifest, s, i, fragLen, async () => {
        const fetched = await fetchFrom(sources[i] as EntrySite, id, s, i)
        return { ...fetched, verified: trusting }
      })))
    results.forEach((r, j) => {
      if (r.status === 'fulfilled') { shards[batch[j]] = r.value; good++ } else problems.push(DdfsError.from(r.reason).message)
    })
  }
  if (good < k) {
    throw DdfsError.UNAVAILABLE(`cannot rebuild stripe ${s} of ${id.toString('hex')}: ${good} of ${n} fragments reachable and intact, ${k} needed (${problems.join('; ')})`)
  }
  // The decoder writes the wanted shards whole (no need to zero them) and leaves the other absent
  // slots alone: they only stand in for the length.
  const entries = new Map<number, Buffer>()
  for (const i of missing) {
    const entry = Buffer.allocUnsafeSlow(fragLen + TRAILER_BYTES)
    ownedAlone(entry)
    entries.set(i, entry)
  }
  const views = new Map([...entries].map(([i, e]) => [i, e.subarray(0, fragLen)]))
  const filler = views.values().next().value as Buffer
  const full = shards.map((x, i) => x ?? views.get(i) ?? filler)
  if (fragLen > 0) await reconstruct(k, m, full, shards.map((x) => x !== null), full.map((_, i) => missing.has(i)))
  for (const x of shards) if (x !== null) release(x)
  return entries
}

/**
 * Completes the stored form of a rebuilt fragment (its data, decoded into `entry`, then the
 * trailer), once the data's hash matches the manifest.
 */
async function sealFragment (id: Buffer, manifest: Manifest, s: number, index: number, entry: Buffer): Promise<Buffer> {
  const n = manifest.k + manifest.m
  const fragLen = entry.length - TRAILER_BYTES
  const hash = await xxh64Async(entry.subarray(0, fragLen))
  if (hash !== manifest.stripeHashes[s * n + index]) {
    throw DdfsError.CORRUPT(`rebuilt fragment ${s}/${index} of ${id.toString('hex')} does not match its manifest`)
  }
  writeTrailer({ id, stripe: s, index, k: manifest.k, m: manifest.m, length: fragLen, hash }, entry, fragLen)
  return entry
}

async function fetchFrom (site: EntrySite, id: Buffer, s: number, i: number): Promise<FetchedFragment> {
  const { entry, verified } = await site.getEntry(keyOf(id, EntryKind.Fragment, s, i), BACKGROUND)
  return { entry, verified, where: site.label }
}
