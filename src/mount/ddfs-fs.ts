// The store as a flat directory: every live object is a file, listed under the newest name that
// points at it or else under its 32-hex id; any object opens as /<id>. A file written through
// the mount is kept in memory while small, else spooled to a local file (random writes welcome,
// memory bounded), and committed as
// a new object at close (flush) or fsync (or, with writeback, soon after close); an object under
// the same name is then replaced and deleted. Reads fetch stripe-sized windows with read-ahead,
// so sequential reads stream.
import fs from 'node:fs'
import path from 'node:path'
import { DdfsError } from '../errors'
import { checkName } from '../object/records'
import { STORED_BUT_UNNAMED } from '../object/cluster-object-store'
import { release } from '../buffers'
import { FRAGMENT_DATA } from '../object/stripes'
import { MAX_PUT_SMALL } from '../wire/messages'
import type { CatalogEntry } from '../object/types'
import type { CommitInfo, SpoolFollow, StoreLink } from './store-link'
import type { Logger } from '../log'
import { Errno as errno, type FsDir, type FsOps, type FsStat, type FsStatfs, type KeptWrites } from './fs-ops'

const ENOTSUP = errno.ENOTSUP
/** The listing is fetched again when older than this (other mounts' changes show up by then). */
const CATALOG_TTL_MS = 1000
/**
 * Read window: four fragments' data, so a window is exactly one stripe of a 4+2 object (and two
 * of a 2+x one): a window never makes the node decode a stripe twice. Windows kept per open file
 * (read-ahead included) bound its memory.
 */
const WINDOW = 4 * FRAGMENT_DATA
const WINDOWS_KEPT = 8
const READ_AHEAD = 4
const ID_RE = /^[0-9a-f]{32}$/
/** renameat2's flag: fail with EEXIST when the target exists (mv asks for it). */
const RENAME_NOREPLACE = 1

interface Entry { id: Buffer, hex: string, name: string | null, size: number, mtime: number }

interface ReadHandle { kind: 'read', entry: Entry, windows: Map<number, Promise<Buffer[]>>, next: number }
/** A file's bytes on local disk, once it outgrew memory. */
interface Spool {
  path: string
  key: number  // never reused in this process (KeptWrites)
  fd: number
  directFd: number | null  // the spool opened O_DIRECT (the binding's aligned writes of a large file); null where refused
}

interface WriteHandle {
  kind: 'write'
  name: string          // the file name it will be committed under
  // Its bytes: in `memory` (zeros past `size`) until it outgrows it, then in `spool` for good.
  memory: Buffer
  spool: Spool | null
  size: number
  dirty: boolean
  mtime: number
  committing: Promise<void> | null  // the commit in flight
  after: Promise<void> | null       // an earlier file of the same name still committing
  failed: DdfsError | null
  lost: number | null   // errno of a write the binding answered and then failed to store: never committed
  strays: Buffer[]      // objects failed commits stored without naming them: deleted once one commits or the file is removed
  previous: WriteHandle | null  // the file of the same name this one replaces (its commit may have failed)
  unlinked: boolean
  closed: boolean
  refs: number          // open descriptors
  writes: number        // write requests (the kernel's size per request shows in the log)
  // Streaming while writing (local node only): the node reads the spool as it grows, so close()
  // waits for the last stripes only. Any write that is not an append ends it (a put from the
  // whole spool at close instead).
  follow: Follow | null
  seqEnd: number        // bytes written as appends from 0
  streamable: boolean
  starting: boolean
}

interface Follow {
  put: SpoolFollow
  announced: number
  name: string
}

/** Commits running behind close() at once; a close waits while there are more. */
const MAX_PENDING_COMMITS = 32
/** DDFS_MOUNT_FOLLOW=0 commits whole spools only (for comparison in benchmarks). */
const FOLLOW = process.env.DDFS_MOUNT_FOLLOW !== '0'
/** A file streams to the node once it has this much, in steps of this much. */
const FOLLOW_START = 16 * 1024 * 1024
const FOLLOW_STEP = 8 * 1024 * 1024
/**
 * A file's aligned writes past this go to the spool with O_DIRECT (the binding does them; the
 * node reads spools with O_DIRECT): for a large file the page cache costs more CPU than the
 * disk round trip, for a small one it is the other way round.
 */
const DIRECT_FROM = FOLLOW_START
/** DDFS_MOUNT_DIRECT=0 spools through the page cache only (for comparison in benchmarks). */
const DIRECT = process.env.DDFS_MOUNT_DIRECT !== '0'
/**
 * A file is written to memory until it grows past this (a small put's limit: it commits in one
 * request), or until the mount's files in memory would take more than MEMORY_BUDGET; then to a
 * spool file. A spool per small file (create, O_DIRECT open, read back, two closes, unlink) was
 * about half the mount's CPU per 4 KiB create.
 */
const MEMORY_FILE_MAX = MAX_PUT_SMALL
const MEMORY_BUDGET = 64 * 1024 * 1024
const NO_MEMORY = Buffer.alloc(0)
type Handle = ReadHandle | WriteHandle

const STRAY_RE = new RegExp(`${STORED_BUT_UNNAMED} ([0-9a-f]{32})`)

/** The object a failed put stored without naming it, or null: deleted once a retry commits. */
function strayOf (err: unknown): Buffer | null {
  const m = STRAY_RE.exec(DdfsError.from(err).message)
  return m === null ? null : Buffer.from(m[1], 'hex')
}

/** DdfsError codes as errno values (positive), so tools print the right message. */
export function toErrno (err: unknown): number {
  switch (DdfsError.from(err).code) {
    case 'NOT_FOUND': return errno.ENOENT
    case 'BAD_ARGUMENT': return errno.EINVAL
    case 'DEVICE_FULL': return errno.ENOSPC
    case 'PERMISSION': return errno.EACCES
    default: return errno.EIO  // CORRUPT, UNAVAILABLE, IO, ...: never wrong bytes
  }
}

export class DdfsFs {
  private entries = new Map<string, Entry>()   // file name -> entry
  private byId = new Map<string, Entry>()
  private fetchedAt = 0
  private refreshing: Promise<void> | null = null
  private readonly handles = new Map<number, Handle>()
  private readonly writing = new Map<string, WriteHandle>()  // name -> file open or not yet committed
  private readonly pending = new Set<Promise<void>>()          // commits in flight
  // Names this mount committed, renamed or removed lately (null: removed), laid over listings
  // that may have been answered before the nodes had them.
  private readonly recent = new Map<string, { entry: Entry | null, at: number }>()
  private nextFd = 10
  private spoolSeq = 0
  private memoryUsed = 0  // bytes of every write handle's `memory`
  private kept: KeptWrites | null = null

  constructor (private readonly link: StoreLink, private readonly spoolDir: string, private readonly log: Logger, private readonly writeback = false) {}

  /** The binding's writes kept in memory: a put that follows a spool takes them instead of reading the disk. */
  useKeptWrites (kept: KeptWrites): void { this.kept = kept }

  // ---- the listing --------------------------------------------------------------------------

  private async refresh (force = false): Promise<void> {
    if (!force && Date.now() - this.fetchedAt < CATALOG_TTL_MS) return
    const started = Date.now()
    this.refreshing ??= this.link.catalog().then((list) => {
      const entries = new Map<string, Entry>()
      const byId = new Map<string, Entry>()
      for (const e of list) {
        const entry = toEntry(e)
        byId.set(entry.hex, entry)
        // Two objects claiming one name (rare: concurrent creates): the newer keeps it.
        const name = entry.name ?? entry.hex
        const had = entries.get(name)
        if (had === undefined || had.mtime < entry.mtime) entries.set(name, entry)
      }
      // What this mount just did may be newer than what the nodes answered: keep it on top.
      for (const [name, r] of this.recent) {
        if (r.at < started - CATALOG_TTL_MS) { this.recent.delete(name); continue }
        const had = entries.get(name)
        if (had !== undefined) { entries.delete(name); byId.delete(had.hex) }
        if (r.entry !== null) { entries.set(name, r.entry); byId.set(r.entry.hex, r.entry) }
      }
      this.entries = entries
      this.byId = byId
      this.fetchedAt = Date.now()
    }).finally(() => { this.refreshing = null })
    await this.refreshing
  }

  /** The committed object a file name stands for, or null. */
  private async lookup (name: string): Promise<Entry | null> {
    await this.refresh()
    const e = this.entries.get(name) ?? (ID_RE.test(name) ? this.byId.get(name) : undefined)
    if (e !== undefined) return e
    // Not in a listing at most a second old: absent (names made elsewhere show up within that
    // second, like the kernel's own entry cache). An id is looked up directly: any object opens
    // as /<id> at once, wherever it was put.
    if (!ID_RE.test(name)) return null
    try {
      const id = Buffer.from(name, 'hex')
      const q = await this.link.query(id)
      const found: Entry = { id, hex: name, name: null, size: q.size, mtime: q.createdAt }
      this.byId.set(found.hex, found)
      return found
    } catch (err) {
      if (DdfsError.from(err).code === 'NOT_FOUND') return null
      throw err
    }
  }

  private remember (e: Entry): void {
    this.byId.set(e.hex, e)
    this.entries.set(e.name ?? e.hex, e)
    this.recent.set(e.name ?? e.hex, { entry: e, at: Date.now() })
  }

  private forget (e: Entry): void {
    this.byId.delete(e.hex)
    const name = e.name ?? e.hex
    if (this.entries.get(name) === e) this.entries.delete(name)
    this.recent.set(name, { entry: null, at: Date.now() })
  }

  // ---- operations -----------------------------------------------------------------------------

  /** The operations, for whichever FUSE binding serves the mount (src/mount/fs-ops.ts). */
  ops (): FsOps {
    const trace = process.env.DDFS_MOUNT_TRACE === '1'
    // A failure becomes an errno (the binding answers it); the unexpected ones are logged.
    const run = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      const t0 = trace ? Date.now() : 0
      try {
        const v = await fn()
        if (trace) this.log.debug('op', { op: what, ms: Date.now() - t0 })
        return v
      } catch (err) {
        if (typeof err === 'number') throw err  // an errno: the expected answer (ENOENT, ...)
        const e = DdfsError.from(err)
        if (e.code !== 'NOT_FOUND') this.log.warn('mount-op-failed', { op: what, error: e.message })
        throw toErrno(e)
      }
    }
    return {
      statfs: async (): Promise<FsStatfs> => await run('statfs', async () => {
        const c = await this.link.capacity()
        const blocks = Math.floor(c.size / 4096)
        const free = Math.floor(c.free / 4096)
        return { bsize: 4096, frsize: 4096, blocks, bfree: free, bavail: free, files: this.entries.size + 1_000_000, ffree: 1_000_000, favail: 1_000_000, fsid: 0xdd, flag: 0, namemax: 255 }
      }),
      getattr: async (p, fh): Promise<FsStat> => await run('getattr', async () => {
        if (p === '/') return dirStat()
        // An open file (fstat; a removed one has no path): what its handle knows.
        const h = fh !== null ? this.handles.get(fh) : undefined
        if (h !== undefined) return h.kind === 'write' ? fileStat(h.size, h.mtime) : fileStat(h.entry.size, h.entry.mtime)
        const name = fileName(p)
        const w = this.writing.get(name)
        if (w !== undefined) return fileStat(w.size, w.mtime)
        const e = await this.lookup(name)
        if (e === null) throw errno.ENOENT
        return fileStat(e.size, e.mtime)
      }),
      // With the attributes: the kernel then needs no lookup per file for `ls -l` (readdirplus).
      readdir: async (p): Promise<FsDir> => await run('readdir', async () => {
        if (p !== '/') throw errno.ENOTDIR
        await this.refresh(true)
        const names = [...new Set([...this.entries.keys(), ...this.writing.keys()])]
        const stats = names.map((n) => { const w = this.writing.get(n); const e = this.entries.get(n) as Entry; return w !== undefined ? fileStat(w.size, w.mtime) : fileStat(e.size, e.mtime) })
        return { names, stats }
      }),
      open: async (p, flags) => await run('open', async () => await this.open(fileName(p), flags)),
      create: async (p) => await run('create', async () => await this.create(fileName(p))),
      read: async (_p, fd, buf, pos) => {
        try {
          return await this.read(fd, buf, buf.length, pos)
        } catch (err) {
          throw typeof err === 'number' ? err : toErrno(err)
        }
      },
      write: (_p, fd, buf, pos) => {
        const h = this.handles.get(fd)
        if (h === undefined || h.kind !== 'write') throw errno.EBADF
        // Synchronously: a copy into memory or the page cache costs less than a thread-pool hop.
        let n: number
        try {
          if (this.fitsMemory(h, pos + buf.length)) {
            n = buf.copy(h.memory, pos)
          } else {
            n = fs.writeSync(this.spill(h).fd, buf, 0, buf.length, pos)
          }
        } catch (err) {
          throw (err as NodeJS.ErrnoException).code === 'ENOSPC' ? errno.ENOSPC : errno.EIO
        }
        this.written(h, pos, n)
        return n
      },
      // The libfuse 3 binding writes into the spool itself (off this thread) and reports it; a
      // file in memory has its writes come here.
      writeTarget: (fd) => {
        const h = this.handles.get(fd)
        return h !== undefined && h.kind === 'write' && h.spool !== null ? { fd: h.spool.fd, direct: h.spool.directFd, directFrom: DIRECT_FROM, spool: h.spool.key } : null
      },
      written: (fd, pos, n) => {
        const h = this.handles.get(fd)
        if (h === undefined || h.kind !== 'write') return
        if (n >= 0) { this.written(h, pos, n); return }
        h.lost ??= -n
        h.dirty = true  // so the next flush, fsync or close reports it
        this.stopFollow(h)
        this.log.error('spool-write-failed', { name: h.name, pos, errno: -n })
      },
      flush: async (_p, fd) => await run('flush', async () => await this.flush(fd)),
      fsync: async (_p, fd) => await run('fsync', async () => await this.fsync(fd)),
      release: async (_p, fd) => await run('release', async () => await this.release(fd)),
      truncate: async (p, size, fd) => await run('truncate', async () => {
        if (fd === null) { await this.truncate(fileName(p), size); return }
        const h = this.handles.get(fd)
        if (h === undefined || h.kind !== 'write') throw errno.EBADF
        await this.resize(h, size)
      }),
      unlink: async (p) => await run('unlink', async () => await this.unlink(fileName(p))),
      rename: async (src, dest, flags) => await run('rename', async () => {
        if ((flags & ~RENAME_NOREPLACE) !== 0) throw errno.EINVAL  // RENAME_EXCHANGE, whiteouts
        if ((flags & RENAME_NOREPLACE) !== 0 && (this.writing.has(fileName(dest)) || await this.lookup(fileName(dest)) !== null)) throw errno.EEXIST
        await this.rename(fileName(src), fileName(dest))
      }),
      getxattr: async (p, attr) => await run('getxattr', async () => {
        if (p === '/' || this.writing.has(fileName(p))) return null  // a file not committed yet has no id
        const e = await this.lookup(fileName(p))
        if (e === null) throw errno.ENOENT
        if (attr === 'user.ddfs.id') return Buffer.from(e.hex)
        if (attr === 'user.ddfs.schema') {
          const q = await this.link.query(e.id)
          return Buffer.from(`n=${q.schema.k + q.schema.m} k=${q.schema.k}`)
        }
        return null
      }),
      listxattr: async (p) => await run('listxattr', async () => {
        if (p === '/' || this.writing.has(fileName(p))) return []
        if (await this.lookup(fileName(p)) === null) throw errno.ENOENT
        return ['user.ddfs.id', 'user.ddfs.schema']
      }),
      // Times, modes and owners are not stored: accepted (tools like cp -p and touch call them)
      // and ignored. Directories, links and device nodes are not supported.
      utimens: () => {},
      chmod: () => {},
      chown: () => {},
      setxattr: () => { throw ENOTSUP },
      mkdir: () => { throw ENOTSUP },
      rmdir: () => { throw ENOTSUP },
      symlink: () => { throw ENOTSUP },
      link: () => { throw ENOTSUP },
      mknod: () => { throw ENOTSUP }
    }
  }

  private async open (name: string, flags: number): Promise<number> {
    const mode = flags & 3
    if (mode === fs.constants.O_RDONLY) {
      const w = this.writing.get(name)
      if (w !== undefined) return this.addHandle(w)  // reading a file being written: its memory or spool
      const e = await this.lookup(name)
      if (e === null) throw errno.ENOENT
      const h: ReadHandle = { kind: 'read', entry: e, windows: new Map(), next: 0 }
      // The first window is asked for now: its round to the nodes overlaps the open's answer and
      // the kernel's first read (for a small file, the whole file).
      void this.window(h, 0).catch(() => {})
      return this.addHandle(h)
    }
    if (ID_RE.test(name)) throw errno.EACCES  // an object's content never changes under its id
    const open = this.writing.get(name)
    if (open !== undefined && open.refs > 0) {
      // Another descriptor of a file being written; O_TRUNC empties it for both (`cp` over a
      // file whose last writer has not released it yet must not leave the old bytes' tail).
      if ((flags & fs.constants.O_TRUNC) !== 0) await this.resize(open, 0)
      return this.addHandle(open)
    }
    await open?.committing?.catch(() => {})  // a file just closed: open what it committed
    const e = await this.lookup(name)
    if (e === null) throw errno.ENOENT
    const h = this.newWrite(name)
    // Opened for writing without O_TRUNC: start from the current content.
    if ((flags & fs.constants.O_TRUNC) === 0) {
      await this.copyIn(h, e, e.size)
      h.dirty = false  // the same content: a close without writes commits nothing
    } else {
      h.dirty = true
    }
    return this.addHandle(h)
  }

  private async create (name: string): Promise<number> {
    try {
      checkName(name)
    } catch {
      throw errno.EINVAL
    }
    const h = this.newWrite(name)
    h.dirty = true  // an empty file is a file too
    this.writing.set(name, h)
    return this.addHandle(h)
  }

  private newWrite (name: string): WriteHandle {
    const earlier = this.writing.get(name)
    return {
      kind: 'write', name, memory: NO_MEMORY, spool: null, size: 0, dirty: false, mtime: Date.now(), refs: 0, writes: 0, follow: null, seqEnd: 0, streamable: true, starting: false,
      committing: null, after: earlier?.committing ?? null, failed: null, lost: null, strays: [], previous: earlier ?? null, unlinked: false, closed: false
    }
  }

  /**
   * Whether the file's bytes up to `end` are (now) in memory: false once it has a spool, or when
   * growing its memory that far would pass MEMORY_FILE_MAX or the mount's MEMORY_BUDGET.
   */
  private fitsMemory (h: WriteHandle, end: number): boolean {
    if (h.spool !== null) return false
    if (end <= h.memory.length) return true
    if (end > MEMORY_FILE_MAX) return false
    const grown = Math.min(MEMORY_FILE_MAX, Math.max(end, 2 * h.memory.length, 16 * 1024))
    if (this.memoryUsed + grown - h.memory.length > MEMORY_BUDGET) return false
    const memory = Buffer.alloc(grown)  // zeros: a write past the end leaves a hole of zeros
    h.memory.copy(memory, 0, 0, h.size)
    this.memoryUsed += grown - h.memory.length
    h.memory = memory
    return true
  }

  /** Moves a file from memory to a new spool file (for good); its spool. */
  private spill (h: WriteHandle): Spool {
    if (h.spool !== null) return h.spool
    const file = path.join(this.spoolDir, `${process.pid}-${++this.spoolSeq}`)
    const fd = fs.openSync(file, 'w+', 0o600)
    try {
      for (let at = 0; at < h.size;) at += fs.writeSync(fd, h.memory, at, h.size - at, at)
    } catch (err) {
      fs.closeSync(fd)
      fs.rmSync(file, { force: true })
      throw err
    }
    // (tmpfs refuses O_DIRECT: then every write goes through fd.)
    let directFd: number | null = null
    if (DIRECT) try { directFd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_DIRECT) } catch {}
    this.dropMemory(h)
    h.spool = { path: file, key: this.spoolSeq, fd, directFd }
    return h.spool
  }

  private dropMemory (h: WriteHandle): void {
    this.memoryUsed -= h.memory.length
    h.memory = NO_MEMORY
  }

  /** Sets a file's size: cut, or extended with zeros. */
  private async resize (h: WriteHandle, size: number): Promise<void> {
    if (size <= h.size ? h.spool === null : this.fitsMemory(h, size)) {
      if (size < h.size) h.memory.fill(0, size, h.size)  // zeros past the end, as promised
    } else {
      const fd = this.spill(h).fd
      await new Promise<void>((resolve, reject) => fs.ftruncate(fd, size, (err) => err !== null ? reject(err) : resolve()))
    }
    h.size = size
    h.dirty = true
  }

  /** The first `size` bytes of a committed object (zero-extended) into a new write handle. */
  private async copyIn (h: WriteHandle, e: Entry, size: number): Promise<void> {
    const have = Math.min(size, e.size)
    await this.resize(h, size)
    for (let off = 0; off < have; off += WINDOW) {
      const pieces = await this.link.read(e.id, off, Math.min(WINDOW, have - off))
      if (h.spool === null) {
        let at = off
        for (const p of pieces) at += p.copy(h.memory, at)
      } else {
        await writeAt(h.spool.fd, pieces, off)
      }
    }
  }

  private addHandle (h: Handle): number {
    const fd = this.nextFd++
    this.handles.set(fd, h)
    if (h.kind === 'write') { h.refs++; this.writing.set(h.name, h) }
    return fd
  }

  private async read (fd: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handles.get(fd)
    if (h === undefined) throw errno.EBADF
    if (h.kind === 'write') {
      // Synchronously, like writes: `buf` is the binding's reply memory, which an unmount or a
      // request timeout may take back while an asynchronous read on the thread pool still
      // writes into it.
      if (h.spool === null) return pos >= h.size ? 0 : h.memory.copy(buf, 0, pos, Math.min(h.size, pos + len))
      try {
        return fs.readSync(h.spool.fd, buf, 0, len, pos)
      } catch {
        throw errno.EIO
      }
    }
    const size = h.entry.size
    if (pos >= size) return 0
    const end = Math.min(size, pos + len)
    let done = 0
    for (let at = pos; at < end;) {
      const w = Math.floor(at / WINDOW)
      const n = copyFrom(await this.window(h, w), at - w * WINDOW, buf, done, end - at)
      if (n <= 0) throw DdfsError.UNAVAILABLE('short read from the node')
      done += n
      at += n
    }
    // Sequential: keep the next windows coming.
    const w = Math.floor(pos / WINDOW)
    if (w === h.next || w === h.next - 1) for (let a = 1; a <= READ_AHEAD; a++) void this.window(h, w + a).catch(() => {})
    h.next = Math.floor((end - 1) / WINDOW) + 1
    return done
  }

  private window (h: ReadHandle, w: number): Promise<Buffer[]> {
    const start = w * WINDOW
    if (start >= h.entry.size) return Promise.resolve([])
    let p = h.windows.get(w)
    if (p === undefined) {
      p = this.link.read(h.entry.id, start, Math.min(WINDOW, h.entry.size - start))
      p.catch(() => { if (h.windows.get(w) === p) h.windows.delete(w) })
      h.windows.set(w, p)
      // Keep the newest few windows: memory per open file stays bounded.
      for (const [k, old] of h.windows) {
        if (h.windows.size <= WINDOWS_KEPT) break
        if (k < w) { h.windows.delete(k); this.giveBack(old) }
      }
    }
    return p
  }

  /**
   * A dropped window's fragment buffers go back at once (release: detached, freed) instead of
   * when V8 next collects: every such buffer counts towards V8's external memory, which starts
   * a full mark-compact each 64 MB (11-12% of node 0's samples while reading a 1 GiB file). No
   * read still copies from it: a read copies right after its await of the window, and that
   * continuation was queued before any release scheduled later. (An inline object's bytes are
   * a view of its manifest, which the node keeps: release leaves that buffer alone.)
   */
  private giveBack (p: Promise<Buffer[]>): void {
    p.then((pieces) => { for (const piece of pieces) release(piece) }, () => {})
  }

  /** Bytes written into the spool at `pos` (by `write`, or by the binding itself). */
  private written (h: WriteHandle, pos: number, n: number): void {
    h.writes++
    h.size = Math.max(h.size, pos + n)
    h.dirty = true
    h.mtime = Date.now()
    this.streamWrite(h, pos, n)
  }

  /** Keeps a following put up with appends; anything else stops it. */
  private streamWrite (h: WriteHandle, pos: number, n: number): void {
    if (!h.streamable) return
    if (pos !== h.seqEnd) { this.stopFollow(h); return }
    h.seqEnd += n
    if (h.follow === null && !h.starting && h.seqEnd >= FOLLOW_START && h.spool !== null && this.link.local && FOLLOW) {
      h.starting = true  // until the client is there, writes only extend seqEnd
      const spool = h.spool
      const kept = this.kept
      kept?.keep(spool.key, true)
      this.link.follow(spool.path, h.name, kept === null ? undefined : (pos, dest) => kept.take(spool.key, pos, dest)).then((put) => {
        h.starting = false
        if (!h.streamable || h.seqEnd !== h.size || !h.dirty) { put.abandon(); this.unkeep(h); return }
        h.follow = { put, announced: 0, name: h.name }
        this.announce(h)
      }, () => { h.starting = false; h.streamable = false; this.unkeep(h) })
      return
    }
    if (h.follow !== null && h.seqEnd - h.follow.announced >= FOLLOW_STEP) this.announce(h)
  }

  private announce (h: WriteHandle): void {
    if (h.follow === null) return
    h.follow.announced = h.seqEnd
    h.follow.put.grow(h.seqEnd)
  }

  private stopFollow (h: WriteHandle): void {
    h.streamable = false
    h.follow?.put.abandon()
    h.follow = null
    this.unkeep(h)
  }

  /** The binding keeps no more of the file's writes (its put does not follow it any more). */
  private unkeep (h: WriteHandle): void {
    if (h.spool !== null) this.kept?.keep(h.spool.key, false)
  }

  /**
   * Starts committing a written file (if it changed since its last commit) after any commit of
   * it, or of an earlier file of the same name, still in flight; resolves when this one is done.
   */
  private commitLater (h: WriteHandle): Promise<void> {
    if (!h.dirty || h.unlinked) return h.committing ?? Promise.resolve()
    h.dirty = false  // a write from now on needs another commit
    const before = h.committing ?? h.after ?? Promise.resolve()
    const p = before.catch(() => {}).then(async () => await this.commitNow(h))
    h.committing = p
    const tracked: Promise<void> = p.then(() => { h.failed = null }, (err) => {
      h.dirty = true  // retried by the next close, fsync, or the unmount
      h.failed = DdfsError.from(err)
      this.log.error('commit-failed', { name: h.name, error: h.failed.message })
    }).finally(() => {
      this.pending.delete(tracked)
      if (h.committing === p) h.committing = null
      this.cleanup(h)
    })
    this.pending.add(tracked)
    return p
  }

  /** Forgets a closed, committed file: its memory or spool goes. */
  private cleanup (h: WriteHandle): void {
    // A file whose commit failed stays (retried at the next close or the unmount), unless
    // its bytes were lost: nothing to retry.
    if (h.refs > 0 || h.committing !== null || (h.dirty && !h.unlinked && h.lost === null) || h.closed) return
    h.closed = true
    if (this.writing.get(h.name) === h) this.writing.delete(h.name)
    this.dropMemory(h)
    const spool = h.spool
    if (spool === null) return
    this.unkeep(h)
    if (spool.directFd !== null) fs.close(spool.directFd, () => {})
    fs.close(spool.fd, () => fs.rm(spool.path, { force: true }, () => {}))
  }

  /** Commits the spool as a new object under the file's name; the object it replaces goes. */
  private async commitNow (h: WriteHandle): Promise<void> {
    if (h.lost !== null) {
      const why = `a write to ${h.name} was answered but could not be stored in the mount's spool (${h.lost === errno.ENOSPC ? 'ENOSPC' : 'EIO'}); the file is not committed: write it again`
      throw h.lost === errno.ENOSPC ? DdfsError.DEVICE_FULL(why) : DdfsError.IO(why)
    }
    // A file of this name whose commit failed is replaced by this one: it is not retried (at
    // unmount it would overwrite newer bytes), and what its attempts stored goes with this commit.
    const previous = h.previous
    h.previous = null
    if (previous !== null && previous.refs === 0) {
      h.strays.push(...previous.strays.splice(0))
      if (previous.dirty) { previous.unlinked = true; this.cleanup(previous) }
    }
    // What the name stood for, as its holders answer when they take the new record (the put
    // names its object last): the listing may have missed the name (its holders unreachable
    // when it was fetched), and an object replaced but not deleted would be listed under the
    // name again later.
    let info: CommitInfo | null = null
    const follow = h.follow
    h.follow = null
    h.streamable = false  // later writes to this handle commit the whole spool again
    if (follow === null && h.size <= MAX_PUT_SMALL) {
      // A small file: its bytes in one request on the shared connection (no connection per
      // commit, no file for the node to read). A copy of memory: writes may go on meanwhile.
      const data = h.spool === null ? Buffer.from(h.memory.subarray(0, h.size)) : await readSpool(h.spool.fd, h.size)
      info = await this.retrying(h, async () => await this.link.putSmall(h.name, data))
    } else {
      if (follow !== null) {
        if (h.seqEnd === h.size && follow.name === h.name) {
          try {
            info = await follow.put.end(h.size)
          } catch (err) {
            const stray = strayOf(err)
            if (stray !== null) h.strays.push(stray)
            this.log.warn('follow-put-failed', { name: h.name, error: DdfsError.from(err).message })
          }
        }
        follow.put.abandon()  // no-op after end()
        this.unkeep(h)
      }
      const spool = this.spill(h)
      info ??= await this.retrying(h, async () => await this.link.putFile(spool.path, h.size, h.name))
    }
    const hex = info.id.toString('hex')
    this.log.info('committed', { name: h.name, id: hex, size: h.size, writeRequests: h.writes })
    const entry: Entry = { id: info.id, hex, name: h.name, size: h.size, mtime: info.createdAt }
    const old = this.entries.get(h.name) ?? null
    this.remember(entry)
    const gone = new Map<string, Buffer>()
    for (const id of [old?.id, info.replaced, ...h.strays.splice(0)]) if (id != null && !id.equals(entry.id)) gone.set(id.toString('hex'), id)
    for (const [hex, id] of gone) {
      this.byId.delete(hex)
      await this.deleteReplaced(id)
    }
  }

  /**
   * A put, tried again a few times (see whenReachable). What a failed attempt stored without its
   * name is remembered, to be deleted once one commits.
   */
  private async retrying<T> (h: WriteHandle, put: () => Promise<T>): Promise<T> {
    return await this.whenReachable('commit-retry', h.name, async () => {
      try {
        return await put()
      } catch (err) {
        const stray = strayOf(err)
        if (stray !== null) h.strays.push(stray)
        throw err
      }
    })
  }

  /**
   * A step that needs every holder it ranks (a put, an rm's delete, a name's removal), tried up
   * to three times on UNAVAILABLE: a node that just died or stalls stays in this view until the
   * others notice (for a put, the first failure marks it). The 2,000-file mount test once saw
   * an rm answered EIO while a node was down, its file gone from the listing afterwards.
   */
  private async whenReachable<T> (event: string, name: string, step: (attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await step(attempt)
      } catch (err) {
        if (DdfsError.from(err).code !== 'UNAVAILABLE' || attempt === 3) throw err
        this.log.warn(event, { name, error: DdfsError.from(err).message })
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt))
      }
    }
  }

  /**
   * Deletes an object a new commit replaced; retried a few times in the background when the
   * cluster cannot take it now (else it would stay, listed under its id).
   */
  private async deleteReplaced (id: Buffer, attempt = 1): Promise<void> {
    try {
      await this.link.delete(id)
    } catch (err) {
      const e = DdfsError.from(err)
      if (e.code === 'NOT_FOUND') return
      this.log.warn('replace-delete-failed', { id: id.toString('hex'), attempt, error: e.message })
      if (attempt < 6) setTimeout(() => { this.deleteReplaced(id, attempt + 1).catch(() => {}) }, 1000 * attempt).unref()
    }
  }

  /**
   * close(): the object is committed before close returns, so any mount that opens the name
   * afterwards sees it (close-to-open). With writeback the commit runs behind instead (fsync
   * still waits for it), unless too many are in flight.
   */
  private async flush (fd: number): Promise<void> {
    const h = this.handles.get(fd)
    if (h === undefined || h.kind !== 'write') return
    // A file created and not written yet: a shell's `> file` closes a duplicate descriptor
    // before the command writes. Committing an empty object now would only make one to replace;
    // release (the last close) commits it if it stays empty.
    if (h.writes === 0 && h.size === 0) return
    if (!this.writeback) { await this.commitLater(h); return }
    this.commitLater(h).catch(() => {})
    while (this.pending.size > MAX_PENDING_COMMITS) await Promise.race(this.pending)
  }

  private async fsync (fd: number): Promise<void> {
    const h = this.handles.get(fd)
    if (h === undefined || h.kind !== 'write') return
    await this.commitLater(h)
  }

  private async release (fd: number): Promise<void> {
    const h = this.handles.get(fd)
    this.handles.delete(fd)
    if (h?.kind === 'read') for (const p of h.windows.values()) this.giveBack(p)
    if (h === undefined || h.kind !== 'write') return
    if (--h.refs > 0) return
    const commit = this.commitLater(h)
    this.cleanup(h)
    if (!this.writeback) await commit  // an empty file, whose flush skipped it (see flush)
  }

  private async truncate (name: string, size: number): Promise<void> {
    const w = this.writing.get(name)
    if (w !== undefined) {
      await this.resize(w, size)
      return
    }
    if (ID_RE.test(name)) throw errno.EACCES
    const e = await this.lookup(name)
    if (e === null) throw errno.ENOENT
    if (size === e.size) return
    // A new object with the first `size` bytes (zero-extended), replacing this one.
    const h = this.newWrite(name)
    try {
      await this.copyIn(h, e, size)
      await this.commitLater(h)
    } finally {
      this.cleanup(h)
    }
  }

  private async unlink (name: string): Promise<void> {
    const w = this.writing.get(name)
    if (w !== undefined) {
      // A file still being written or committed: let its commit land, then delete what it made;
      // later writes through a descriptor still open go nowhere (like an unlinked open file).
      w.unlinked = true
      this.writing.delete(name)
      await w.committing?.catch(() => {})
      this.cleanup(w)
      for (const id of w.strays.splice(0)) await this.deleteReplaced(id)
    }
    const e = await this.lookup(name)
    if (e === null && w === undefined) throw errno.ENOENT
    if (e !== null) {
      await this.whenReachable('rm-retry', name, async (attempt) => {
        try {
          await this.link.delete(e.id)
        } catch (err) {
          // Gone on a retry: the failed attempt left its tombstones on the holders it reached.
          if (attempt === 1 || DdfsError.from(err).code !== 'NOT_FOUND') throw err
        }
      })
    }
    // The name goes even when the listing had no object for it: a failed commit of the file may
    // have named one on some of the name's holders (the fault schedule listed such a file again
    // after its rm).
    if (e?.name != null || w !== undefined) await this.whenReachable('rm-retry', name, async () => await this.link.removeName(name))
    if (e !== null) this.forget(e)
  }

  private async rename (from: string, to: string): Promise<void> {
    if (from === to) return
    try { checkName(to) } catch { throw errno.EINVAL }
    const w = this.writing.get(from)
    if (w !== undefined) await w.committing?.catch(() => {})
    if (w !== undefined && w.dirty) {
      // Not committed yet: it will be committed under the new name (replacing what is there).
      this.writing.delete(from)
      w.name = to
      this.writing.set(to, w)
      return
    }
    const e = await this.lookup(from)
    if (e === null) throw errno.ENOENT
    const target = await this.lookup(to)
    await this.link.setName(to, e.id)
    if (e.name !== null) await this.link.removeName(e.name)
    this.forget(e)
    const moved = { ...e, name: to }
    this.remember(moved)
    if (target !== null && target.hex !== e.hex) {
      this.byId.delete(target.hex)
      await this.link.delete(target.id)
    }
  }

  /** Closes every open file (committing what was written) before an unmount. */
  async closeAll (): Promise<void> {
    for (const fd of [...this.handles.keys()]) await this.release(fd).catch(() => {})
    await Promise.allSettled([...this.pending])
    // One more try for commits that failed; what still fails is in the log, with its spool kept
    // (a file still in memory is written to one first).
    for (const h of [...this.writing.values()]) {
      if (h.dirty && !h.unlinked) {
        await this.commitLater(h).catch((err) => {
          let spool: string
          try { spool = this.spill(h).path } catch (e) { spool = `none: ${DdfsError.from(e).message}` }
          this.log.error('file-not-committed', { name: h.name, spool, error: DdfsError.from(err).message })
        })
      }
    }
  }
}

function toEntry (e: CatalogEntry): Entry {
  return { id: e.id, hex: e.id.toString('hex'), name: e.name, size: e.size, mtime: e.createdAt }
}

function fileName (p: string): string {
  return p.startsWith('/') ? p.slice(1) : p
}

function dirStat (): FsStat {
  return { mode: 0o40755, size: 4096, nlink: 2, mtime: Date.now() }
}

function fileStat (size: number, mtime: number): FsStat {
  return { mode: 0o100644, size, nlink: 1, mtime }
}

/** The first `size` bytes of a spool. */
async function readSpool (fd: number, size: number): Promise<Buffer> {
  const data = Buffer.allocUnsafe(size)
  for (let at = 0; at < size;) {
    const n = await new Promise<number>((resolve, reject) => fs.read(fd, data, at, size - at, at, (err, got) => err !== null ? reject(err) : resolve(got)))
    if (n === 0) throw DdfsError.IO(`the spool ended after ${at} of ${size} bytes`)
    at += n
  }
  return data
}

function writeAt (fd: number, pieces: Buffer[], pos: number): Promise<void> {
  return new Promise((resolve, reject) => fs.writev(fd, pieces, pos, (err) => err !== null ? reject(err) : resolve()))
}

/**
 * Copies up to `max` bytes from `from` bytes into consecutive pieces to `buf` at `at` (a window
 * stays in the pieces it was read as: no copy to join them); returns how many.
 */
function copyFrom (pieces: Buffer[], from: number, buf: Buffer, at: number, max: number): number {
  let done = 0
  for (const p of pieces) {
    if (done === max) break
    if (from >= p.length) { from -= p.length; continue }
    const n = p.copy(buf, at + done, from, Math.min(p.length, from + max - done))
    done += n
    from = 0
  }
  return done
}
