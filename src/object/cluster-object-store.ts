// Objects spread over the nodes of a cluster: fragment index i of every stripe lives on the
// i-th fragment holder of the object id (rendezvous placement over the membership), the
// manifest on the first m+1 manifest holders. The manifest records which node holds each
// fragment index, so a reader goes straight to them whatever the membership is by then. Any
// node can coordinate any operation: the node a client talks to runs the pipeline
// (src/object/stripes.ts) and moves fragments to and from the holders.
import crypto from 'node:crypto'
import { DdfsError } from '../errors'
import { ID_BYTES } from '../constants'
import { EntryKind } from '../store/types'
import { fragmentSpread, manifestRank, nameRank } from '../cluster/placement'
import { Names } from './names'
import { IdsBeside } from './ids-beside'
import { encodeManifest, decodeManifest, keyOf, checkName, type Manifest } from './records'
import { writeObject, readObject, FRAGMENT_DATA, type FetchedFragment, type WrittenObject } from './stripes'
import { xxh64 } from '../hash'
import { shared } from '../buffers'
import { ENTRY_VERSION_BASE } from '../wire/messages'
import { checkId, checkSize, checkSchema, defaultSchema, newManifest, describeObject } from './local-object-store'
import type { CatalogEntry, EntrySite, GetOptions, ObjectHead, ObjectInfo, ObjectStore, PutOptions } from './types'

export interface ViewMember {
  publicKey: Buffer
  site: EntrySite
}

/** The membership as this node sees it (itself included), each member with its entry site. */
export interface ClusterView {
  /** Members new data is placed on: reachable and not draining. */
  members (): ViewMember[]
  /** The site of a member that can be read from (live or draining), or null. */
  siteOf (publicKey: Buffer): EntrySite | null
  /**
   * How many nodes the cluster has as far as placement is concerned: members in the view or
   * down for less than the grace period, not draining (default: members().length).
   */
  knownMembers?: () => number
}

/**
 * live: in the view; draining: in the view, moving its data off; down: out of the view for
 * less than the grace period (its fragments are waited for); lost: out of it for longer
 * (its fragments are rebuilt elsewhere).
 */
export type MemberState = 'live' | 'draining' | 'down' | 'lost'

/** What healing needs besides: this node, and every member's state. */
export interface HealingView extends ClusterView {
  readonly self: ViewMember
  stateOf (publicKey: Buffer): MemberState
  /** Every member this node knows of: in the view, and those that left it (down or lost). */
  describe (): Array<{ address: string, publicKey: string, self: boolean, state: MemberState }>
}

/** Manifest holders asked at once; more are asked only when these lack the manifest. */
const MANIFEST_FANOUT = 3
/** A stripe waiting this long for its last data fragment asks a parity fragment too. */
const HEDGE_MS = 250
/**
 * Manifests are immutable, so a node keeps the ones it just read for a moment: a mount reads a
 * file in many ranged requests, each of which would otherwise ask the manifest holders again.
 * A delete elsewhere is seen at most this late (its fragments are gone at once, so such a read
 * fails rather than returning anything).
 */
export const MANIFEST_CACHE_MS = 2000
const MANIFEST_CACHE_ENTRIES = 4096
const NAME_ATTEMPTS = 3
/**
 * Objects up to this size keep their data inline in the manifest instead of in fragments. The
 * manifest has m+1 copies, so such an object survives the m lost nodes its fragments would; it
 * costs (m+1)x its size instead of n/k x, nothing for 16 KiB files. What it saves: a 4 KiB
 * create wrote 6 fragments on 6 nodes and then 3 manifests, each write a store commit and (on
 * another node) a round trip; inline it writes the 3 manifests alone, in one round, and a read
 * asks the manifest holders only (one round instead of two). MinIO inlines small objects the
 * same way. Kept small so listing a node's catalog (which reads every manifest) stays cheap.
 */
export const INLINE_MAX = 16 * 1024
/** DDFS_SEQUENTIAL_NAMES=1 names every put's object after it is whole, creates too (for comparison in benchmarks). */
const NEW_NAME_BESIDE = process.env.DDFS_SEQUENTIAL_NAMES !== '1'
/** Starts the message of a put that stored its object but not its name; the object's id follows. */
export const STORED_BUT_UNNAMED = 'stored without its name: object'

export class ClusterObjectStore implements ObjectStore {
  private readonly names: Names
  private readonly manifests = new Map<string, { manifest: Manifest, at: number }>()
  private readonly idsBeside = new IdsBeside()

  constructor (private readonly view: ClusterView) {
    this.names = new Names((hash) => nameRank(hash, this.view.members()).map((m) => m.site), () => this.view.members().map((m) => m.site))
  }

  async put (source: AsyncIterable<Buffer>, opts: PutOptions): Promise<ObjectInfo> {
    const members = this.view.members()
    const schema = opts.schema ?? this.defaultSchema(members.length)
    checkSchema(schema, members.length, `the cluster has ${members.length} nodes (start more nodes)`, opts.allowDegraded)
    checkSize(opts.size)
    if (opts.name !== undefined) checkName(opts.name)  // before anything is stored under it
    const { k, m } = schema
    const inline = opts.size !== undefined && opts.size <= INLINE_MAX
    const name = NEW_NAME_BESIDE ? opts.name : undefined
    const id = inline && name !== undefined ? this.idsBeside.take(name, members, m + 1) : crypto.randomBytes(ID_BYTES)
    const manifestSites = manifestRank(id, members).slice(0, m + 1)
    const holders = inline ? [] : fragmentSpread(id, members, k + m)
    // A name nobody holds a record of (a create) is written beside the object: a listing shows a
    // name only once its object exists, and a put that fails leaves a record nothing lists. A
    // name that stands for an object is pointed at the new one only once it is whole (below):
    // written earlier, a failed put would hide that object's content from listings. A large
    // object's record goes out beside its data; a small one's with its manifest, in the same
    // request where a node holds both (CreatePut).
    let created = name !== undefined && !inline ? this.names.setNew(name, id).catch(() => false) : Promise.resolve(false)
    let manifest: Manifest
    try {
      const written = inline
        ? await inlineData(source, opts.size as number, opts.expectedHash, k)
        : await writeObject(source, { id, size: opts.size, k, m, expectedHash: opts.expectedHash, signal: opts.signal },
          (s, i, entry) => holders[i].site.putEntry(keyOf(id, EntryKind.Fragment, s, i), entry))
      manifest = inline ? newManifest(opts, schema, written) : { ...newManifest(opts, schema, written), holders: holders.map((h) => h.publicKey) }
      const body = encodeManifest(manifest)
      const together = new Map<EntrySite, Promise<Buffer | null>>()
      if (name !== undefined && inline) {
        const sites = new Set(manifestSites.map((h) => h.site))
        created = this.names.setNew(name, id, (site, nameKey, record) => {
          if (!sites.has(site) || site.putCreate === undefined) return undefined
          const both = site.putCreate(id, body, nameKey, record)
          together.set(site, both)
          return both
        }).catch(() => false)
      }
      await Promise.all(manifestSites.map(async (h) => await (together.get(h.site) ?? h.site.putEntry(keyOf(id, EntryKind.Manifest), body))))
    } catch (err) {
      // Tombstones, not just removal: a node that was unreachable now may still hold a manifest
      // copy of this half-written object, and healing applies a tombstone any holder has.
      const touched = new Set([...holders, ...manifestSites])
      await Promise.allSettled([...touched].map((h) => h.site.removeId(id, true)))
      await created
      throw DdfsError.from(err)
    }
    // A name that stood for an object, only once this one is whole, so a name record never
    // points at an object that was taken back (that hid the file's previous content from
    // listings). A holder that just died is left out of the placement once its first failure
    // marked it: try again. Should the name still fail, the object stays: whichever record a
    // listing sees names an object that exists (the caller may delete it: STORED_BUT_UNNAMED says which).
    const named = await created
    let replaced: Buffer | null = null
    for (let attempt = 1; opts.name !== undefined && !named; attempt++) {
      try {
        replaced = await this.names.set(opts.name, id)
        break
      } catch (err) {
        if (attempt < NAME_ATTEMPTS) { await new Promise((resolve) => setTimeout(resolve, 200 * attempt)); continue }
        const e = DdfsError.from(err)
        throw DdfsError.UNAVAILABLE(`${STORED_BUT_UNNAMED} ${id.toString('hex')}: ${e.message.slice(e.code.length + 2)}`)
      }
    }
    return { ...describeObject(id, manifest, []), ...(opts.name !== undefined ? { replaced: replaced?.toString('hex') ?? null } : {}) }
  }

  /**
   * The default schema: parity follows the cluster's size, data fragments what is reachable now.
   * A node that sees few members (nodes down, or itself cut off by a partition) used to take
   * the widest schema for those alone, down to 1+0, and acknowledged objects with less
   * protection than the cluster's (the fault schedule lost 2+1 objects to two damaged
   * fragments). Now such a put keeps m parity with fewer data fragments, or fails.
   */
  private defaultSchema (reachable: number): { k: number, m: number } {
    const known = Math.max(reachable, this.view.knownMembers?.() ?? reachable)
    const full = defaultSchema(known)
    const k = Math.min(full.k, reachable - full.m)
    if (k < 1) throw DdfsError.UNAVAILABLE(`only ${reachable} of the cluster's ${known} nodes are reachable; a put needs ${full.m + 1} (a data fragment and ${full.m} parity on different nodes)`)
    return { k, m: full.m }
  }

  async * get (id: Buffer, opts: GetOptions = {}): AsyncIterable<Buffer> {
    const manifest = await this.load(id)
    const sites = this.fragmentSites(manifest)
    // A holder that served a damaged fragment is told to check and rebuild its copy (once per read).
    const told = new Set<EntrySite>()
    const onCorrupt = (_stripe: number, i: number): void => {
      const site = sites[i]
      if (site === null || told.has(site)) return
      told.add(site)
      site.scrub(id).catch(() => {})  // best effort: the scrubber finds it later anyway
    }
    const fetchFrom = async (site: EntrySite | null, s: number, i: number): Promise<FetchedFragment> => {
      // undefined: a manifest without that holder (one written by a node outside the cluster).
      if (site === null || site === undefined) throw DdfsError.UNAVAILABLE(`the node holding fragment ${i} is not in the cluster`)
      const { entry, verified } = await site.getEntry(keyOf(id, EntryKind.Fragment, s, i))
      return { entry, verified, where: site.label }
    }
    // Healing may have moved a fragment since this manifest was read (or cached): on a miss, the
    // newest manifest is read once and the fragment asked of its holder now. Every holder's copy
    // is checked against the same stripe hashes, so mixing the two is safe.
    let fresh: Promise<Array<EntrySite | null>> | null = null
    yield * readObject(id, manifest, { ...opts, hedgeMs: HEDGE_MS, onCorrupt }, async (s, i) => {
      try {
        return await fetchFrom(sites[i], s, i)
      } catch (err) {
        fresh ??= this.currentManifest(id).then((m) => this.fragmentSites(m), () => sites)
        const now = (await fresh)[i]
        if (now === sites[i]) throw err
        return await fetchFrom(now, s, i)
      }
    })
  }

  async head (id: Buffer): Promise<ObjectHead> {
    const m = await this.load(id)
    return { size: m.size, hash: m.hash }
  }

  async query (id: Buffer): Promise<ObjectInfo> {
    const manifest = await this.currentManifest(id)
    const sites = new Set(this.fragmentSites(manifest).filter((s): s is EntrySite => s !== null))
    const lists = await Promise.allSettled([...sites].map((s) => s.listFragments(id)))
    const fragments = lists.flatMap((r) => r.status === 'fulfilled' ? r.value : [])
    const members = this.view.members()
    const copies = await Promise.allSettled(members.map((mb) => mb.site.entryStates(EntryKind.Manifest, [id])))
    const manifestHolders = members.filter((_, i) => { const c = copies[i]; return c.status === 'fulfilled' && c.value[0] >= ENTRY_VERSION_BASE }).map((mb) => mb.site.label)
    return { ...describeObject(id, manifest, fragments), manifestHolders }
  }

  /**
   * A delete is acknowledged once every one of the first m+1 manifest holders in this node's
   * view has recorded its tombstone: whatever the membership is later, a node with a stale copy
   * of the manifest (one that was away) finds a tombstone among the holders it asks, as long
   * as one of them was in this view. (Acknowledging on any one tombstone let an object come
   * back: the nodes with tombstones ranked below the ones that kept stale copies.) Fragments
   * are removed only then; nodes that are down now learn of the delete when they return.
   *
   * That holds while this view misses at most m of the cluster's members: the first m+1 holders
   * of any later view then include at least one of this view's, and the first of those has a
   * tombstone. A node that sees fewer (itself cut off) could put every tombstone on nodes that
   * hold no copy once the others are back, and a read would find the object whole (the fault
   * schedule read one back after its acknowledged delete), so it refuses and deletes nothing.
   */
  async delete (id: Buffer): Promise<void> {
    const manifest = await this.load(id)
    const members = this.view.members()
    const known = Math.max(members.length, this.view.knownMembers?.() ?? members.length)
    if (known - members.length > manifest.m) {
      throw DdfsError.UNAVAILABLE(`only ${members.length} of the cluster's ${known} nodes are reachable from this node, and a delete needs all but ${manifest.m}; nothing was deleted; try again when the nodes are back, or through another node`)
    }
    const manifestSites = manifestRank(id, members).slice(0, manifest.m + 1).map((h) => h.site)
    this.manifests.delete(id.toString('hex'))
    const results = await Promise.allSettled(manifestSites.map((s) => s.removeId(id, true)))
    const failures = results.flatMap((r, i) => r.status === 'rejected' ? [`${manifestSites[i].label}: ${DdfsError.from(r.reason).message}`] : [])
    if (failures.length > 0) {
      const recorded = results.length - failures.length
      const what = `the delete of ${id.toString('hex')} was recorded on ${recorded} of ${results.length} manifest holders (${failures.join('; ')})`
      throw DdfsError.UNAVAILABLE(recorded > 0
        ? `${what}; healing will likely complete it from those (ddfs query -i ID answers NOT_FOUND once it is gone)`
        : `${what}; nothing was deleted; try again when the nodes are back`)
    }
    const fragmentSites = this.fragmentSites(manifest).filter((s): s is EntrySite => s !== null && !manifestSites.includes(s))
    await Promise.allSettled(fragmentSites.map((s) => s.removeId(id, true)))
  }

  async list (after: Buffer | null, limit: number): Promise<Buffer[]> {
    const members = this.view.members()
    const lists = await Promise.allSettled(members.map((m) => m.site.listManifests(after, limit)))
    if (lists.every((r) => r.status === 'rejected')) throw DdfsError.UNAVAILABLE('no node answered the listing')
    const found = new Map<string, Buffer>()
    for (const r of lists) if (r.status === 'fulfilled') for (const id of r.value) found.set(id.toString('hex'), id)
    return [...found.values()].sort(Buffer.compare).slice(0, limit)
  }

  async setName (name: string, id: Buffer): Promise<void> { await this.names.set(name, id) }
  resolveName (name: string): Promise<Buffer | null> { return this.names.resolve(name) }
  removeName (name: string): Promise<void> { return this.names.remove(name) }
  catalog (): Promise<CatalogEntry[]> { return this.names.catalog() }

  /** The site of each fragment index's holder, as the manifest recorded it; null when gone. */
  fragmentSites (manifest: Manifest): Array<EntrySite | null> {
    return (manifest.holders ?? []).map((key) => this.view.siteOf(key))
  }

  /** The newest manifest the holders have now (no cache): what healing and scrub work from. */
  async currentManifest (id: Buffer): Promise<Manifest> {
    checkId(id)
    const manifest = await this.lookup(id)
    this.manifests.set(id.toString('hex'), { manifest, at: Date.now() })
    return manifest
  }

  /**
   * The manifest, from the manifest holders in rank order: the first few at once, the rest
   * only when those lack it (the membership changed since the put). A tombstone anywhere wins;
   * among copies the highest version (healing bumps it when fragments move) wins.
   */
  private async load (id: Buffer): Promise<Manifest> {
    checkId(id)
    const hex = id.toString('hex')
    const cached = this.manifests.get(hex)
    if (cached !== undefined && Date.now() - cached.at < MANIFEST_CACHE_MS) return cached.manifest
    const manifest = await this.lookup(id)
    if (this.manifests.size >= MANIFEST_CACHE_ENTRIES) this.manifests.clear()
    this.manifests.set(hex, { manifest, at: Date.now() })
    return manifest
  }

  private async lookup (id: Buffer): Promise<Manifest> {
    const ranked = manifestRank(id, this.view.members())
    const problems: string[] = []
    let unreachable = 0
    for (let at = 0; at < ranked.length;) {
      const batch = ranked.slice(at, at + (at === 0 ? MANIFEST_FANOUT : 2 * MANIFEST_FANOUT))
      at += batch.length
      const answers = await Promise.allSettled(batch.map((h) => h.site.getManifest(id)))
      let manifest: Manifest | null = null
      for (let i = 0; i < answers.length; i++) {
        const a = answers[i]
        if (a.status === 'rejected') { unreachable++; problems.push(DdfsError.from(a.reason).message); continue }
        if (a.value === 'deleted') throw DdfsError.NOT_FOUND(`no object ${id.toString('hex')} (deleted)`)
        if (a.value === null) continue
        shared(a.value)  // its decoded manifest (an inline object's bytes) lives on in the cache and in readers' windows
        try {
          const copy = decodeManifest(a.value)
          if (manifest === null || copy.version > manifest.version) manifest = copy
        } catch (err) {
          problems.push(`${batch[i].site.label}: ${DdfsError.from(err).message}`)  // a damaged copy: others may be intact
        }
      }
      if (manifest !== null) return manifest
    }
    if (problems.length > 0) {
      throw DdfsError.UNAVAILABLE(`no intact manifest of ${id.toString('hex')} found (${unreachable} of ${ranked.length} nodes unreachable): ${problems.join('; ')}`)
    }
    throw DdfsError.NOT_FOUND(`no object ${id.toString('hex')} (unknown or deleted)`)
  }
}

/** An inline object's data, checked as writeObject checks a striped one's (size and XXH64). */
async function inlineData (source: AsyncIterable<Buffer>, size: number, expectedHash: bigint | Promise<bigint> | undefined, k: number): Promise<WrittenObject & { inline: Buffer }> {
  // One buffer of the announced size; the source may reuse its chunk buffers, so they are copied.
  const data = Buffer.allocUnsafe(size)
  let received = 0
  for await (const chunk of source) {
    if (received + chunk.length > size) throw DdfsError.BAD_ARGUMENT(`the source has more than the ${size} bytes announced`)
    chunk.copy(data, received)
    received += chunk.length
  }
  if (received !== size) throw DdfsError.BAD_ARGUMENT(`the source ended after ${received} of ${size} bytes`)
  const hash = xxh64(data)
  const expected = await expectedHash
  if (expected !== undefined && expected !== hash) throw DdfsError.CORRUPT('the object arrived with a different XXH64 than the client sent; nothing was stored')
  return { size, stripeSize: k * FRAGMENT_DATA, hash, stripeHashes: [], inline: data }
}
