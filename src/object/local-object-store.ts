// Objects on the node's own devices, (n,k) erasure coded across them. An object is a manifest
// plus, per stripe, k data and m parity fragments, each a store entry holding the fragment's
// data followed by a 64-byte trailer. A fragment's data is at most SEGMENT_SIZE - 64 bytes, so
// data + trailer fill one store segment: one aligned write and one XXH64 per fragment on disk.
// The fragments of a stripe go to different devices (rotating per stripe), so with n devices
// any m of them can be lost.
import crypto from 'node:crypto'
import { DdfsError } from '../errors'
import { SEGMENT_SIZE, ID_BYTES } from '../constants'
import { allocAligned, xxh64, Xxh64Stream } from '../hash'
import { encode, reconstruct, MAX_FRAGMENTS } from '../erasure/reed-solomon'
import { EntryKind } from '../store/types'
import type { BlockStore, EntryKey } from '../store/types'
import { encodeManifest, decodeManifest, writeTrailer, readTrailer, TRAILER_BYTES, type Manifest } from './records'
import type { DevicePool, GetOptions, ObjectHead, ObjectInfo, ObjectStore, PutOptions, Schema, FragmentLocation } from './types'

/** Data bytes in one fragment of one stripe; a stripe holds k of them. */
export const FRAGMENT_DATA = SEGMENT_SIZE - TRAILER_BYTES

/** Fragment buffers in flight per transfer (writes or read-ahead): bounds memory to ~16 MiB. */
const BUFFERS_IN_FLIGHT = 16

/** A tombstone is a zero-length entry: it uses no blocks, and keeps a deleted id from coming back. */
const TOMBSTONE_KIND = 3

function keyOf (id: Buffer, kind: number, stripe = 0, index = 0): EntryKey {
  return { id, kind, stripe, index }
}

function checkId (id: Buffer): void {
  if (!Buffer.isBuffer(id) || id.length !== ID_BYTES) throw DdfsError.BAD_ARGUMENT('an object id is 32 hex characters')
}

/**
 * The default schema for `domains` failure domains: 4+2 from 6 on; below that the widest that
 * fits, keeping two parity fragments where there is room (1: 1+0, 2: 1+1, 3: 2+1, 4: 2+2, 5: 3+2).
 */
export function defaultSchema (domains: number): Schema {
  const n = Math.max(1, Math.min(domains, 6))
  const m = n >= 4 ? 2 : n >= 2 ? 1 : 0
  return { k: n - m, m }
}

/** Bytes of data in stripe `s` and the length of each of its fragments. */
function stripeShape (manifest: Manifest, s: number): { bytes: number, fragLen: number } {
  const bytes = Math.min(manifest.stripeSize, manifest.size - s * manifest.stripeSize)
  return { bytes, fragLen: Math.ceil(bytes / manifest.k) }
}

export class LocalObjectStore implements ObjectStore {
  constructor (private readonly pool: DevicePool) {}

  defaultSchema (): Schema {
    return defaultSchema(this.pool.stores().length)
  }

  async put (source: AsyncIterable<Buffer>, opts: PutOptions): Promise<ObjectInfo> {
    const stores = this.pool.stores()
    if (stores.length === 0) throw DdfsError.UNAVAILABLE('this node has no devices; attach one with: ddfs dev add -d DEVICE -f')
    const { k, m } = opts.schema ?? defaultSchema(stores.length)
    if (!Number.isInteger(k) || !Number.isInteger(m) || k < 1 || m < 0 || k + m > MAX_FRAGMENTS) {
      throw DdfsError.BAD_ARGUMENT(`schema n=${k + m} k=${k} is invalid: need 1 <= k <= n <= ${MAX_FRAGMENTS}`)
    }
    if (k + m > stores.length && opts.allowDegraded !== true) {
      throw DdfsError.UNAVAILABLE(`schema n=${k + m} k=${k} needs ${k + m} failure domains, this node has ${stores.length} devices; attach more devices, choose a smaller -n, or pass --allow-degraded`)
    }
    if (!Number.isSafeInteger(opts.size) || opts.size < 0) throw DdfsError.BAD_ARGUMENT(`bad object size ${opts.size}`)
    const n = k + m
    const stripeSize = k * FRAGMENT_DATA
    const stripes = Math.ceil(opts.size / stripeSize)
    this.checkSpace(stores, opts.size, k, m)
    const id = crypto.randomBytes(ID_BYTES)
    const stripeHashes: bigint[] = new Array(stripes * n)
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
      const p = this.writeStripe(stores, id, s, k, m, data, bytes, take, stripeHashes)
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
        if (received > opts.size) throw DdfsError.BAD_ARGUMENT(`the source has more than the ${opts.size} bytes announced`)
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
      if (received !== opts.size) throw DdfsError.BAD_ARGUMENT(`the source ended after ${received} of ${opts.size} bytes`)
      if (fill > 0) await flushStripe()
      await Promise.all(inflight)
      if (failure !== null) throw failure
      const hash = whole.digest()
      const expected = await opts.expectedHash
      if (expected !== undefined && expected !== hash) {
        throw DdfsError.CORRUPT('the object arrived with a different XXH64 than the client sent; nothing was stored')
      }
      const manifest: Manifest = {
        version: 1, size: opts.size, k, m, stripeSize, hash, createdAt: Date.now(), name: opts.name ?? null, tombstone: false, stripeHashes
      }
      const body = encodeManifest(manifest)
      await Promise.all(this.manifestStores(stores, id, m).map((st) => st.put(keyOf(id, EntryKind.Manifest), body)))
      return this.describe(id, manifest)
    } catch (err) {
      await Promise.allSettled(inflight)
      await Promise.allSettled(stores.map((st) => st.removeId(id)))
      throw DdfsError.from(err)
    }
  }

  /** Encodes one stripe and writes its n fragments to n devices; returns the buffers to reuse. */
  private async writeStripe (stores: BlockStore[], id: Buffer, s: number, k: number, m: number, data: Buffer[], bytes: number,
    take: () => Buffer, stripeHashes: bigint[]): Promise<Buffer[]> {
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
      const store = stores[(s + i) % stores.length]
      writes.push(store.put(keyOf(id, EntryKind.Fragment, s, i), all[i].subarray(0, fragLen + TRAILER_BYTES)))
    }
    await Promise.all(writes)
    return [...all, ...replaced]
  }

  async * get (id: Buffer, opts: GetOptions = {}): AsyncIterable<Buffer> {
    const manifest = await this.load(id)
    const offset = opts.offset ?? 0
    const length = opts.length ?? manifest.size - offset
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > manifest.size) {
      throw DdfsError.BAD_ARGUMENT(`range ${offset}+${length} is outside the object (${manifest.size} bytes)`)
    }
    if (length === 0) return
    const first = Math.floor(offset / manifest.stripeSize)
    const last = Math.floor((offset + length - 1) / manifest.stripeSize)
    const ahead = Math.max(1, Math.floor(BUFFERS_IN_FLIGHT / manifest.k))
    const reads: Array<Promise<Buffer[]>> = []
    const start = (s: number): void => {
      if (s > last) return
      const p = this.readStripe(id, manifest, s)
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
  private async readStripe (id: Buffer, manifest: Manifest, s: number): Promise<Buffer[]> {
    const { k, m } = manifest
    const n = k + m
    const { bytes, fragLen } = stripeShape(manifest, s)
    const shards: Array<Buffer | null> = new Array(n).fill(null)
    const errors: string[] = []
    let corrupt = 0
    const fetch = async (i: number): Promise<void> => {
      try {
        shards[i] = await this.readFragment(id, manifest, s, i, fragLen)
      } catch (err) {
        const e = DdfsError.from(err)
        if (e.code === 'CORRUPT') corrupt++
        errors.push(e.message)
      }
    }
    // Data fragments first: when they are all good no decoding is needed.
    await Promise.all(Array.from({ length: k }, (_, i) => fetch(i)))
    let good = shards.filter((x) => x !== null).length
    for (let i = k; i < n && good < k; i++) {
      await fetch(i)
      if (shards[i] !== null) good++
    }
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

  /** One fragment's data, checked: the store's XXH64, the trailer, and the manifest's hash. */
  private async readFragment (id: Buffer, manifest: Manifest, s: number, i: number, fragLen: number): Promise<Buffer> {
    const key = keyOf(id, EntryKind.Fragment, s, i)
    const store = this.pool.stores().find((st) => st.stat(key) !== null)
    if (store === undefined) throw DdfsError.UNAVAILABLE(`fragment ${s}/${i} is on no attached device`)
    const frag = await store.read(key)
    const h = readTrailer(frag)
    if (!h.id.equals(id) || h.stripe !== s || h.index !== i || h.k !== manifest.k || h.m !== manifest.m || h.length !== fragLen || frag.length !== fragLen + TRAILER_BYTES) {
      throw DdfsError.CORRUPT(`fragment ${s}/${i} of ${id.toString('hex')} on ${store.path} belongs to another object or slot`)
    }
    // The store checked the entry (data and trailer) against the XXH64 recorded when it was
    // written; the trailer's data hash must be the one the manifest recorded for this slot.
    if (h.hash !== manifest.stripeHashes[s * (manifest.k + manifest.m) + i]) {
      throw DdfsError.CORRUPT(`fragment ${s}/${i} of ${id.toString('hex')} on ${store.path} does not match the manifest`)
    }
    return frag.subarray(0, fragLen)
  }

  async head (id: Buffer): Promise<ObjectHead> {
    const m = await this.load(id)
    return { size: m.size, hash: m.hash }
  }

  async query (id: Buffer): Promise<ObjectInfo> {
    return this.describe(id, await this.load(id))
  }

  async delete (id: Buffer): Promise<void> {
    await this.load(id)
    // Remove everything of the id, then leave a tombstone (zero blocks) so it never comes back.
    for (const store of this.pool.stores()) {
      await store.removeId(id)
      await store.put(keyOf(id, TOMBSTONE_KIND), Buffer.alloc(0))
    }
  }

  async list (after: Buffer | null, limit: number): Promise<Buffer[]> {
    const found = new Map<string, Buffer>()
    for (const store of this.pool.stores()) {
      let cursor = after
      let taken = 0
      while (taken < limit) {
        const ids = store.ids(cursor, 256)
        if (ids.length === 0) break
        for (const id of ids) {
          if (store.stat(keyOf(id, EntryKind.Manifest)) !== null) { found.set(id.toString('hex'), id); taken++ }
        }
        cursor = ids[ids.length - 1]
      }
    }
    return [...found.values()].sort(Buffer.compare).slice(0, limit)
  }

  private checkSpace (stores: BlockStore[], size: number, k: number, m: number): void {
    const perDevice = Math.ceil(Math.ceil(size / (k * FRAGMENT_DATA)) * (k + m) / Math.min(stores.length, k + m)) * SEGMENT_SIZE
    const short = stores.slice(0, k + m).find((s) => s.info().freeSize < perDevice)
    if (short !== undefined) {
      throw DdfsError.DEVICE_FULL(`an object of ${size} bytes needs about ${perDevice} bytes on each of ${Math.min(stores.length, k + m)} devices; ${short.path} has ${short.info().freeSize} free`)
    }
  }

  /** The m + 1 devices (all, if fewer) that hold an object's manifest, chosen by its id. */
  private manifestStores (stores: BlockStore[], id: Buffer, m: number): BlockStore[] {
    const first = id[0] % stores.length
    return Array.from({ length: Math.min(stores.length, m + 1) }, (_, i) => stores[(first + i) % stores.length])
  }

  private async load (id: Buffer): Promise<Manifest> {
    checkId(id)
    const errors: string[] = []
    for (const store of this.pool.stores()) {
      if (store.stat(keyOf(id, TOMBSTONE_KIND)) !== null) break
      if (store.stat(keyOf(id, EntryKind.Manifest)) === null) continue
      try {
        const manifest = decodeManifest(await store.read(keyOf(id, EntryKind.Manifest)))
        if (!manifest.tombstone) return manifest
      } catch (err) {
        errors.push(DdfsError.from(err).message)  // a damaged copy: try the next one
      }
    }
    if (errors.length > 0) throw DdfsError.UNAVAILABLE(`no intact manifest of ${id.toString('hex')}: ${errors.join('; ')}`)
    throw DdfsError.NOT_FOUND(`no object ${id.toString('hex')} (unknown or deleted)`)
  }

  private describe (id: Buffer, manifest: Manifest): ObjectInfo {
    const fragments: FragmentLocation[] = []
    for (const store of this.pool.stores()) {
      const info = store.info()
      for (const e of store.list(id)) {
        if (e.key.kind !== EntryKind.Fragment) continue
        fragments.push({ stripe: e.key.stripe, index: e.key.index, device: store.path, sbId: info.sbId, block: e.block, blocks: e.blocks, length: e.length, hash: e.hash })
      }
    }
    fragments.sort((a, b) => a.stripe - b.stripe || a.index - b.index)
    return {
      id: id.toString('hex'),
      size: manifest.size,
      schema: { k: manifest.k, m: manifest.m },
      stripeSize: manifest.stripeSize,
      hash: manifest.hash,
      name: manifest.name,
      version: manifest.version,
      createdAt: manifest.createdAt,
      fragments
    }
  }
}
