// Every message of the client protocol, in one place. A frame on the wire is
//
//   u32 LE  body length (type .. payload; at most MAX_FRAME)
//   u8      type, with SELF_CHECKED as its high bit
//   u32 LE  request id
//   u32 LE  meta length
//   meta    compact-encoding record of the type (below)
//   payload raw bytes (DATA frames)
//   u64 LE  XXH64 of everything before it (length field included), or with SELF_CHECKED of
//           everything before the payload
//
// so the header, the meta and the payload are all covered by one XXH64 per frame, except a
// fragment's bytes sent to a peer, which carry their own (see SELF_CHECKED).
import c from 'compact-encoding'
import { DdfsError } from '../errors'
import { hash64 } from '../encoding'
import { MAX_FRAGMENTS } from '../erasure/reed-solomon'
import type { NameRecord } from '../object/records'
import type { CatalogEntry, CatalogObject, SiteCatalog } from '../object/types'

export const MAX_FRAME = 8 * 1024 * 1024
export const FRAME_PREFIX = 13  // length + type + request id + meta length
export const FRAME_HASH = 8
/**
 * Type-byte flag of a DATA frame whose payload is a fragment entry: its data is covered by the
 * XXH64 in its trailer (itself hashed, and named by the manifest's stripe hashes), which every
 * reader of a fragment checks before using it. The frame's XXH64 then covers head and meta
 * only: a fragment a repair reads crossed three XXH64 passes (the store's check, the sender's
 * and the receiver's frame hash) where one suffices. Only replies to requests that asked for
 * fragments may carry it (RpcConnection refuses it elsewhere).
 */
export const SELF_CHECKED = 0x80

export const enum MessageType {
  Error = 0,
  Ok = 1,
  Put = 2,
  Data = 3,
  PutEnd = 4,
  Get = 5,
  GetHead = 6,
  GetEnd = 7,
  Query = 8,
  Delete = 9,
  DevAdd = 10,
  DevRem = 11,
  DevQuery = 12,
  NodeStop = 13,
  Status = 14,
  List = 15,
  PutLocal = 16,   // local socket only: the node reads the file itself
  GetLocal = 17,   // local socket only: the node writes the file itself
  // Between nodes (any holder of the cluster secret): one store entry at a time, many requests
  // in flight on one connection, answered in any order.
  EntryPut = 18,   // entryKeyMessage + the entry's bytes -> Ack
  EntryGet = 19,   // entryKeyMessage -> Data (entryReplyMessage + the entry's bytes)
  EntryList = 20,  // idMessage -> Ok (JSON: the id's entries on this node, for query)
  EntryRemove = 21, // entryRemoveMessage -> Ack
  ManifestList = 22, // listMessage -> Ok (JSON: ids whose manifest this node holds)
  Ack = 23,
  CatalogList = 24, // emptyMessage -> Data (siteCatalogMessage): this node's manifests and names
  // Names and the listing, for clients (the mount):
  Catalog = 25,     // emptyMessage -> Data (catalogMessage): every live object, named or not
  NameResolve = 26, // nameMessage -> Data (optionalIdMessage)
  NameSet = 27,     // nameSetMessage -> Ack
  NameRemove = 28,  // nameMessage -> Ack
  Read = 29,        // getMessage (length at most MAX_READ) -> Data (the bytes)
  Capacity = 30,    // capacityRequest -> Data (capacityMessage): this node's, or the cluster's
  PutGrow = 31,     // putGrowMessage, within a following PutLocal: bytes of the file ready so far
  // Healing, between nodes: many ids per request, so a scan costs one request per peer.
  EntryStates = 32, // entryStatesRequest -> Data (entryStatesMessage): version of each id's manifest or name record
  FragmentCounts = 33, // idsMessage -> Data (fragmentCountsMessage): fragments held per index, per id
  Scrub = 34,       // idMessage -> Ack: verify every entry of the id on this node now, repairing bad ones
  Health = 35,      // emptyMessage -> Ok (JSON: this node's durability report and scrub progress)
  NodeDrain = 36,   // drainMessage -> Ok (JSON: what the node still holds); local socket only
  Rebuild = 37,     // rebuildMessage + the object's manifest -> Data (rebuiltMessage): rebuild fragments onto this node
  // A whole small object in one request (the mount's commit of a small file): many in flight on
  // one connection, no stream, no file for the node to read.
  PutSmall = 38,    // putSmallMessage + the object's bytes -> Data (putSmallReply)
  // Between nodes: a name record put that answers with the record it replaced, so a named put
  // learns what the name stood for in the same round that changes it.
  NamePut = 39,     // entryKeyMessage + the name record -> Data (the previous record's bytes, or none)
  // The node mounts the store itself (no mount process, no socket between mount and node).
  NodeMount = 40,   // mountMessage -> Ok (JSON: mountpoint, pid); local socket only
  // Between nodes: a name record put that takes effect only where the name has no live record
  // (a create), so it can go out beside its object's write.
  NamePutNew = 41,  // entryKeyMessage + the name record -> Ack (stored), or Data (the record held; nothing written)
  // Between nodes: a create's manifest and its new name record in one request, where one node
  // holds both (a small cluster places a create's manifest copies on its name's holders).
  CreatePut = 42    // createPutMessage + the manifest, then the name record -> Ack (both stored), or Data (the manifest stored; the name's record held, no record written)
}

const MAX_TYPE = MessageType.CreatePut

const TYPE_NAMES = ['error', 'ok', 'put', 'data', 'put_end', 'get', 'get_head', 'get_end', 'query', 'delete', 'dev_add', 'dev_rem',
  'dev_query', 'node_stop', 'status', 'list', 'put_local', 'get_local', 'entry_put', 'entry_get', 'entry_list', 'entry_remove',
  'manifest_list', 'ack', 'catalog_list', 'catalog', 'name_resolve', 'name_set', 'name_remove', 'read', 'capacity', 'put_grow',
  'entry_states', 'fragment_counts', 'scrub', 'health', 'node_drain', 'rebuild', 'put_small', 'name_put', 'node_mount', 'name_put_new', 'create_put']

/** A message type's name, for logs and metrics. */
export function messageTypeName (t: number): string {
  return TYPE_NAMES[t] ?? `type_${t}`
}

/** Largest ranged read answered in one DATA frame. */
export const MAX_READ = 4 * 1024 * 1024

/**
 * Whether this version knows a message type. A frame of a type it does not know is still
 * delivered (its framing and XXH64 are checked like any other): a newer node's request is
 * answered UNSUPPORTED, so the sender can fall back, and the connection (with the other
 * requests in flight on it) stays up through a rolling upgrade.
 */
export function knownType (t: number): t is MessageType {
  return t <= MAX_TYPE
}

const id16 = c.fixed(16)

export interface ErrorMessage { code: string, message: string }
export const errorMessage: c.Encoder<ErrorMessage> = {
  preencode (s, m) { c.string.preencode(s, m.code); c.string.preencode(s, m.message) },
  encode (s, m) { c.string.encode(s, m.code); c.string.encode(s, m.message) },
  decode (s) { return { code: c.string.decode(s), message: c.string.decode(s) } }
}

/** OK carries a JSON document: only for small control replies (query, status), never data. */
export const okMessage: c.Encoder<unknown> = c.json

/**
 * `follow` (PutLocal only): the file is still being written; `size` is ignored and the client
 * announces how far the node may read with PutGrow frames, the last one final.
 */
export interface PutMessage { size: number, name: string | null, k: number, m: number, allowDegraded: boolean, follow?: boolean }
export const putMessage: c.Encoder<PutMessage> = {
  preencode (s, m) {
    c.uint.preencode(s, 0); c.uint.preencode(s, m.size); c.uint.preencode(s, m.k); c.uint.preencode(s, m.m)
    if (m.name !== null) c.string.preencode(s, m.name)
  },
  encode (s, m) {
    c.uint.encode(s, (m.name !== null ? 1 : 0) | (m.allowDegraded ? 2 : 0) | (m.follow === true ? 4 : 0))
    c.uint.encode(s, m.size); c.uint.encode(s, m.k); c.uint.encode(s, m.m)
    if (m.name !== null) c.string.encode(s, m.name)
  },
  decode (s) {
    const flags = c.uint.decode(s)
    const size = c.uint.decode(s)
    const k = c.uint.decode(s)
    const m = c.uint.decode(s)
    const name = (flags & 1) !== 0 ? c.string.decode(s) : null
    return { size, k, m, name, allowDegraded: (flags & 2) !== 0, follow: (flags & 4) !== 0 }
  }
}

/** Largest object a PutSmall carries (its bytes are one frame, held in memory on both sides). */
export const MAX_PUT_SMALL = 1024 * 1024

/** PutSmall: the put (size = the payload's length) and the client's XXH64 of the payload. */
export interface PutSmallMessage { put: PutMessage, hash: bigint }
export const putSmallMessage: c.Encoder<PutSmallMessage> = {
  preencode (s, m) { putMessage.preencode(s, m.put); hash64.preencode(s, m.hash) },
  encode (s, m) { putMessage.encode(s, m.put); hash64.encode(s, m.hash) },
  decode (s) { return { put: putMessage.decode(s), hash: hash64.decode(s) } }
}

/**
 * PutSmall's answer: the new object's id and creation time, and for a named put the object the
 * name pointed at before (asked of the name's holders beside the put: the caller deletes it).
 */
export interface PutSmallReply { id: Buffer, createdAt: number, replaced: Buffer | null }
export const putSmallReply: c.Encoder<PutSmallReply> = {
  preencode (s, m) { id16.preencode(s, m.id); c.uint.preencode(s, m.createdAt); optionalIdMessage.preencode(s, { id: m.replaced }) },
  encode (s, m) { id16.encode(s, m.id); c.uint.encode(s, m.createdAt); optionalIdMessage.encode(s, { id: m.replaced }) },
  decode (s) { return { id: Buffer.from(id16.decode(s) as Uint8Array), createdAt: c.uint.decode(s), replaced: optionalIdMessage.decode(s).id } }
}

export interface PutEndMessage { hash: bigint }
export const putEndMessage: c.Encoder<PutEndMessage> = {
  preencode (s) { hash64.preencode(s, 0n) },
  encode (s, m) { hash64.encode(s, m.hash) },
  decode (s) { return { hash: hash64.decode(s) } }
}

export interface IdMessage { id: Buffer }
export const idMessage: c.Encoder<IdMessage> = {
  preencode (s) { id16.preencode(s, Buffer.alloc(16)) },
  encode (s, m) { id16.encode(s, m.id) },
  decode (s) { return { id: Buffer.from(id16.decode(s) as Uint8Array) } }
}

export interface GetMessage { id: Buffer, offset: number, length: number }  // length 0xffffffffffff: to the end
export const getMessage: c.Encoder<GetMessage> = {
  preencode (s, m) { id16.preencode(s, m.id); c.uint.preencode(s, m.offset); c.uint.preencode(s, m.length) },
  encode (s, m) { id16.encode(s, m.id); c.uint.encode(s, m.offset); c.uint.encode(s, m.length) },
  decode (s) { return { id: Buffer.from(id16.decode(s) as Uint8Array), offset: c.uint.decode(s), length: c.uint.decode(s) } }
}

export interface GetHeadMessage { size: number, hash: bigint }
export const getHeadMessage: c.Encoder<GetHeadMessage> = {
  preencode (s, m) { c.uint.preencode(s, m.size); hash64.preencode(s, m.hash) },
  encode (s, m) { c.uint.encode(s, m.size); hash64.encode(s, m.hash) },
  decode (s) { return { size: c.uint.decode(s), hash: hash64.decode(s) } }
}

/**
 * The local fast path: on the node's own machine the client names a file and the node reads or
 * writes it directly, so the bytes never cross a socket. Only on the Unix socket (mode 0600 in a
 * 0700 directory: the client already runs as the node's user and could read the file itself).
 */
export interface PutLocalMessage { path: string, put: PutMessage }
export const putLocalMessage: c.Encoder<PutLocalMessage> = {
  preencode (s, m) { c.string.preencode(s, m.path); putMessage.preencode(s, m.put) },
  encode (s, m) { c.string.encode(s, m.path); putMessage.encode(s, m.put) },
  decode (s) { return { path: c.string.decode(s), put: putMessage.decode(s) } }
}

export interface GetLocalMessage { id: Buffer, path: string }
export const getLocalMessage: c.Encoder<GetLocalMessage> = {
  preencode (s, m) { id16.preencode(s, m.id); c.string.preencode(s, m.path) },
  encode (s, m) { id16.encode(s, m.id); c.string.encode(s, m.path) },
  decode (s) { return { id: Buffer.from(id16.decode(s) as Uint8Array), path: c.string.decode(s) } }
}

/** A CreatePut's keys: the manifest's (of `id`) and the name record's (of `nameHash`); the payload's first `manifestBytes` are the manifest. */
export interface CreatePutMessage { id: Buffer, nameHash: Buffer, manifestBytes: number }
export const createPutMessage: c.Encoder<CreatePutMessage> = {
  preencode (s, m) { id16.preencode(s, m.id); id16.preencode(s, m.nameHash); c.uint.preencode(s, m.manifestBytes) },
  encode (s, m) { id16.encode(s, m.id); id16.encode(s, m.nameHash); c.uint.encode(s, m.manifestBytes) },
  decode (s) {
    return { id: Buffer.from(id16.decode(s) as Uint8Array), nameHash: Buffer.from(id16.decode(s) as Uint8Array), manifestBytes: c.uint.decode(s) }
  }
}

/**
 * Where a store entry belongs (see src/store/types.ts EntryKey). `background`: healing traffic,
 * which a node lets client traffic go first (a request without it counts as client traffic).
 */
export interface EntryKeyMessage { id: Buffer, kind: number, stripe: number, index: number, background?: boolean }
export const entryKeyMessage: c.Encoder<EntryKeyMessage> = {
  preencode (s, m) {
    id16.preencode(s, m.id); c.uint.preencode(s, m.kind); c.uint.preencode(s, m.stripe); c.uint.preencode(s, m.index)
    if (m.background === true) c.uint.preencode(s, 1)
  },
  encode (s, m) {
    id16.encode(s, m.id); c.uint.encode(s, m.kind); c.uint.encode(s, m.stripe); c.uint.encode(s, m.index)
    if (m.background === true) c.uint.encode(s, 1)
  },
  decode (s) {
    const id = Buffer.from(id16.decode(s) as Uint8Array)
    const kind = c.uint.decode(s)
    const stripe = c.uint.decode(s)
    const index = c.uint.decode(s)
    if (kind > 0xffff || stripe > 0xffffffff || index > 0xffff) throw DdfsError.PROTOCOL('entry key out of range')
    const background = s.start < s.end ? (c.uint.decode(s) & 1) !== 0 : false
    return { id, kind, stripe, index, background }
  }
}

/** The answer to EntryGet: `tombstone` when the id was deleted (the payload is then empty). */
export interface EntryReplyMessage { tombstone: boolean }
export const entryReplyMessage: c.Encoder<EntryReplyMessage> = {
  preencode (s) { c.uint.preencode(s, 0) },
  encode (s, m) { c.uint.encode(s, m.tombstone ? 1 : 0) },
  decode (s) { return { tombstone: (c.uint.decode(s) & 1) !== 0 } }
}

/**
 * Removes entries of an id on the node: all of them (`tombstone` leaves a mark that it was
 * deleted), or with `slot` only one slot: the fragments of one index (every stripe), or the
 * manifest or name record (kind alone), as healing moves them elsewhere.
 */
export interface EntryRemoveMessage { id: Buffer, tombstone: boolean, slot?: { kind: number, index: number } }
export const entryRemoveMessage: c.Encoder<EntryRemoveMessage> = {
  preencode (s, m) {
    c.uint.preencode(s, 0); id16.preencode(s, m.id)
    if (m.slot !== undefined) { c.uint.preencode(s, m.slot.kind); c.uint.preencode(s, m.slot.index) }
  },
  encode (s, m) {
    c.uint.encode(s, (m.tombstone ? 1 : 0) | (m.slot !== undefined ? 2 : 0)); id16.encode(s, m.id)
    if (m.slot !== undefined) { c.uint.encode(s, m.slot.kind); c.uint.encode(s, m.slot.index) }
  },
  decode (s) {
    const flags = c.uint.decode(s)
    const out: EntryRemoveMessage = { tombstone: (flags & 1) !== 0, id: Buffer.from(id16.decode(s) as Uint8Array) }
    if ((flags & 2) !== 0) {
      const kind = c.uint.decode(s)
      const index = c.uint.decode(s)
      if (kind > 0xffff || index > 0xffff || out.tombstone) throw DdfsError.PROTOCOL('entry slot out of range')
      out.slot = { kind, index }
    }
    return out
  }
}

/** Ids in one healing request: at most this many, so a request stays small. */
export const MAX_IDS = 4096

export const idsMessage: c.Encoder<Buffer[]> = {
  preencode (s, ids) { c.uint.preencode(s, ids.length); s.end += 16 * ids.length },
  encode (s, ids) { c.uint.encode(s, ids.length); for (const id of ids) id16.encode(s, id) },
  decode (s) {
    const count = c.uint.decode(s)
    if (count > MAX_IDS || count * 16 > s.end - s.start) throw DdfsError.PROTOCOL('id list too long')
    const out: Buffer[] = new Array(count)
    for (let i = 0; i < count; i++) out[i] = Buffer.from(id16.decode(s) as Uint8Array)
    return out
  }
}

/** Which record of each id (an object id, or a name hash for name records) is asked about. */
export interface EntryStatesRequest { kind: number, ids: Buffer[] }
export const entryStatesRequest: c.Encoder<EntryStatesRequest> = {
  preencode (s, m) { c.uint.preencode(s, m.kind); idsMessage.preencode(s, m.ids) },
  encode (s, m) { c.uint.encode(s, m.kind); idsMessage.encode(s, m.ids) },
  decode (s) { return { kind: c.uint.decode(s), ids: idsMessage.decode(s) } }
}

/** Per id: ENTRY_ABSENT, ENTRY_DELETED, or ENTRY_VERSION_BASE + the record's version. */
export const entryStatesMessage: c.Encoder<number[]> = c.array(c.uint)
export const ENTRY_ABSENT = 0
export const ENTRY_DELETED = 1
export const ENTRY_VERSION_BASE = 2

/** Per id: pairs of (fragment index, fragments of that index held), flattened. */
export const fragmentCountsMessage: c.Encoder<number[][]> = c.array(c.array(c.uint))

/**
 * Healing: the leader of an object asks the new holder of fragment slots to rebuild them itself
 * from k others (it reads k, not k + 1 transfers with the write). Stripes first..first+count-1,
 * so one request stays short; urgent: the object is one loss from unreadable (no throttling).
 */
export interface RebuildMessage { id: Buffer, indices: number[], first: number, count: number, urgent: boolean }
export const MAX_REBUILD_STRIPES = 64
const uintList = c.array(c.uint)
export const rebuildMessage: c.Encoder<RebuildMessage> = {
  preencode (s, m) { id16.preencode(s, m.id); uintList.preencode(s, m.indices); c.uint.preencode(s, m.first); c.uint.preencode(s, m.count); c.uint.preencode(s, 0) },
  encode (s, m) { id16.encode(s, m.id); uintList.encode(s, m.indices); c.uint.encode(s, m.first); c.uint.encode(s, m.count); c.uint.encode(s, m.urgent ? 1 : 0) },
  decode (s) {
    const id = Buffer.from(id16.decode(s) as Uint8Array)
    const count = c.uint.decode(s)
    if (count > MAX_FRAGMENTS) throw DdfsError.PROTOCOL('too many fragment indices')
    const indices: number[] = []
    for (let i = 0; i < count; i++) indices.push(c.uint.decode(s))
    return { id, indices, first: c.uint.decode(s), count: c.uint.decode(s), urgent: (c.uint.decode(s) & 1) !== 0 }
  }
}
/** Fragment bytes the node wrote. */
export const rebuiltMessage: c.Encoder<number> = c.uint

export interface DrainMessage { drain: boolean }
export const drainMessage: c.Encoder<DrainMessage> = {
  preencode (s) { c.uint.preencode(s, 0) },
  encode (s, m) { c.uint.encode(s, m.drain ? 1 : 0) },
  decode (s) { return { drain: (c.uint.decode(s) & 1) !== 0 } }
}

export interface MountMessage { mountpoint: string, writeback: boolean }
export const mountMessage: c.Encoder<MountMessage> = {
  preencode (s, m) { c.string.preencode(s, m.mountpoint); c.uint.preencode(s, 0) },
  encode (s, m) { c.string.encode(s, m.mountpoint); c.uint.encode(s, m.writeback ? 1 : 0) },
  decode (s) { return { mountpoint: c.string.decode(s), writeback: (c.uint.decode(s) & 1) !== 0 } }
}

export interface NameMessage { name: string }
export const nameMessage: c.Encoder<NameMessage> = {
  preencode (s, m) { c.string.preencode(s, m.name) },
  encode (s, m) { c.string.encode(s, m.name) },
  decode (s) { return { name: c.string.decode(s) } }
}

export interface NameSetMessage { name: string, id: Buffer }
export const nameSetMessage: c.Encoder<NameSetMessage> = {
  preencode (s, m) { c.string.preencode(s, m.name); id16.preencode(s, m.id) },
  encode (s, m) { c.string.encode(s, m.name); id16.encode(s, m.id) },
  decode (s) { return { name: c.string.decode(s), id: Buffer.from(id16.decode(s) as Uint8Array) } }
}

export interface OptionalIdMessage { id: Buffer | null }
export const optionalIdMessage: c.Encoder<OptionalIdMessage> = {
  preencode (s, m) { c.uint.preencode(s, 0); if (m.id !== null) id16.preencode(s, m.id) },
  encode (s, m) { c.uint.encode(s, m.id !== null ? 1 : 0); if (m.id !== null) id16.encode(s, m.id) },
  decode (s) { return { id: (c.uint.decode(s) & 1) !== 0 ? Buffer.from(id16.decode(s) as Uint8Array) : null } }
}

const catalogObject: c.Encoder<CatalogObject> = {
  preencode (s, o) { id16.preencode(s, o.id); c.uint.preencode(s, o.size); c.uint.preencode(s, o.createdAt) },
  encode (s, o) { id16.encode(s, o.id); c.uint.encode(s, o.size); c.uint.encode(s, o.createdAt) },
  decode (s) { return { id: Buffer.from(id16.decode(s) as Uint8Array), size: c.uint.decode(s), createdAt: c.uint.decode(s) } }
}

const nameRecord: c.Encoder<NameRecord> = {
  preencode (s, r) { c.string.preencode(s, r.name); id16.preencode(s, r.id); c.uint.preencode(s, r.version) },
  encode (s, r) { c.string.encode(s, r.name); id16.encode(s, r.id); c.uint.encode(s, r.version) },
  decode (s) { return { name: c.string.decode(s), id: Buffer.from(id16.decode(s) as Uint8Array), version: c.uint.decode(s) } }
}

export const siteCatalogMessage: c.Encoder<SiteCatalog> = {
  preencode (s, m) { c.array(catalogObject).preencode(s, m.objects); c.array(nameRecord).preencode(s, m.names) },
  encode (s, m) { c.array(catalogObject).encode(s, m.objects); c.array(nameRecord).encode(s, m.names) },
  decode (s) { return { objects: c.array(catalogObject).decode(s), names: c.array(nameRecord).decode(s) } }
}

const catalogEntry: c.Encoder<CatalogEntry> = {
  preencode (s, e) { catalogObject.preencode(s, e); c.string.preencode(s, e.name ?? '') },
  encode (s, e) { catalogObject.encode(s, e); c.string.encode(s, e.name ?? '') },
  decode (s) { const o = catalogObject.decode(s); const name = c.string.decode(s); return { ...o, name: name === '' ? null : name } }
}

export const catalogMessage: c.Encoder<CatalogEntry[]> = c.array(catalogEntry)

export interface PutGrowMessage { size: number, final: boolean }
export const putGrowMessage: c.Encoder<PutGrowMessage> = {
  preencode (s, m) { c.uint.preencode(s, 0); c.uint.preencode(s, m.size) },
  encode (s, m) { c.uint.encode(s, m.final ? 1 : 0); c.uint.encode(s, m.size) },
  decode (s) { const final = (c.uint.decode(s) & 1) !== 0; return { final, size: c.uint.decode(s) } }
}

export interface CapacityRequest { cluster: boolean }
export const capacityRequest: c.Encoder<CapacityRequest> = {
  preencode (s) { c.uint.preencode(s, 0) },
  encode (s, m) { c.uint.encode(s, m.cluster ? 1 : 0) },
  decode (s) { return { cluster: (c.uint.decode(s) & 1) !== 0 } }
}

export interface CapacityMessage { size: number, free: number, nodes: number }
export const capacityMessage: c.Encoder<CapacityMessage> = {
  preencode (s, m) { c.uint.preencode(s, m.size); c.uint.preencode(s, m.free); c.uint.preencode(s, m.nodes) },
  encode (s, m) { c.uint.encode(s, m.size); c.uint.encode(s, m.free); c.uint.encode(s, m.nodes) },
  decode (s) { return { size: c.uint.decode(s), free: c.uint.decode(s), nodes: c.uint.decode(s) } }
}

/** `format`: dev add formats first; `force`: dev rem detaches even when data cannot move off first. */
export interface DeviceMessage { path: string, format: boolean, force?: boolean }
export const deviceMessage: c.Encoder<DeviceMessage> = {
  preencode (s, m) { c.uint.preencode(s, 0); c.string.preencode(s, m.path) },
  encode (s, m) { c.uint.encode(s, (m.format ? 1 : 0) | (m.force === true ? 2 : 0)); c.string.encode(s, m.path) },
  decode (s) { const flags = c.uint.decode(s); return { format: (flags & 1) !== 0, force: (flags & 2) !== 0, path: c.string.decode(s) } }
}

export const emptyMessage: c.Encoder<null> = {
  preencode () {},
  encode () {},
  decode () { return null }
}

export interface ListMessage { after: Buffer | null, limit: number }
export const listMessage: c.Encoder<ListMessage> = {
  preencode (s, m) { c.uint.preencode(s, 0); if (m.after !== null) id16.preencode(s, m.after); c.uint.preencode(s, m.limit) },
  encode (s, m) { c.uint.encode(s, m.after !== null ? 1 : 0); if (m.after !== null) id16.encode(s, m.after); c.uint.encode(s, m.limit) },
  decode (s) {
    const flags = c.uint.decode(s)
    const after = (flags & 1) !== 0 ? Buffer.from(id16.decode(s) as Uint8Array) : null
    return { after, limit: c.uint.decode(s) }
  }
}

export function decodeMeta<T> (enc: c.Encoder<T>, meta: Buffer): T {
  try {
    const state = c.state(0, meta.length, meta)
    const value = enc.decode(state)
    if (state.start !== state.end) throw DdfsError.PROTOCOL('trailing bytes after a message')
    return value
  } catch (err) {
    throw err instanceof DdfsError ? err : DdfsError.PROTOCOL(`malformed message: ${(err as Error).message}`)
  }
}
