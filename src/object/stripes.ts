// The erasure-coding pipeline of an object, independent of where fragments live: a write cuts
// the source into stripes of k fragments, adds m parity fragments with ISA-L and hands each
// fragment (data + 64-byte trailer) to a sink; a read asks a source for the fragments of each
// stripe it needs, checks them against the manifest and rebuilds missing data from parity.
// The local store (devices of one node) and the cluster store (nodes) are two sinks/sources.
import { DdfsError } from '../errors'
import { SEGMENT_SIZE } from '../constants'
import { allocAligned, xxh64, xxh64Async, Xxh64Stream } from '../hash'
import { encode, reconstruct } from '../erasure/reed-solomon'
import { writeTrailer, readTrailer, TRAILER_BYTES, type Manifest } from './records'

/** Data bytes in one fragment of one stripe; a stripe holds k of them. */
export const FRAGMENT_DATA = SEGMENT_SIZE - TRAILER_BYTES

/** Fragment buffers in flight per transfer (writes or read-ahead): bounds memory to ~16 MiB. */
export const BUFFERS_IN_FLIGHT = 16

/**
 * Stores fragment `index` of stripe `stripe`: `entry` is its data followed by its trailer. The
 * buffer is reused once the promise resolves, so a sink that keeps it must copy.
 */
export type FragmentSink = (stripe: number, index: number, entry: Buffer) => Promise<void>

/**
 * One fragment's stored entry (data + trailer) and where it came from, for error messages.
 * `verified`: the entry was checked against its store's XXH64 in this process; otherwise (from
 * another node) its data is hashed again here, so a faulty peer cannot hand out wrong bytes.
 */
export interface FetchedFragment { entry: Buffer, where: string, verified: boolean }
export type FragmentSource = (stripe: number, index: number) => Promise<FetchedFragment>

export interface WriteObjectOptions {
  id: Buffer
  /** Exact byte count; undefined when the source decides (it ends when the object does). */
  size?: number
  k: number
  m: number
  expectedHash?: bigint | Promise<bigint>
  signal?: AbortSignal
}

export interface WrittenObject {
  size: number
  stripeSize: number
  hash: bigint
  stripeHashes: bigint[]
  /** A small object's data, kept in its manifest (see Manifest.inline). */
  inline?: Buffer
}

/** Bytes of data in stripe `s` and the length of each of its fragments. */
export function stripeShape (manifest: Pick<Manifest, 'size' | 'stripeSize' | 'k'>, s: number): { bytes: number, fragLen: number } {
  const bytes = Math.min(manifest.stripeSize, manifest.size - s * manifest.stripeSize)
  return { bytes, fragLen: Math.ceil(bytes / manifest.k) }
}

/**
 * Streams `source` (exactly `size` bytes, when given) into erasure-coded fragments handed to `sink`, a few
 * stripes in flight. Resolves once every fragment is stored; on failure the caller removes
 * what was stored.
 */
export async function writeObject (source: AsyncIterable<Buffer>, opts: WriteObjectOptions, sink: FragmentSink): Promise<WrittenObject> {
  const { id, k, m } = opts
  const n = k + m
  const stripeSize = k * FRAGMENT_DATA
  const stripeHashes: bigint[] = []
  const whole = new Xxh64Stream()
  const inflight = new Set<Promise<void>>()
  const maxStripes = Math.max(1, Math.floor(BUFFERS_IN_FLIGHT / n))
  // Fragment buffers are reused once written: fresh memory costs a page fault per 4 KiB,
  // which on this kind of VM caps a stream near 400 MB/s.
  const spare: Buffer[] = []
  const take = (): Buffer => spare.pop() ?? allocAligned(SEGMENT_SIZE)
  let failure: unknown = null
  let received = 0
  let stripe = 0
  let frags = Array.from({ length: k }, take)
  let fill = 0  // bytes of the current stripe

  const flushStripe = async (): Promise<void> => {
    const s = stripe++
    const bytes = fill
    const data = frags
    frags = Array.from({ length: k }, take)
    fill = 0
    const p = writeStripe(id, s, k, m, data, bytes, take, stripeHashes, sink)
      .then((used) => { spare.push(...used) }, (err) => { failure ??= err })
      .finally(() => inflight.delete(p))
    inflight.add(p)
    if (inflight.size >= maxStripes) await Promise.race(inflight)
  }

  try {
    for await (const chunk of source) {
      if (opts.signal?.aborted === true) throw DdfsError.CLOSED('put aborted')
      if (failure !== null) throw failure
      received += chunk.length
      if (opts.size !== undefined && received > opts.size) throw DdfsError.BAD_ARGUMENT(`the source has more than the ${opts.size} bytes announced`)
      whole.update(chunk)
      let off = 0
      while (off < chunk.length) {
        const f = Math.floor(fill / FRAGMENT_DATA)
        const at = fill - f * FRAGMENT_DATA
        const count = Math.min(FRAGMENT_DATA - at, chunk.length - off)
        chunk.copy(frags[f], at, off, off + count)
        fill += count
        off += count
        if (fill === stripeSize) await flushStripe()
      }
    }
    if (opts.size !== undefined && received !== opts.size) throw DdfsError.BAD_ARGUMENT(`the source ended after ${received} of ${opts.size} bytes`)
    if (fill > 0) await flushStripe()
    await Promise.all(inflight)
    if (failure !== null) throw failure
  } finally {
    await Promise.allSettled(inflight)
  }
  const hash = whole.digest()
  const expected = await opts.expectedHash
  if (expected !== undefined && expected !== hash) {
    throw DdfsError.CORRUPT('the object arrived with a different XXH64 than the client sent; nothing was stored')
  }
  return { size: received, stripeSize, hash, stripeHashes }
}

/** Encodes one stripe and stores its n fragments; returns the buffers to reuse. */
async function writeStripe (id: Buffer, s: number, k: number, m: number, data: Buffer[], bytes: number,
  take: () => Buffer, stripeHashes: bigint[], sink: FragmentSink): Promise<Buffer[]> {
  const n = k + m
  const fragLen = Math.ceil(bytes / k)
  const replaced: Buffer[] = []
  if (bytes < k * FRAGMENT_DATA && k > 1) {
    // The short last stripe: its bytes arrived FRAGMENT_DATA-wise; regroup them fragLen-wise
    // (zero-padded) so the k data fragments share one length for the code.
    const regrouped = Array.from({ length: k }, take)
    for (let i = 0; i < k; i++) {
      const from = i * fragLen
      const to = Math.min(bytes, from + fragLen)
      let at = 0
      for (let pos = from; pos < to;) {
        const src = Math.floor(pos / FRAGMENT_DATA)
        const srcOff = pos - src * FRAGMENT_DATA
        const count = Math.min(to - pos, FRAGMENT_DATA - srcOff)
        data[src].copy(regrouped[i], at, srcOff, srcOff + count)
        at += count
        pos += count
      }
      regrouped[i].fill(0, at, fragLen)
    }
    replaced.push(...data)
    data = regrouped
  }
  const all = [...data, ...Array.from({ length: m }, take)]
  const views = all.map((b) => b.subarray(0, fragLen))
  if (m > 0 && fragLen > 0) await encode(k, m, views.slice(0, k), views.slice(k))
  const writes: Promise<unknown>[] = []
  for (let i = 0; i < n; i++) {
    const hash = xxh64(views[i])
    stripeHashes[s * n + i] = hash
    writeTrailer({ id, stripe: s, index: i, k, m, length: fragLen, hash }, all[i], fragLen)
    writes.push(sink(s, i, all[i].subarray(0, fragLen + TRAILER_BYTES)))
  }
  // Every write settles before the buffers are reused, even when one fails.
  const results = await Promise.allSettled(writes)
  const failed = results.find((r) => r.status === 'rejected')
  if (failed !== undefined) throw (failed as PromiseRejectedResult).reason
  return [...all, ...replaced]
}

export interface ReadObjectOptions {
  offset?: number
  length?: number
  /**
   * When a stripe still waits for one fragment this long after the others arrived, ask a
   * parity fragment too and take whichever comes first (a slow node does not set the pace).
   */
  hedgeMs?: number
  /** Called for each fragment that failed its checks (the caller may have it rebuilt). */
  onCorrupt?: (stripe: number, index: number) => void
}

/** Yields the bytes of `manifest`'s object in order, each fragment verified. */
export async function * readObject (id: Buffer, manifest: Manifest, opts: ReadObjectOptions, fetch: FragmentSource): AsyncIterable<Buffer> {
  const offset = opts.offset ?? 0
  const length = opts.length ?? manifest.size - offset
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > manifest.size) {
    throw DdfsError.BAD_ARGUMENT(`range ${offset}+${length} is outside the object (${manifest.size} bytes)`)
  }
  if (length === 0) return
  // A small object held in its manifest (checked with it): no fragments to fetch.
  if (manifest.inline !== undefined) { yield manifest.inline.subarray(offset, offset + length); return }
  const first = Math.floor(offset / manifest.stripeSize)
  const last = Math.floor((offset + length - 1) / manifest.stripeSize)
  const ahead = Math.max(1, Math.floor(BUFFERS_IN_FLIGHT / manifest.k))
  const reads: Array<Promise<Buffer[]>> = []
  const start = (s: number): void => {
    if (s > last) return
    const p = readStripe(id, manifest, s, fetch, opts.hedgeMs, opts.onCorrupt)
    p.catch(() => {})  // read-ahead the consumer may never reach stays handled
    reads.push(p)
  }
  for (let s = first; s < first + ahead; s++) start(s)
  for (let s = first; s <= last; s++) {
    const pieces = await (reads.shift() as Promise<Buffer[]>)
    start(s + ahead)
    let pos = s * manifest.stripeSize
    for (const piece of pieces) {
      const from = Math.max(offset, pos) - pos
      const to = Math.min(offset + length, pos + piece.length) - pos
      if (to > from) yield piece.subarray(from, to)
      pos += piece.length
    }
  }
}

/** The data of stripe `s` as its data fragments' views, in order; rebuilt from parity when needed. */
async function readStripe (id: Buffer, manifest: Manifest, s: number, fetch: FragmentSource, hedgeMs?: number,
  onCorrupt?: (stripe: number, index: number) => void): Promise<Buffer[]> {
  const { k, m } = manifest
  const n = k + m
  const { bytes, fragLen } = stripeShape(manifest, s)
  const shards: Array<Buffer | null> = new Array(n).fill(null)
  const errors: string[] = []
  let corrupt = 0
  let good = 0
  let next = k       // the next parity fragment to ask for
  let pending = 0
  await new Promise<void>((resolve) => {
    let hedge: NodeJS.Timeout | null = null
    const settle = (): void => {
      if (good >= k || (pending === 0 && next >= n)) {
        if (hedge !== null) clearTimeout(hedge)
        resolve()
      }
    }
    const ask = (i: number): void => {
      pending++
      checkedFragment(id, manifest, s, i, fragLen, fetch).then((data) => {
        if (good < k) { shards[i] = data; good++ }
      }, (err) => {
        const e = DdfsError.from(err)
        if (e.code === 'CORRUPT') { corrupt++; onCorrupt?.(s, i) }
        errors.push(e.message)
        if (next < n && good < k) ask(next++)  // a lost or bad fragment: ask for parity instead
      }).finally(() => {
        pending--
        if (hedgeMs !== undefined && good === k - 1 && pending > 0 && next < n && hedge === null) {
          hedge = setTimeout(() => { if (good < k && next < n) ask(next++) }, hedgeMs)
        }
        settle()
      })
    }
    // Data fragments first: when they are all good no decoding is needed.
    for (let i = 0; i < k; i++) ask(i)
  })
  if (good < k) {
    // Enough fragments were there but too many failed their checks: that is corruption.
    const what = `stripe ${s} of object ${id.toString('hex')}: ${good} of ${n} fragments reachable and intact, ${k} needed (${errors.join('; ')})`
    throw good + corrupt >= k ? DdfsError.CORRUPT(what) : DdfsError.UNAVAILABLE(what)
  }
  if (shards.slice(0, k).some((x) => x === null)) {
    const present = shards.map((x) => x !== null)
    const full = shards.map((x) => x ?? Buffer.alloc(fragLen))
    await reconstruct(k, m, full, present)
    for (let i = 0; i < k; i++) shards[i] = full[i]
  }
  const out: Buffer[] = []
  for (let i = 0; i < k; i++) {
    const has = Math.max(0, Math.min(fragLen, bytes - i * fragLen))
    if (has > 0) out.push((shards[i] as Buffer).subarray(0, has))
  }
  return out
}

/** One fragment's data, checked: its trailer, and the hash the manifest recorded for its slot. */
export async function checkedFragment (id: Buffer, manifest: Manifest, s: number, i: number, fragLen: number, fetch: FragmentSource): Promise<Buffer> {
  const { entry, where, verified } = await fetch(s, i)
  const h = readTrailer(entry)
  if (!h.id.equals(id) || h.stripe !== s || h.index !== i || h.k !== manifest.k || h.m !== manifest.m || h.length !== fragLen || entry.length !== fragLen + TRAILER_BYTES) {
    throw DdfsError.CORRUPT(`fragment ${s}/${i} of ${id.toString('hex')} on ${where} belongs to another object or slot`)
  }
  // The trailer's data hash must be the one the manifest recorded for this slot.
  const data = entry.subarray(0, fragLen)
  if (h.hash !== manifest.stripeHashes[s * (manifest.k + manifest.m) + i] || (!verified && await xxh64Async(data) !== h.hash)) {
    throw DdfsError.CORRUPT(`fragment ${s}/${i} of ${id.toString('hex')} on ${where} does not match the manifest`)
  }
  return data
}
