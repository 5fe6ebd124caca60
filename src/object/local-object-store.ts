// Objects on the node's own devices, (n,k) erasure coded across them (src/object/stripes.ts).
// An object is a manifest plus, per stripe, k data and m parity fragments, each a store entry
// holding the fragment's data followed by a 64-byte trailer. A fragment's data is at most
// SEGMENT_SIZE - 64 bytes, so data + trailer fill one store segment: one aligned write and one
// XXH64 per fragment on disk. The fragments of a stripe go to different devices (rotating per
// stripe), so with n devices any m of them can be lost.
import crypto from 'node:crypto'
import { DdfsError } from '../errors'
import { SEGMENT_SIZE, ID_BYTES } from '../constants'
import { MAX_FRAGMENTS } from '../erasure/reed-solomon'
import { EntryKind } from '../store/types'
import type { BlockStore } from '../store/types'
import { encodeManifest, decodeManifest, keyOf, TOMBSTONE_KIND, type Manifest } from './records'
import { DeviceSite } from './device-site'
import { Names } from './names'
import { writeObject, readObject, FRAGMENT_DATA, type FetchedFragment, type WrittenObject } from './stripes'
import type { CatalogEntry, DevicePool, GetOptions, ObjectHead, ObjectInfo, ObjectStore, PutOptions, Schema, FragmentLocation } from './types'

export { FRAGMENT_DATA } from './stripes'

export function checkId (id: Buffer): void {
  if (!Buffer.isBuffer(id) || id.length !== ID_BYTES) throw DdfsError.BAD_ARGUMENT('an object id is 32 hex characters')
}

/** Checks an explicit schema; UNAVAILABLE when it needs more failure domains than there are. */
export function checkSchema ({ k, m }: Schema, domains: number, what: string, allowDegraded: boolean | undefined): void {
  if (!Number.isInteger(k) || !Number.isInteger(m) || k < 1 || m < 0 || k + m > MAX_FRAGMENTS) {
    throw DdfsError.BAD_ARGUMENT(`schema n=${k + m} k=${k} is invalid: need 1 <= k <= n <= ${MAX_FRAGMENTS}`)
  }
  if (k + m > domains && allowDegraded !== true) {
    throw DdfsError.UNAVAILABLE(`schema n=${k + m} k=${k} needs ${k + m} failure domains, ${what}; choose a smaller -n, or pass --allow-degraded`)
  }
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

/** The manifest of a new object, from what the pipeline wrote. */
export function newManifest (opts: PutOptions, schema: Schema, written: WrittenObject): Manifest {
  return { version: 1, k: schema.k, m: schema.m, createdAt: Date.now(), name: opts.name ?? null, tombstone: false, ...written }
}

/** A put's announced size, if any, must be a byte count. */
export function checkSize (size: number | undefined): void {
  if (size !== undefined && (!Number.isSafeInteger(size) || size < 0)) throw DdfsError.BAD_ARGUMENT(`bad object size ${size}`)
}

export class LocalObjectStore implements ObjectStore {
  private readonly site: DeviceSite
  private readonly names: Names

  /** `site`: the same devices as an entry site (the node shares its one, with its catalog). */
  constructor (private readonly pool: DevicePool, site?: DeviceSite) {
    this.site = site ?? new DeviceSite(pool, 'this node')
    this.names = new Names(() => [this.site], () => [this.site])
  }

  async put (source: AsyncIterable<Buffer>, opts: PutOptions): Promise<ObjectInfo> {
    const stores = this.pool.stores()
    if (stores.length === 0) throw DdfsError.UNAVAILABLE('this node has no devices; attach one with: ddfs dev add -d DEVICE -f')
    const schema = opts.schema ?? defaultSchema(stores.length)
    checkSchema(schema, stores.length, `this node has ${stores.length} devices (attach more devices)`, opts.allowDegraded)
    checkSize(opts.size)
    const { k, m } = schema
    if (opts.size !== undefined) this.checkSpace(stores, opts.size, k, m)
    const id = crypto.randomBytes(ID_BYTES)
    try {
      const written = await writeObject(source, { id, size: opts.size, k, m, expectedHash: opts.expectedHash, signal: opts.signal },
        (s, i, entry) => stores[(s + i) % stores.length].put(keyOf(id, EntryKind.Fragment, s, i), entry).then(() => {}))
      const manifest = newManifest(opts, schema, written)
      const body = encodeManifest(manifest)
      await Promise.all(this.manifestStores(stores, id, m).map((st) => this.site.putEntryOn(st, keyOf(id, EntryKind.Manifest), body)))
      if (opts.name !== undefined) await this.names.set(opts.name, id)
      return this.describe(id, manifest)
    } catch (err) {
      await this.site.removeId(id, false).catch(() => {})
      throw DdfsError.from(err)
    }
  }

  async * get (id: Buffer, opts: GetOptions = {}): AsyncIterable<Buffer> {
    const manifest = await this.load(id)
    // A damaged fragment met by a read has the node's scrubber check and rebuild the object's
    // entries (once per read); the read itself goes on with the stripe's other fragments.
    let told = false
    const onCorrupt = (): void => {
      if (told || this.site.scrubber === null) return
      told = true
      this.site.scrubber(id).catch(() => {})
    }
    yield * readObject(id, manifest, { ...opts, onCorrupt }, (s, i) => this.readFragment(id, s, i))
  }

  /** The object's manifest from an intact copy on the node's devices (what scrub rebuilds from). */
  async currentManifest (id: Buffer): Promise<Manifest> {
    return await this.load(id)
  }

  private async readFragment (id: Buffer, s: number, i: number): Promise<FetchedFragment> {
    const key = keyOf(id, EntryKind.Fragment, s, i)
    const store = this.pool.stores().find((st) => st.stat(key) !== null)
    if (store === undefined) throw DdfsError.UNAVAILABLE(`fragment ${s}/${i} is on no attached device`)
    return { entry: await store.read(key), where: store.path, verified: true }
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
    // Everything of the id goes and a tombstone (zero blocks) stays, in one step: it never comes back.
    await this.site.removeId(id, true)
  }

  async list (after: Buffer | null, limit: number): Promise<Buffer[]> {
    return this.site.listManifests(after, limit)
  }

  async setName (name: string, id: Buffer): Promise<void> { await this.names.set(name, id) }
  resolveName (name: string): Promise<Buffer | null> { return this.names.resolve(name) }
  removeName (name: string): Promise<void> { return this.names.remove(name) }
  catalog (): Promise<CatalogEntry[]> { return this.names.catalog() }

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
    return describeObject(id, manifest, fragments)
  }
}

/** What query shows of an object: its manifest and where its fragments are. */
export function describeObject (id: Buffer, manifest: Manifest, fragments: FragmentLocation[]): ObjectInfo {
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
    ...(manifest.inline !== undefined ? { inline: true } : {}),
    fragments
  }
}
