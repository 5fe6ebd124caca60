// What a file system served through FUSE implements, whichever binding serves it (the libfuse 3
// binding in src/mount/fuse3.ts, or fuse-native through src/mount/fuse-native-binding.ts).
// Paths are absolute within the mount ('/' is the root; '' for an open file that was removed).
// A handler answers with a value (or a promise of one); it fails by throwing an errno number
// (either sign: 2 and -2 are both ENOENT). Anything else it throws is answered EIO.
import os from 'node:os'

/** errno values (positive), for handlers to throw. */
export const Errno = os.constants.errno

export interface FsStat {
  mode: number
  size: number
  /** Milliseconds since the epoch. */
  mtime: number
  atime?: number
  ctime?: number
  uid?: number
  gid?: number
  nlink?: number
  ino?: number
}

export interface FsStatfs {
  bsize: number, frsize: number, blocks: number, bfree: number, bavail: number,
  files: number, ffree: number, favail: number, fsid: number, flag: number, namemax: number
}

/** A directory listing; `stats` (same order) lets the kernel skip a lookup per entry (readdirplus). */
export interface FsDir { names: string[], stats?: FsStat[] }

type R<T> = T | Promise<T>

export interface FsOps {
  getattr?: (path: string, fh: number | null) => R<FsStat>
  readdir?: (path: string) => R<FsDir>
  /** Returns a file handle (a non-negative integer below 2^31). */
  open?: (path: string, flags: number) => R<number>
  create?: (path: string, mode: number, flags: number) => R<number>
  /**
   * Fills `buf` from `pos`; returns the bytes read. `buf` is the reply's memory, valid until the
   * request is answered, which may be before the handler's promise settles (a timeout, an
   * unmount): fill it with synchronous copies, never hand it to asynchronous native I/O.
   */
  read?: (path: string, fh: number, buf: Buffer, pos: number) => R<number>
  /** `buf` is valid until the handler returns (or its promise settles); returns the bytes written. */
  write?: (path: string, fh: number, buf: Buffer, pos: number) => R<number>
  /**
   * The OS descriptor an open file's writes may go to without a request (null: every write
   * comes to `write`), asked at open and create and again after each `write` (a file may move
   * from memory to a descriptor). A binding that can (the libfuse 3 one) then writes them there on its own
   * threads and reports each through `written`, before any request that follows it; it stops
   * writing to the descriptor before it delivers the handle's `release`. With `direct`, its
   * writes at 4096-aligned offsets and lengths from `directFrom` on go to that descriptor of the
   * same file, opened O_DIRECT (a binding may also write them to `fd`).
   */
  writeTarget?: (fh: number) => number | WriteTarget | null
  /**
   * A write the binding did into writeTarget(fh)'s descriptor. `bytes` < 0: -errno of a write
   * the binding answered before it failed (a write behind, to the O_DIRECT descriptor): the
   * file's bytes are incomplete, and the binding fails the handle's later writes.
   */
  written?: (fh: number, pos: number, bytes: number) => void
  flush?: (path: string, fh: number) => R<void>
  fsync?: (path: string, fh: number, datasync: boolean) => R<void>
  release?: (path: string, fh: number) => R<void>
  truncate?: (path: string, size: number, fh: number | null) => R<void>
  unlink?: (path: string) => R<void>
  rename?: (from: string, to: string, flags: number) => R<void>
  /** The attribute's value, or null when the file has no such attribute. */
  getxattr?: (path: string, name: string) => R<Buffer | null>
  listxattr?: (path: string) => R<string[]>
  statfs?: (path: string) => R<FsStatfs>
  /** Times in ms; null: leave as it is (UTIME_OMIT) or now (UTIME_NOW). */
  utimens?: (path: string, atime: number | null, mtime: number | null) => R<void>
  chmod?: (path: string, mode: number) => R<void>
  chown?: (path: string, uid: number, gid: number) => R<void>
  mkdir?: (path: string, mode: number) => R<void>
  rmdir?: (path: string) => R<void>
  symlink?: (target: string, path: string) => R<void>
  link?: (from: string, to: string) => R<void>
  mknod?: (path: string, mode: number, dev: number) => R<void>
  setxattr?: (path: string, name: string, value: Buffer, flags: number) => R<void>
  removexattr?: (path: string, name: string) => R<void>
}

export type FsOpName = keyof FsOps

/** A thrown value as a negative errno: an errno number as is, anything else EIO. */
export function errnoOf (err: unknown): number {
  if (typeof err === 'number' && Number.isInteger(err) && err !== 0 && Math.abs(err) < 4096) return -Math.abs(err)
  return -Errno.EIO
}

/** True when a handler failed with something other than an errno number (a bug worth a log line). */
export function isUnexpected (err: unknown): boolean {
  return typeof err !== 'number'
}

/** Where an open file's writes may go without a request (FsOps.writeTarget). */
export interface WriteTarget {
  fd: number
  direct: number | null
  directFrom: number
  /** A key of the file, never reused (0: none), for KeptWrites. */
  spool?: number
}

/**
 * What a binding keeps of the writes it did itself (the libfuse 3 one: those written behind), for
 * a reader that follows the file as it grows: that reader takes them from memory instead of
 * reading them back from the disk.
 */
export interface KeptWrites {
  /** Keep (or no longer) what is written from now on into the file of this WriteTarget.spool. */
  keep: (spool: number, on: boolean) => void
  /**
   * Copies into `dest` what is kept of the file from `pos` on, up to the first byte not kept;
   * returns the bytes copied. What is kept of the file before the end of that range goes.
   */
  take: (spool: number, pos: number, dest: Buffer) => number
}
