// Names and the catalog over entry sites, for both object stores: a name record lives on the
// sites chosen by the name's hash (the first few of `sitesFor`), and the catalog is the union of
// what every site holds, each object shown under the newest name that points at it.
import { DdfsError } from '../errors'
import { EntryKind, type EntryKey } from '../store/types'
import { nameHash } from '../cluster/placement'
import { checkName, decodeNameRecord, encodeNameRecord, keyOf, NO_OBJECT, type NameRecord } from './records'
import type { CatalogEntry, CatalogObject, EntrySite } from './types'

/** Name record copies written (all sites when fewer): as many as a 4+2 object's manifest. */
export const NAME_COPIES = 3

export class Names {
  /**
   * `sitesFor(hash)`: every site, in the order a name with that hash is placed on them;
   * `all()`: every site, for the catalog.
   */
  constructor (private readonly sitesFor: (hash: Buffer) => EntrySite[], private readonly all: () => EntrySite[]) {}

  /**
   * Points `name` at `id` on every holder of the name; resolves with the object the name
   * pointed at before (the newest record the holders replaced), or null.
   */
  async set (name: string, id: Buffer): Promise<Buffer | null> {
    // Each holder answers with the record it replaced: what the name stood for is learnt in the
    // round that changes it (a resolve beside the put cost the name's holders another round).
    const replaced = await this.toHolders(name, id, (s, key, record) => s.putName(key, record))
    let newest: NameRecord | null = null
    for (const r of replaced) {
      if (r === null) continue
      try {
        const prev = decodeNameRecord(r)
        // (A record of this very put, left by an attempt that failed on another holder, is not
        // what the name stood for.)
        if (prev.name === name && !prev.id.equals(id) && (newest === null || prev.version > newest.version)) newest = prev
      } catch {}  // a damaged record it replaced says nothing
    }
    return newest === null || newest.id.equals(NO_OBJECT) ? null : newest.id
  }

  /**
   * Points a name that no holder has a live record of (a create) at `id`: true when every holder
   * stored it. False when a holder holds a record (it wrote nothing; whoever stored it did): the
   * caller names the object with set() once it is whole, as for any replacement, and learns
   * there what it replaces. Fails like set().
   *
   * `together(site, key, record)`: the request that carries a holder's record with another write
   * of the caller's (a CreatePut), or undefined to send it alone. It is asked for every holder
   * before setNew returns.
   */
  async setNew (name: string, id: Buffer, together?: (site: EntrySite, key: EntryKey, record: Buffer) => Promise<Buffer | null> | undefined): Promise<boolean> {
    const held = await this.toHolders(name, id, (s, key, record) => together?.(s, key, record) ?? s.putNewName(key, record))
    return held.every((r) => r === null)
  }

  /**
   * A new record of `name` -> `id` through `put` to every holder of the name (like a manifest's
   * copies: a listing or a resolve that reaches any one holder then sees it; with one copy
   * enough, a listing that missed that holder showed the name's older record, and a mount read
   * the replaced object's bytes). Each holder's answer; UNAVAILABLE when any one failed.
   */
  private toHolders (name: string, id: Buffer, put: (site: EntrySite, key: EntryKey, record: Buffer) => Promise<Buffer | null>): Promise<Array<Buffer | null>> {
    // (Not async: every put starts before this returns; setNew's `together` relies on it.)
    checkName(name)
    const hash = nameHash(name)
    const record = encodeNameRecord({ name, id, version: Date.now() })
    const sites = this.sitesFor(hash).slice(0, NAME_COPIES)
    return Promise.allSettled(sites.map(async (s) => await put(s, keyOf(hash, EntryKind.Name), record))).then((results) => {
      const failed = results.flatMap((r, i) => r.status === 'rejected' ? [`${sites[i].label}: ${DdfsError.from(r.reason).message}`] : [])
      if (failed.length > 0) {
        throw DdfsError.UNAVAILABLE(`${failed.length} of the ${sites.length} nodes that hold the name '${name}' could not store it (${failed.join('; ')}); try again`)
      }
      return results.map((r) => r.status === 'fulfilled' ? r.value : null)
    })
  }

  async resolve (name: string): Promise<Buffer | null> {
    checkName(name)
    const hash = nameHash(name)
    const sites = this.sitesFor(hash)
    for (let at = 0; at < sites.length;) {
      const batch = sites.slice(at, at + NAME_COPIES)
      at += batch.length
      const found = await Promise.allSettled(batch.map(async (s) => decodeNameRecord((await s.getEntry(keyOf(hash, EntryKind.Name))).entry)))
      const newest = found.flatMap((r) => r.status === 'fulfilled' && r.value.name === name ? [r.value] : []).sort((a, b) => b.version - a.version)[0]
      if (newest !== undefined) return newest.id.equals(NO_OBJECT) ? null : newest.id
    }
    return null
  }

  /** Removes a name: a newer record pointing at no object (see NO_OBJECT), not a removal. */
  async remove (name: string): Promise<void> {
    await this.set(name, NO_OBJECT)
  }

  async catalog (): Promise<CatalogEntry[]> {
    const parts = await Promise.allSettled(this.all().map((s) => s.listCatalog()))
    if (parts.every((p) => p.status === 'rejected')) throw DdfsError.UNAVAILABLE('no node answered the listing')
    const objects = new Map<string, CatalogObject>()
    const names = new Map<string, NameRecord>()
    for (const p of parts) {
      if (p.status !== 'fulfilled') continue
      for (const o of p.value.objects) objects.set(o.id.toString('hex'), o)
      for (const r of p.value.names) {
        const had = names.get(r.name)
        if (had === undefined || had.version < r.version) names.set(r.name, r)
      }
    }
    // Each object under the newest name pointing at it; a name whose object is gone (or that
    // was removed: its newest record points at NO_OBJECT) is dropped.
    const nameOf = new Map<string, NameRecord>()
    for (const r of names.values()) {
      const hex = r.id.toString('hex')
      const had = nameOf.get(hex)
      if (objects.has(hex) && (had === undefined || had.version < r.version)) nameOf.set(hex, r)
    }
    return [...objects.values()].map((o) => ({ ...o, name: nameOf.get(o.id.toString('hex'))?.name ?? null }))
  }
}
