// What the mount needs of the cluster. Two ways to reach it: NodeLink, the client protocol to a
// node (a mount process of its own), and InNodeLink, direct calls inside the node that hosts the
// mount (no socket, no second copy of every byte read).
import type { CatalogEntry } from '../object/types'
import type { CapacityMessage } from '../wire/messages'
import type { KeptBytes } from '../node/file-sources'

/** A commit's outcome: the new object, and the object its name stood for (the caller deletes it). */
export interface CommitInfo { id: Buffer, createdAt: number, replaced: Buffer | null }

/**
 * A put that reads a spool file while it is still being written: `grow(n)` says the first n
 * bytes are written, `end(n)` gives the final size and resolves once the object is stored;
 * `abandon()` drops it (nothing is stored).
 */
export interface SpoolFollow {
  grow: (size: number) => void
  end: (size: number) => Promise<CommitInfo>
  abandon: () => void
}

export interface StoreLink {
  /** Where the mount's requests go, for logs. */
  readonly address: string
  /** The store can read the mount's spool files itself (same machine): commits pass paths. */
  readonly local: boolean
  ready: () => Promise<void>
  catalog: () => Promise<CatalogEntry[]>
  resolve: (name: string) => Promise<Buffer | null>
  setName: (name: string, id: Buffer) => Promise<void>
  removeName: (name: string) => Promise<void>
  delete: (id: Buffer) => Promise<void>
  query: (id: Buffer) => Promise<{ size: number, schema: { k: number, m: number }, createdAt: number }>
  /** Up to MAX_READ bytes at `offset` (fewer at the end of the object), as consecutive pieces. */
  read: (id: Buffer, offset: number, length: number) => Promise<Buffer[]>
  capacity: () => Promise<CapacityMessage>
  /** A whole object of at most MAX_PUT_SMALL bytes, named `name`; many may run at once. */
  putSmall: (name: string, data: Buffer) => Promise<CommitInfo>
  /** The first `size` bytes of the spool file as a new object named `name`. */
  putFile: (spool: string, size: number, name: string) => Promise<CommitInfo>
  /**
   * Starts a put that follows the spool as it grows (only when `local`); `kept` gives what the
   * mount still holds of the spool in memory, which the put then does not read from the disk.
   */
  follow: (spool: string, name: string, kept?: KeptBytes) => Promise<SpoolFollow>
  close: () => void
}

/** An object's info as a node reports it (hex ids) as a CommitInfo. */
export function commitInfo (info: { id: string, createdAt: number, replaced?: string | null } | Record<string, unknown>): CommitInfo {
  return { id: Buffer.from(info.id as string, 'hex'), createdAt: Number(info.createdAt), replaced: typeof info.replaced === 'string' ? Buffer.from(info.replaced, 'hex') : null }
}
