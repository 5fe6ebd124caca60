// A node's own devices as an entry site: what the cluster object store writes to when a holder
// is this node, and what the node answers other nodes' entry requests with. Fragments of one
// object rotate over the node's devices by stripe; a full device passes the entry to the next.
import { DdfsError } from '../errors'
import { EntryKind } from '../store/types'
import type { BlockStore, EntryKey } from '../store/types'
import { keyOf, TOMBSTONE_KIND, decodeManifest, decodeNameRecord, NO_OBJECT, type NameRecord } from './records'
import { idPages } from '../store/walk'
import { ENTRY_ABSENT, ENTRY_DELETED, ENTRY_VERSION_BASE } from '../wire/messages'
import type { CatalogObject, DevicePool, EntrySite, FragmentLocation, SiteCatalog } from './types'

/** Memory for manifests kept by DeviceSite, and the largest one kept (a 16 KiB inline object's). */
const MANIFEST_CACHE_BYTES = 32 * 1024 * 1024
const MANIFEST_CACHE_ENTRY_MAX = 20 * 1024

export class DeviceSite implements EntrySite {
  // The catalog of what this node holds, kept in memory once first asked for (listing a store
  // must not read every manifest from disk each time), then updated by every put and remove.
  private objects: Map<string, CatalogObject> | null = null
  private names: Map<string, NameRecord> | null = null
  private readonly versions = new Map<string, number>()  // manifest version by object id
  // The newest manifests put or read here, by object id (oldest first): a reader's manifest
  // round is answered from memory, without a thread-pool hop and a device read per holder.
  private readonly manifests = new Map<string, Buffer>()
  private manifestBytes = 0
  private loading: Promise<void> | null = null
  /** Checks and repairs the entries of one id (the node's scrubber); none on a standalone node. */
  scrubber: ((id: Buffer) => Promise<void>) | null = null

  constructor (private readonly pool: DevicePool, readonly label: string) {}

  async putEntry (key: EntryKey, data: Buffer): Promise<void> {
    const stores = this.pool.stores()
    if (stores.length === 0) throw DdfsError.UNAVAILABLE(`node ${this.label} has no devices; attach one with: ddfs dev add -d DEVICE -f`)
    // A deleted id never comes back: a late repair or hand-off of a deleted object is refused.
    if (key.kind !== EntryKind.Name && this.find(keyOf(key.id, TOMBSTONE_KIND)) !== undefined) {
      throw DdfsError.NOT_FOUND(`object ${key.id.toString('hex')} was deleted`)
    }
    // An entry that exists (a newer manifest or name record) is replaced where it is: a copy on
    // another device would leave two versions, and readers take the first device's.
    const had = this.find(key)
    if (had !== undefined) {
      await had.put(key, data)
      await this.undoIfDeleted(key, had)
      this.noteEntry(key, data)
      return
    }
    const start = key.kind === EntryKind.Fragment ? key.stripe + key.index : key.id[0]
    let full: DdfsError | null = null
    let failed: DdfsError | null = null
    for (let i = 0; i < stores.length; i++) {
      const store = stores[(start + i) % stores.length]
      try {
        await store.put(key, data)
        await this.undoIfDeleted(key, store)
        this.noteEntry(key, data)
        return
      } catch (err) {
        const e = DdfsError.from(err)
        // A full device, or one failing writes (EIO), passes the entry to the next device.
        if (e.code === 'DEVICE_FULL') full = e
        else if (e.code === 'IO') failed = e
        else throw e
      }
    }
    if (failed !== null) throw DdfsError.IO(`no device of node ${this.label} took the entry: ${failed.message}${full !== null ? `; ${full.message}` : ''}`)
    throw DdfsError.DEVICE_FULL(`every device of node ${this.label} is full (${full?.message ?? ''})`)
  }

  /**
   * The id was deleted while this entry was being written (a failed put's clean-up leaves its
   * tombstones beside the put's slower writes; the tombstone check above ran before): the entry
   * goes again, so a deleted id never keeps a live entry. A tombstone that lands later removes
   * it itself (removeId takes every entry of the id).
   */
  private async undoIfDeleted (key: EntryKey, store: BlockStore): Promise<void> {
    if (key.kind === EntryKind.Name || this.find(keyOf(key.id, TOMBSTONE_KIND)) === undefined) return
    await store.remove(key).catch(() => {})  // (a failing device: the tombstone still hides it from listings and readers)
    throw DdfsError.NOT_FOUND(`object ${key.id.toString('hex')} was deleted`)
  }

  /** The store holding the name record `key` (undefined: none); refuses other kinds of entry. */
  private nameStore (key: EntryKey): BlockStore | undefined {
    if (key.kind !== EntryKind.Name) throw DdfsError.BAD_ARGUMENT(`a name put carries a name record, not kind ${key.kind}`)
    return this.find(key)
  }

  async putName (key: EntryKey, record: Buffer): Promise<Buffer | null> {
    const had = this.nameStore(key)
    let previous: Buffer | null = null
    if (had !== undefined) {
      try { previous = await had.read(key) } catch {}  // a damaged record replaced: nothing to report
    }
    await this.putEntry(key, record)
    return previous
  }

  async putNewName (key: EntryKey, record: Buffer): Promise<Buffer | null> {
    const had = this.nameStore(key)
    if (had !== undefined) {
      let current: Buffer
      try {
        current = await had.read(key)
      } catch {
        return Buffer.alloc(0)  // a damaged record: the name is set the careful way, after its object
      }
      try {
        const held = decodeNameRecord(current).id
        // (The same put's record, copied here by healing first, is as good as stored.)
        if (held.equals(decodeNameRecord(record).id)) return null
        if (!held.equals(NO_OBJECT)) return current
      } catch {
        return current
      }
    }
    await this.putEntry(key, record)
    return null
  }

  async putCreate (id: Buffer, manifest: Buffer, nameKey: EntryKey, record: Buffer): Promise<Buffer | null> {
    const manifestKey = keyOf(id, EntryKind.Manifest)
    // The usual create: neither entry is here yet and both belong on the same device (as
    // putEntry places them): one store commit for the two, where two commits one after the other
    // took more than twice as long as one.
    const stores = this.pool.stores()
    const store = stores.length > 0 ? stores[id[0] % stores.length] : undefined
    if (store !== undefined && stores[nameKey.id[0] % stores.length] === store && this.find(manifestKey) === undefined &&
      this.nameStore(nameKey) === undefined && this.find(keyOf(id, TOMBSTONE_KIND)) === undefined) {
      let stored = true
      try {
        await store.putMany([{ key: manifestKey, data: manifest }, { key: nameKey, data: record }])
      } catch (err) {
        const code = DdfsError.from(err).code
        if (code !== 'DEVICE_FULL' && code !== 'IO') throw err
        stored = false  // another device may take them (below)
      }
      if (stored) {
        await this.undoIfDeleted(manifestKey, store)
        this.noteEntry(manifestKey, manifest)
        this.noteEntry(nameKey, record)
        return null
      }
    }
    const [, held] = await Promise.all([this.putEntry(manifestKey, manifest), this.putNewName(nameKey, record)])
    return held
  }

  /** The node's attached stores (for scrub and orphan collection). */
  stores (): BlockStore[] {
    return this.pool.stores()
  }

  /** Puts an entry on one given device (the local store places manifest copies itself). */
  async putEntryOn (store: BlockStore, key: EntryKey, data: Buffer): Promise<void> {
    await store.put(key, data)
    this.noteEntry(key, data)
  }

  async getEntry (key: EntryKey): Promise<{ entry: Buffer, verified: boolean }> {
    const store = this.find(key)
    if (store === undefined) throw DdfsError.NOT_FOUND(`node ${this.label} holds no entry ${key.kind}/${key.stripe}/${key.index} of ${key.id.toString('hex')}`)
    return { entry: await store.read(key), verified: true }
  }

  async getManifest (id: Buffer): Promise<Buffer | 'deleted' | null> {
    if (this.find(keyOf(id, TOMBSTONE_KIND)) !== undefined) return 'deleted'
    const hex = id.toString('hex')
    const cached = this.manifests.get(hex)
    if (cached !== undefined) return cached
    const key = keyOf(id, EntryKind.Manifest)
    const store = this.find(key)
    if (store === undefined) return null
    const before = store.stat(key)
    const body = await store.read(key)
    // Kept only when it is still the device's copy: a put of a newer version (kept by the put)
    // or a removal while the read was on its way would otherwise be undone here.
    const now = store.stat(key)
    if (now !== null && before !== null && now.block === before.block && now.hash === before.hash) this.cacheManifest(hex, body)
    return body
  }

  /**
   * A device's copy of `key` was found damaged: it is not answered from memory any more either,
   * so readers and healing see the damage (and healing replaces the copy) instead of a copy that
   * lives only as long as this process.
   */
  damaged (key: EntryKey): void {
    if (key.kind === EntryKind.Manifest) this.cacheManifest(key.id.toString('hex'), null)
  }

  /** Keeps `body` as the manifest of `hex` while the cache's budget allows. */
  private cacheManifest (hex: string, body: Buffer | null): void {
    const had = this.manifests.get(hex)
    if (had !== undefined) { this.manifests.delete(hex); this.manifestBytes -= had.length }
    if (body === null || body.length > MANIFEST_CACHE_ENTRY_MAX) return
    const copy = Buffer.from(body)  // never a view of a frame or pool buffer that moves on
    this.manifests.set(hex, copy)
    this.manifestBytes += copy.length
    for (const [k, v] of this.manifests) {
      if (this.manifestBytes <= MANIFEST_CACHE_BYTES) break
      this.manifests.delete(k)
      this.manifestBytes -= v.length
    }
  }

  async listFragments (id: Buffer): Promise<FragmentLocation[]> {
    const out: FragmentLocation[] = []
    for (const store of this.pool.stores()) {
      const info = store.info()
      for (const e of store.list(id)) {
        if (e.key.kind !== EntryKind.Fragment) continue
        out.push({ node: this.label, stripe: e.key.stripe, index: e.key.index, device: store.path, sbId: info.sbId, block: e.block, blocks: e.blocks, length: e.length, hash: e.hash })
      }
    }
    return out
  }

  /**
   * Removes everything of an id here. With `tombstone`, each of the first two devices (one lost
   * device does not undo a delete) removes and marks in one durable step: a device whose write
   * fails keeps what it had, never neither. (Removing first and marking after left a node that
   * held a manifest with nothing when the mark failed; healing then copied the manifest back to
   * it from a node that had missed the delete, and the deleted object returned.) Fails when any
   * device failed; what the others did stands.
   */
  async removeId (id: Buffer, tombstone: boolean): Promise<void> {
    const stores = this.pool.stores()
    const mark = keyOf(id, TOMBSTONE_KIND)
    const results = await Promise.allSettled(stores.map((st, i) => st.removeId(id, tombstone && i < 2 ? mark : undefined)))
    this.forget(id, null)
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed === undefined) return
    // A manifest a failing device kept (with no mark anywhere) is still held: list it again.
    const key = keyOf(id, EntryKind.Manifest)
    const holder = this.find(key)
    if (holder !== undefined && this.find(mark) === undefined) {
      try { this.noteEntry(key, await holder.read(key)) } catch {}
    }
    throw DdfsError.from(failed.reason)
  }

  async listManifests (after: Buffer | null, limit: number): Promise<Buffer[]> {
    const found = new Map<string, Buffer>()
    for (const store of this.pool.stores()) {
      let cursor = after
      let taken = 0
      while (taken < limit) {
        const ids = store.ids(cursor, 256)
        if (ids.length === 0) break
        for (const id of ids) {
          if (store.stat(keyOf(id, EntryKind.Manifest)) !== null && this.find(keyOf(id, TOMBSTONE_KIND)) === undefined) { found.set(id.toString('hex'), id); taken++ }
        }
        cursor = ids[ids.length - 1]
      }
    }
    return [...found.values()].sort(Buffer.compare).slice(0, limit)
  }

  async capacity (): Promise<{ size: number, free: number }> {
    let size = 0
    let free = 0
    for (const st of this.pool.stores()) { const i = st.info(); size += i.size; free += i.freeSize }
    return { size, free }
  }

  async listCatalog (): Promise<SiteCatalog> {
    await this.ensureCatalog()
    return { objects: [...(this.objects as Map<string, CatalogObject>).values()], names: [...(this.names as Map<string, NameRecord>).values()] }
  }

  async entryStates (kind: number, ids: Buffer[]): Promise<number[]> {
    if (kind !== EntryKind.Manifest && kind !== EntryKind.Name) throw DdfsError.BAD_ARGUMENT(`entry states are kept for manifests and name records, not kind ${kind}`)
    await this.ensureCatalog()
    return ids.map((id) => {
      if (this.find(keyOf(id, TOMBSTONE_KIND)) !== undefined) return ENTRY_DELETED
      const hex = id.toString('hex')
      const version = kind === EntryKind.Manifest ? this.versions.get(hex) : this.names?.get(hex)?.version
      if (version !== undefined) return ENTRY_VERSION_BASE + version
      // Present but not decodable (damaged): held, at the lowest version, until scrub repairs it.
      return this.find(keyOf(id, kind)) !== undefined ? ENTRY_VERSION_BASE : ENTRY_ABSENT
    })
  }

  async fragmentCounts (ids: Buffer[]): Promise<number[][]> {
    const stores = this.pool.stores()
    return ids.map((id) => {
      const counts = new Map<number, number>()
      for (const st of stores) for (const e of st.list(id)) if (e.key.kind === EntryKind.Fragment) counts.set(e.key.index, (counts.get(e.key.index) ?? 0) + 1)
      return [...counts].flat()
    })
  }

  async removeSlot (id: Buffer, kind: number, index: number): Promise<void> {
    for (const st of this.pool.stores()) {
      for (const e of st.list(id)) {
        if (e.key.kind === kind && (kind !== EntryKind.Fragment || e.key.index === index)) await st.remove(e.key)
      }
    }
    if (kind !== EntryKind.Fragment) this.forget(id, kind)
  }

  async scrub (id: Buffer): Promise<void> {
    if (this.scrubber === null) throw DdfsError.UNAVAILABLE(`node ${this.label} does not scrub (standalone)`)
    await this.scrubber(id)
  }

  /** Forgets the catalog (a device came or went): the next listing reads it again. */
  invalidate (): void {
    this.objects = null
    this.names = null
    this.versions.clear()
    this.loading = null
    this.manifests.clear()
    this.manifestBytes = 0
  }

  private async ensureCatalog (): Promise<void> {
    if (this.objects === null || this.names === null) {
      this.loading ??= this.loadCatalog().catch((err) => { this.objects = null; this.names = null; this.loading = null; throw err })
      await this.loading
    }
  }

  /** Drops an id's manifest (kind Manifest), name record (kind Name) or both (null) from the catalog. */
  private forget (id: Buffer, kind: number | null): void {
    const hex = id.toString('hex')
    if (kind !== EntryKind.Name) { this.objects?.delete(hex); this.versions.delete(hex); this.cacheManifest(hex, null) }
    if (kind !== EntryKind.Manifest) this.names?.delete(hex)
  }

  /** Reads every manifest and name record once; puts and removes meanwhile update the maps too. */
  private async loadCatalog (): Promise<void> {
    this.objects = new Map()
    this.names = new Map()
    for (const store of this.pool.stores()) {
      for (const ids of idPages(store)) {
        await Promise.all(ids.map(async (id) => {
          for (const kind of [EntryKind.Manifest, EntryKind.Name]) {
            const key = keyOf(id, kind)
            if (store.stat(key) === null || store.stat(keyOf(id, TOMBSTONE_KIND)) !== null) continue
            try {
              this.noteEntry(key, await store.read(key))
            } catch {
              // A damaged record is skipped here; reads of that object report it.
            }
          }
        }))
      }
    }
  }

  private noteEntry (key: EntryKey, data: Buffer): void {
    if (key.kind === EntryKind.Manifest) this.cacheManifest(key.id.toString('hex'), data)
    if (this.objects === null || this.names === null) return
    try {
      if (key.kind === EntryKind.Manifest) {
        const m = decodeManifest(data)
        this.objects.set(key.id.toString('hex'), { id: key.id, size: m.size, createdAt: m.createdAt })
        this.versions.set(key.id.toString('hex'), m.version)
      } else if (key.kind === EntryKind.Name) {
        this.names.set(key.id.toString('hex'), decodeNameRecord(data))
      }
    } catch {
      // Not decodable: not listed (its readers get the error).
    }
  }

  private find (key: EntryKey): BlockStore | undefined {
    return this.pool.stores().find((st) => st.stat(key) !== null)
  }
}
