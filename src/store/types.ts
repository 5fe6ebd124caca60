// The store layer's public surface: one BlockStore per attached device. The native raw-block
// store (src/store/native-store.ts over native/store/) implements it; so does MemoryStore
// (src/store/memory-store.ts) for unit tests of the layers above. Both pass the same
// conformance suite (test/store-conformance.ts).

/** What an entry is: the object layer stores fragments, manifests and name records. */
export const enum EntryKind {
  Fragment = 0,
  Manifest = 1,
  Name = 2
}

/**
 * An entry's key: the 128-bit object id plus where in the object the entry belongs.
 * Entries sort by (id, kind, stripe, index), so all entries of one object are adjacent.
 */
export interface EntryKey {
  id: Buffer       // 16 bytes
  kind: EntryKind  // 0..65535
  stripe: number   // 0..2^32-1
  index: number    // 0..65535
}

/** Where an entry lives on its device and what it holds. */
export interface EntryInfo {
  key: EntryKey
  block: number     // first block of its extent
  blocks: number    // blocks of the extent (data blocks plus any hash blocks)
  length: number    // bytes of content
  hash: bigint      // XXH64 of the content (seed 0)
}

/** The seed's dev_query fields, plus a few more. */
export interface DeviceInfo {
  path: string          // the device path as attached (/dev/loop0 or a file)
  major: number         // 0 for a regular file
  minor: number
  sbId: string          // 32 hex chars
  size: number          // bytes of the device
  usedSize: number      // bytes in used blocks (metadata included)
  freeSize: number
  bsize: number         // 4096
  blocks: number
  usedBlocks: number
  inodesTreeBlock: number  // first block of the current index checkpoint
  bmBlock: number          // first block of the current free-space bitmap
  bmBlocks: number
  entries: number          // entries in the index
  generation: number       // checkpoint generation
}

export interface FormatOptions {
  /** Format even when a ddfs superblock is already there. Never formats a device in use. */
  force?: boolean
}

export interface WriteHandle {
  readonly key: EntryKey
  readonly length: number
  /**
   * Writes `data` at `offset` of the entry. Offsets must be multiples of SEGMENT_SIZE and
   * every write but the one that reaches `length` must cover whole segments; writes may be
   * in flight concurrently and in any order.
   */
  write (offset: number, data: Buffer): Promise<void>
  /** Makes the entry durable and visible; resolves once it survives power loss. */
  commit (): Promise<EntryInfo>
  /** Frees the reserved space; the entry never becomes visible. */
  abort (): Promise<void>
}

export interface BlockStore {
  readonly path: string
  /** Device summary; cheap (kept in memory). */
  info (): DeviceInfo
  /** Whole-entry write of a small payload; durable when it resolves. Replaces an existing entry. */
  put (key: EntryKey, data: Buffer): Promise<EntryInfo>
  /** Whole-entry writes of small payloads, durable together (one commit) when it resolves. */
  putMany (entries: ReadonlyArray<{ key: EntryKey, data: Buffer }>): Promise<void>
  /** Reserves a contiguous extent for `length` bytes. Throws DEVICE_FULL when it cannot. */
  beginWrite (key: EntryKey, length: number): Promise<WriteHandle>
  /** Reads `length` bytes at `offset` of the entry, checked against its XXH64s. CORRUPT on mismatch. */
  read (key: EntryKey, offset?: number, length?: number): Promise<Buffer>
  /** Entry metadata, or null. Answered from memory. */
  stat (key: EntryKey): EntryInfo | null
  /** Every entry of one object id, in key order. Answered from memory. */
  list (id: Buffer): EntryInfo[]
  /** Object ids with at least one entry, in order, starting after `after`. */
  ids (after: Buffer | null, limit: number): Buffer[]
  /** Removes one entry; durable when it resolves. Returns false when there was none. */
  remove (key: EntryKey): Promise<boolean>
  /**
   * Removes every entry of an object id in one durable step; returns how many. With `mark`, that
   * step also leaves `mark` as an empty entry (a delete's tombstone: never a moment with neither).
   */
  removeId (id: Buffer, mark?: EntryKey): Promise<number>
  /** Writes a checkpoint and releases the device (lock included). Idempotent. */
  close (): Promise<void>
}
