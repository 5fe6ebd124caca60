// A node's own devices as an entry site: what the cluster object store writes to when a holder
// is this node, and what the node answers other nodes' entry requests with. Fragments of one
// object rotate over the node's devices by stripe; a full device passes the entry to the next.
import { DdfsError } from '../errors'
import { EntryKind } from '../store/types'
import type { BlockStore, EntryKey } from '../store/types'
import { keyOf, TOMBSTONE_KIND } from './records'
import type { DevicePool, EntrySite, FragmentLocation } from './types'

export class DeviceSite implements EntrySite {
  constructor (private readonly pool: DevicePool, readonly label: string) {}

  async putEntry (key: EntryKey, data: Buffer): Promise<void> {
    const stores = this.pool.stores()
    if (stores.length === 0) throw DdfsError.UNAVAILABLE(`node ${this.label} has no devices; attach one with: ddfs dev add -d DEVICE -f`)
    const start = key.kind === EntryKind.Fragment ? key.stripe + key.index : key.id[0]
    let full: DdfsError | null = null
    for (let i = 0; i < stores.length; i++) {
      const store = stores[(start + i) % stores.length]
      try {
        await store.put(key, data)
        return
      } catch (err) {
        const e = DdfsError.from(err)
        if (e.code !== 'DEVICE_FULL') throw e
        full = e
      }
    }
    throw DdfsError.DEVICE_FULL(`every device of node ${this.label} is full (${full?.message ?? ''})`)
  }

  async getEntry (key: EntryKey): Promise<{ entry: Buffer, verified: boolean }> {
    const store = this.find(key)
    if (store === undefined) throw DdfsError.NOT_FOUND(`node ${this.label} holds no entry ${key.kind}/${key.stripe}/${key.index} of ${key.id.toString('hex')}`)
    return { entry: await store.read(key), verified: true }
  }

  async getManifest (id: Buffer): Promise<Buffer | 'deleted' | null> {
    if (this.find(keyOf(id, TOMBSTONE_KIND)) !== undefined) return 'deleted'
    const key = keyOf(id, EntryKind.Manifest)
    const store = this.find(key)
    return store === undefined ? null : await store.read(key)
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

  async removeId (id: Buffer, tombstone: boolean): Promise<void> {
    const stores = this.pool.stores()
    await Promise.all(stores.map((st) => st.removeId(id)))
    // Two copies of the mark where there are two devices: one lost device does not undo a delete.
    if (tombstone) await Promise.all(stores.slice(0, 2).map((st) => st.put(keyOf(id, TOMBSTONE_KIND), Buffer.alloc(0))))
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
          if (store.stat(keyOf(id, EntryKind.Manifest)) !== null) { found.set(id.toString('hex'), id); taken++ }
        }
        cursor = ids[ids.length - 1]
      }
    }
    return [...found.values()].sort(Buffer.compare).slice(0, limit)
  }

  private find (key: EntryKey): BlockStore | undefined {
    return this.pool.stores().find((st) => st.stat(key) !== null)
  }
}
