// The libfuse 3 binding (native/fuse3.cc) with a lifecycle: `await fuse.ready()` mounts and
// resolves once the mount answers, `await fuse.close()` answers whatever is in flight with EIO,
// unmounts and joins libfuse's threads. The only importer of the addon's Fuse3Mount.
//
// Each request reaches `dispatch` on the JS thread; the handler's value (or promise) becomes the
// reply. A handler that throws something other than an errno number, or whose promise rejects
// so, is answered EIO and logged; one that never answers is answered EIO after
// `requestTimeoutMs` (the FUSE thread waiting for it is then free again).
import fs from 'node:fs'
import path from 'node:path'
import { addon } from '../native'
import { DdfsError } from '../errors'
import { Errno, errnoOf, isUnexpected, type FsDir, type FsOpName, type FsOps, type FsStat, type FsStatfs, type KeptWrites } from './fs-ops'

/** What the kernel and libfuse settled on at init. */
export interface Fuse3Info {
  maxWrite: number
  maxRead: number
  maxReadahead: number
  maxBackground: number
  protoMajor: number
  protoMinor: number
  readdirplus: boolean
  readdirplusAuto: boolean
  writebackCache: boolean
  atomicOTrunc: boolean
  maxThreads: number
  /** The mount's read-ahead in KiB (/sys/class/bdi/MAJ:MIN/read_ahead_kb), null when unknown. */
  readAheadKb: number | null
}

export type Fuse3LogLevel = 'info' | 'warn' | 'error'

export interface Fuse3Init {
  /** The fsname shown by mount/df (default 'ddfs'). */
  fsname?: string
  /** Seconds the kernel keeps attributes and names (default 1 each). */
  attrTimeout?: number
  entryTimeout?: number
  /** Largest write request (default 1 MiB, the most libfuse 3 takes). */
  maxWrite?: number
  /**
   * The kernel's writeback cache (default off): writes are gathered in the page cache and sent
   * later. Off by default because it makes the kernel trust its own file sizes over getattr's,
   * so a file another mount replaced keeps its old size here (see README, Mount).
   */
  writebackCache?: boolean
  /** Keep a file's pages across opens while its size and mtime are unchanged (default true). */
  autoCache?: boolean
  /**
   * Answer an aligned write to a handle's O_DIRECT descriptor once its bytes are copied, and
   * write it from the binding's own threads (default true): see FsOps.written.
   */
  writeBehind?: boolean
  /** A request JS has not answered after this long is answered EIO (default 300 s; 0: never). */
  requestTimeoutMs?: number
  /** libfuse worker threads, hence requests in flight at once (default 16). */
  maxThreads?: number
  /** The mount's read-ahead in KiB, set through sysfs when allowed (default 1024: 1 MiB reads). */
  readAheadKb?: number
  /**
   * getxattr of names without this prefix is answered without asking JS (default: every name
   * goes to JS): ENODATA for other user.* names, EOPNOTSUPP for other namespaces (security.*,
   * system.*: `ls -l` asks for two per file until it is told they are not supported).
   */
  xattrPrefix?: string
  /** libfuse's own request trace on stderr. */
  debug?: boolean
  log?: (level: Fuse3LogLevel, event: string, fields: Record<string, unknown>) => void
  /** Called once when the mount went away without close() (fusermount -u from outside). */
  onEnded?: () => void
}

// Request kinds, as native/fuse3.cc numbers them.
const OP = {
  init: 0, getattr: 1, readdir: 2, open: 3, create: 4, read: 5, write: 6, flush: 7, fsync: 8, release: 9,
  truncate: 10, unlink: 11, rename: 12, getxattr: 13, listxattr: 14, statfs: 15, utimens: 16, chmod: 17, chown: 18,
  mkdir: 19, rmdir: 20, symlink: 21, link: 22, mknod: 23, setxattr: 24, removexattr: 25, ended: 26, timedout: 27,
  written: 28
} as const
const OP_NAMES = Object.keys(OP) as Array<keyof typeof OP>

type Dispatch = (op: number, id: number, path: string, fh: number, a: number, b: number, path2: string | undefined, data: Buffer | undefined) => void

interface NativeMount {
  reply: (id: number, result: number, value?: unknown, value2?: unknown, value3?: unknown) => boolean
  close: () => Promise<number>
  info: () => (Omit<Fuse3Info, 'readAheadKb'> & { requests: Record<string, number> }) | null
  /** Returns the writes JS has not heard of yet, as [fh, pos, bytes] triples. */
  stopDirectWrites: () => Array<[number, number, number]>
  keepWrites: (spool: number, on: boolean) => void
  takeWritten: (spool: number, pos: number, dest: Buffer) => number
}
type NativeMountCtor = new (mountpoint: string, options: Record<string, unknown>, ops: string[], dispatch: Dispatch) => NativeMount
const NativeFuse3Mount = addon.Fuse3Mount as NativeMountCtor

const STAT_FIELDS = 9
const INIT_TIMEOUT_MS = 10_000

export class Fuse3 {
  private native: NativeMount | null = null
  private opening: Promise<Fuse3Info> | null = null
  private closing: Promise<void> | null = null
  private initDone: (() => void) | null = null
  private fuseInfo: Fuse3Info | null = null
  private readonly uid = process.getuid?.() ?? 0
  private readonly gid = process.getgid?.() ?? 0

  constructor (readonly mountpoint: string, private readonly ops: FsOps, private readonly init: Fuse3Init = {}) {}

  get info (): Fuse3Info | null { return this.fuseInfo }

  /** Requests handed to the handlers so far, by operation (those the binding answers itself are not counted). */
  requests (): Record<string, number> {
    return this.native?.info()?.requests ?? {}
  }

  /** The writes behind this binding keeps for a reader that follows a file (none before mounting or after closing). */
  readonly kept: KeptWrites = {
    keep: (spool, on) => { this.native?.keepWrites(spool, on) },
    take: (spool, pos, dest) => this.native?.takeWritten(spool, pos, dest) ?? 0
  }

  /** Mounts; resolves once the kernel's INIT is answered and the mount point answers a stat. */
  ready (): Promise<Fuse3Info> {
    this.opening ??= this.open()
    return this.opening
  }

  private async open (): Promise<Fuse3Info> {
    const ops = (Object.keys(this.ops) as FsOpName[]).filter((k) => typeof this.ops[k] === 'function')
    const inited = new Promise<void>((resolve) => { this.initDone = resolve })
    try {
      this.native = new NativeFuse3Mount(this.mountpoint, {
        fsname: this.init.fsname ?? 'ddfs',
        attrTimeout: this.init.attrTimeout ?? 1,
        entryTimeout: this.init.entryTimeout ?? 1,
        maxWrite: this.init.maxWrite ?? 1024 * 1024,
        writebackCache: this.init.writebackCache === true,
        autoCache: this.init.autoCache !== false,
        writeBehind: this.init.writeBehind !== false,
        requestTimeoutMs: this.init.requestTimeoutMs ?? 300_000,
        maxThreads: this.init.maxThreads ?? 16,
        debug: this.init.debug === true,
        xattrPrefix: this.init.xattrPrefix ?? ''
      }, ops, this.dispatch)
    } catch (err) {
      throw DdfsError.IO(`cannot mount ${this.mountpoint}: ${(err as Error).message}`)
    }
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([inited, new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(DdfsError.IO(`the kernel did not initialize the mount at ${this.mountpoint}`)), INIT_TIMEOUT_MS)
      })])
      await fs.promises.stat(this.mountpoint)
    } catch (err) {
      await this.close()
      throw err
    } finally {
      clearTimeout(timer)
    }
    const info = { ...(this.native.info() as Omit<Fuse3Info, 'readAheadKb'>), readAheadKb: this.setReadAhead() }
    this.fuseInfo = info
    return info
  }

  /**
   * The kernel asks for reads of at most the mount's read-ahead (128 KiB unless raised), however
   * large max_read is; the limit is per mount in sysfs and only root may raise it.
   */
  private setReadAhead (): number | null {
    const dev = mountDevice(this.mountpoint)
    if (dev === null) return null
    const file = `/sys/class/bdi/${dev}/read_ahead_kb`
    const want = this.init.readAheadKb ?? 1024
    try { fs.writeFileSync(file, String(want)) } catch {}
    try { return Number(fs.readFileSync(file, 'utf8').trim()) } catch { return null }
  }

  /**
   * Every later write goes to the `write` handler (FsOps.writeTarget no longer applies); returns
   * once no write of the binding's own is running or unwritten, each reported through `written`.
   * For a file system about to close descriptors while the mount is still up.
   */
  stopDirectWrites (): void {
    for (const [fh, pos, bytes] of this.native?.stopDirectWrites() ?? []) this.written(fh, pos, bytes)
  }

  /** Answers requests in flight with EIO, unmounts, joins libfuse's threads. Idempotent. */
  close (): Promise<void> {
    this.closing ??= (async () => {
      const native = this.native
      if (native === null) return
      const answered = await native.close()
      if (answered > 0) this.log('warn', 'fuse-closed-in-flight', { mountpoint: this.mountpoint, answeredEio: answered })
    })()
    return this.closing
  }

  private log (level: Fuse3LogLevel, event: string, fields: Record<string, unknown>): void {
    this.init.log?.(level, event, fields)
  }

  // ---- requests -------------------------------------------------------------------------------

  private written (fh: number, pos: number, bytes: number): void {
    try {
      this.ops.written?.(fh, pos, bytes)
    } catch (err) {
      this.log('error', 'fuse-handler-failed', { op: 'written', error: err instanceof Error ? err.stack ?? err.message : String(err) })
    }
  }

  private readonly dispatch: Dispatch = (op, id, p, fh, a, b, path2, data) => {
    if (op === OP.init) { this.initDone?.(); return }
    if (op === OP.ended) { this.ended(); return }
    if (op === OP.written) { this.written(fh, a, b); return }
    if (op === OP.timedout) {
      this.log('error', 'fuse-request-timeout', { op: path2, path: p, ms: this.init.requestTimeoutMs ?? 300_000 })
      return
    }
    let value: unknown
    try {
      value = this.call(op, p, fh, a, b, path2, data)
    } catch (err) {
      this.fail(id, op, p, err)
      return
    }
    if (value instanceof Promise) {
      value.then((v) => this.answer(id, op, p, fh, v), (err) => this.fail(id, op, p, err))
    } else {
      this.answer(id, op, p, fh, value)
    }
  }

  private ended (): void {
    if (this.closing !== null) return
    this.log('info', 'fuse-unmounted-outside', { mountpoint: this.mountpoint })
    this.close().catch(() => {})
    this.init.onEnded?.()
  }

  /** Runs the handler of one request; its value is the reply. */
  private call (op: number, p: string, fh: number, a: number, b: number, path2: string | undefined, data: Buffer | undefined): unknown {
    const o = this.ops
    const file = fh < 0 ? null : fh
    switch (op) {
      case OP.getattr: return o.getattr?.(p, file)
      case OP.readdir: return o.readdir?.(p)
      case OP.open: return o.open?.(p, a)
      case OP.create: return o.create?.(p, a, b)
      case OP.read: return o.read?.(p, fh, data as Buffer, a)
      case OP.write: return o.write?.(p, fh, data as Buffer, a)
      case OP.flush: return o.flush?.(p, fh)
      case OP.fsync: return o.fsync?.(p, fh, a !== 0)
      case OP.release: return o.release?.(p, fh)
      case OP.truncate: return o.truncate?.(p, a, file)
      case OP.unlink: return o.unlink?.(p)
      case OP.rename: return o.rename?.(p, path2 as string, a)
      case OP.getxattr: return o.getxattr?.(p, path2 as string)
      case OP.listxattr: return o.listxattr?.(p)
      case OP.statfs: return o.statfs?.(p)
      case OP.utimens: return o.utimens?.(p, a < 0 ? null : a, b < 0 ? null : b)
      case OP.chmod: return o.chmod?.(p, a)
      case OP.chown: return o.chown?.(p, a, b)
      case OP.mkdir: return o.mkdir?.(p, a)
      case OP.rmdir: return o.rmdir?.(p)
      case OP.symlink: return o.symlink?.(path2 as string, p)
      case OP.link: return o.link?.(p, path2 as string)
      case OP.mknod: return o.mknod?.(p, a, b)
      case OP.setxattr: return o.setxattr?.(p, path2 as string, data as Buffer, a)
      case OP.removexattr: return o.removexattr?.(p, path2 as string)
      default: throw Errno.ENOSYS
    }
  }

  /** Replies `result`, with where fh's writes may go from now on (FsOps.writeTarget). */
  private replyWithTarget (id: number, result: number, fh: number, stat?: number[]): void {
    const native = this.native as NativeMount
    const target = this.ops.writeTarget?.(fh) ?? null
    if (typeof target === 'number' || target === null) native.reply(id, result, target ?? -1, null, stat)
    else native.reply(id, result, target.fd, target.direct === null ? null : [target.direct, target.directFrom, target.spool ?? 0], stat)
  }

  /**
   * Create's answer carries the new file's attributes: libfuse asks for them right after, and the
   * binding answers that from these instead of another request (one fewer per file created).
   */
  private replyCreated (id: number, p: string, fh: number): void {
    let stat: FsStat | Promise<FsStat> | undefined
    try {
      stat = this.ops.getattr?.(p, fh)
    } catch {
      stat = undefined  // libfuse's own getattr asks again, and that answer counts
    }
    if (!(stat instanceof Promise)) { this.replyWithTarget(id, fh, fh, stat === undefined ? undefined : this.statArray(stat)); return }
    stat.then((s) => this.replyWithTarget(id, fh, fh, this.statArray(s)), () => this.replyWithTarget(id, fh, fh))
      .catch((err) => this.fail(id, OP.create, p, err))
  }

  private answer (id: number, op: number, p: string, fh: number, v: unknown): void {
    const native = this.native as NativeMount
    try {
      switch (op) {
        case OP.getattr: native.reply(id, 0, this.statArray(v as FsStat)); return
        case OP.readdir: {
          const dir = v as FsDir
          let stats: Float64Array | undefined
          if (dir.stats !== undefined) {
            stats = new Float64Array(dir.stats.length * STAT_FIELDS)
            dir.stats.forEach((s, i) => stats?.set(this.statArray(s), i * STAT_FIELDS))
          }
          native.reply(id, 0, dir.names, stats)
          return
        }
        case OP.open: {
          const fh = checkCount(v)
          this.replyWithTarget(id, fh, fh)
          return
        }
        case OP.create: this.replyCreated(id, p, checkCount(v)); return
        // A write may have moved its file to a spool (FsOps.writeTarget): later ones go there.
        case OP.write: this.replyWithTarget(id, checkCount(v), fh); return
        case OP.read:
          native.reply(id, checkCount(v))
          return
        case OP.getxattr: native.reply(id, 0, v ?? null); return
        case OP.listxattr: native.reply(id, 0, v); return
        case OP.statfs: {
          const s = v as FsStatfs
          native.reply(id, 0, [s.bsize, s.frsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.favail, s.fsid, s.flag, s.namemax])
          return
        }
        default: native.reply(id, 0)
      }
    } catch (err) {
      this.fail(id, op, p, err)
    }
  }

  private fail (id: number, op: number, p: string, err: unknown): void {
    if (isUnexpected(err)) this.log('error', 'fuse-handler-failed', { op: OP_NAMES[op], path: p, error: err instanceof Error ? err.stack ?? err.message : String(err) })
    this.native?.reply(id, errnoOf(err))
  }

  private statArray (s: FsStat): number[] {
    const mtime = s.mtime
    return [s.mode, s.nlink ?? 1, s.uid ?? this.uid, s.gid ?? this.gid, s.size, s.atime ?? mtime, mtime, s.ctime ?? mtime, s.ino ?? 0]
  }
}

/** A handler's count (bytes, a file handle) checked: a non-negative integer. */
function checkCount (v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw new TypeError(`a count or file handle must be a non-negative integer, got ${String(v)}`)
  return v
}

/** MAJ:MIN of the file system mounted at `mp` (the topmost), from /proc/self/mountinfo. */
export function mountDevice (mp: string): string | null {
  let found: string | null = null
  const want = path.resolve(mp)
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ')
    if (f.length < 5) continue
    const at = f[4].replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)))
    if (at === want) found = f[2]
  }
  return found
}
