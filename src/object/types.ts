// The object layer's public surface, as the node (and later the cluster) uses it.
// Implementations: LocalObjectStore (src/object/local-object-store.ts) over the node's own
// devices; the cluster's object store over remote nodes later. Objects are (n,k) erasure coded:
// n = k + m fragments per stripe, any k restore it.
import type { BlockStore, EntryKey } from '../store/types'
import type { NameRecord } from './records'

export interface Schema {
  k: number   // data fragments per stripe
  m: number   // parity fragments per stripe
}

export interface PutOptions {
  /**
   * Exact byte count the source will yield (a mismatch fails the put and leaves nothing);
   * undefined: as many as it yields (a file still being written).
   */
  size?: number
  /** Optional name (shown in the mount); the id is always the object's address. */
  name?: string
  /** Schema; the default is chosen from the failure domains available. */
  schema?: Schema
  /** Place an explicit schema even when there are fewer failure domains than fragments. */
  allowDegraded?: boolean
  /**
   * XXH64 of the whole content as the client computed it; a mismatch fails the put. A promise
   * when it arrives after the data (the client sends it at the end of the stream).
   */
  expectedHash?: bigint | Promise<bigint>
  signal?: AbortSignal
}

export interface GetOptions {
  offset?: number
  length?: number
  signal?: AbortSignal
}

/** Where one fragment of one stripe lives. */
export interface FragmentLocation {
  node?: string     // host:port of the node (cluster objects)
  stripe: number
  index: number
  device: string    // device path
  sbId: string      // 32 hex chars: the device's superblock id
  block: number
  blocks: number
  length: number
  hash: bigint
}

export interface ObjectInfo {
  id: string        // 32 hex chars
  size: number
  schema: Schema
  stripeSize: number
  hash: bigint      // XXH64 of the whole object
  name: string | null
  version: number
  createdAt: number // ms since epoch
  fragments: FragmentLocation[]
  /** The data is held in the manifest (a small object: no fragments). */
  inline?: boolean
  /** Cluster objects: the nodes (host:port) holding a copy of the manifest. */
  manifestHolders?: string[]
  /** A named put: the object (32 hex) the name pointed at before, as its holders answered, or null. */
  replaced?: string | null
}

export interface ObjectHead {
  size: number
  hash: bigint
}

export interface ObjectStore {
  /**
   * Streams `source` in as a new object; resolves once the object is durable. A chunk is used
   * before the next one is asked for, so a source may reuse one buffer for every chunk.
   */
  put (source: AsyncIterable<Buffer>, opts: PutOptions): Promise<ObjectInfo>
  /** Yields the object's bytes in order, each piece verified; throws CORRUPT or UNAVAILABLE. */
  get (id: Buffer, opts?: GetOptions): AsyncIterable<Buffer>
  /** Size and whole-object XXH64 (from the manifest alone); NOT_FOUND for an unknown or deleted id. */
  head (id: Buffer): Promise<ObjectHead>
  /** Manifest and fragment locations; NOT_FOUND for an unknown or deleted id. */
  query (id: Buffer): Promise<ObjectInfo>
  /** Deletes the object everywhere it has fragments; NOT_FOUND when unknown. */
  delete (id: Buffer): Promise<void>
  /** Ids of live objects, in order, after `after`. */
  list (after: Buffer | null, limit: number): Promise<Buffer[]>
  /** Points `name` at object `id` (the newest record of a name wins). */
  setName (name: string, id: Buffer): Promise<void>
  /** The id `name` points at, or null. */
  resolveName (name: string): Promise<Buffer | null>
  /** Removes the name (not the object). */
  removeName (name: string): Promise<void>
  /** Every live object with its size and the name that points at it, if any: what a mount lists. */
  catalog (): Promise<CatalogEntry[]>
}

export interface CatalogObject { id: Buffer, size: number, createdAt: number }

/** What one node holds of the catalog: the manifests and name records on its devices. */
export interface SiteCatalog { objects: CatalogObject[], names: NameRecord[] }

export interface CatalogEntry extends CatalogObject { name: string | null }

/** The node's attached devices as the object layer sees them: each device a failure domain. */
export interface DevicePool {
  stores (): BlockStore[]
}

export interface EntryOptions {
  /** Healing traffic: the node serving it lets client traffic go first. */
  background?: boolean
}

/**
 * One node's store entries as the cluster object store sees them: this node's own devices
 * (src/node/local-site.ts) or another node's, over the cluster transport (src/cluster/remote-site.ts).
 */
export interface EntrySite {
  /** host:port, for messages. */
  readonly label: string
  /** Stores an entry durably (on one of the node's devices); replaces an older one. */
  putEntry (key: EntryKey, data: Buffer, opts?: EntryOptions): Promise<void>
  /** The entry, checked against its XXH64; NOT_FOUND when the node has none. */
  getEntry (key: EntryKey, opts?: EntryOptions): Promise<{ entry: Buffer, verified: boolean }>
  /**
   * Stores a name record (kind EntryKind.Name, keyed by the name's hash) durably and answers with
   * the record it replaced on this node, or null.
   */
  putName (key: EntryKey, record: Buffer): Promise<Buffer | null>
  /**
   * Stores a name record only when the node holds no record of that name, or one of a removed
   * name: null when stored; else what it holds (empty when that is unreadable) and nothing was
   * written.
   */
  putNewName (key: EntryKey, record: Buffer): Promise<Buffer | null>
  /**
   * A create's two writes on one node in one request: the manifest of `id` (as putEntry) and the
   * new name record (as putNewName, whose answer it gives). Fails when the manifest was not stored.
   */
  putCreate? (id: Buffer, manifest: Buffer, nameKey: EntryKey, record: Buffer): Promise<Buffer | null>
  /** The id's manifest bytes, 'deleted' when the node holds its tombstone, null when neither. */
  getManifest (id: Buffer): Promise<Buffer | 'deleted' | null>
  /** The id's fragments on this node and where they are. */
  listFragments (id: Buffer): Promise<FragmentLocation[]>
  /** Removes every entry of the id; `tombstone` leaves the mark that it was deleted. */
  removeId (id: Buffer, tombstone: boolean): Promise<void>
  /** Ids whose manifest the node holds, in order, after `after`. */
  listManifests (after: Buffer | null, limit: number): Promise<Buffer[]>
  /** The manifests (summarized) and name records the node holds. */
  listCatalog (): Promise<SiteCatalog>
  /** Bytes of the node's devices and how many are free. */
  capacity (): Promise<{ size: number, free: number }>
  /**
   * Healing: per id, ENTRY_ABSENT, ENTRY_DELETED or ENTRY_VERSION_BASE + the version of its
   * `kind` record (manifest by object id, name record by name hash). See src/wire/messages.ts.
   */
  entryStates (kind: number, ids: Buffer[]): Promise<number[]>
  /** Healing: per id, the fragments held as pairs [index, count, index, count, ...]. */
  fragmentCounts (ids: Buffer[]): Promise<number[][]>
  /** Healing: removes one slot of the id: the fragments of `index` (every stripe), or its `kind` record. */
  removeSlot (id: Buffer, kind: number, index: number): Promise<void>
  /** Verifies every entry of the id on the node now and rebuilds the bad ones (a reader met one). */
  scrub (id: Buffer): Promise<void>
  /**
   * Healing, another node only: rebuilds fragments `indices` of stripes first..first+count-1 of
   * the object `manifest` (its encoded bytes) describes onto that node, from k others; resolves
   * with the bytes written. The local site has none: its own node rebuilds in place.
   */
  rebuild? (manifest: Buffer, id: Buffer, indices: number[], first: number, count: number, urgent: boolean): Promise<number>
}
