// The old binding, fuse-native 2.2.6 (libfuse 2), serving the same FsOps as the libfuse 3
// binding: kept so both can be measured in one run (`DDFS_MOUNT_BINDING=fuse-native`,
// bench/fuse.ts). 128 KiB writes at most (big_writes), no readdirplus.
import Fuse, { type Ops, type Stat } from 'fuse-native'
import { DdfsError } from '../errors'
import { Errno, errnoOf, type FsOps, type FsStat } from './fs-ops'

type R<T> = T | Promise<T>

/** Calls `fn` and hands its value, or its errno (negative), to one of the two callbacks. */
function settle<T> (fn: () => R<T>, ok: (v: T) => void, fail: (errno: number) => void): void {
  let v: R<T>
  try {
    v = fn()
  } catch (err) {
    fail(errnoOf(err))
    return
  }
  if (v instanceof Promise) v.then(ok, (err) => fail(errnoOf(err)))
  else ok(v)
}

function toStat (s: FsStat): Stat {
  const t = (ms: number | undefined): Date => new Date(ms ?? s.mtime)
  return {
    mode: s.mode, size: s.size, nlink: s.nlink ?? 1, uid: s.uid ?? process.getuid?.() ?? 0, gid: s.gid ?? process.getgid?.() ?? 0,
    atime: t(s.atime), mtime: t(s.mtime), ctime: t(s.ctime), blksize: 4096, blocks: Math.ceil(s.size / 512)
  }
}

function toOps (ops: FsOps): Ops {
  // An operation the file system lacks answers ENOSYS, as libfuse would.
  const nosys = (): never => { throw Errno.ENOSYS }
  const o = new Proxy(ops, { get: (t, k) => t[k as keyof FsOps] ?? nosys }) as Required<FsOps>
  const status = (cb: (err: number) => void) => [() => cb(0), (e: number) => cb(e)] as const
  return {
    init: (cb) => cb(0),
    statfs: (p, cb) => settle(() => o.statfs(p), (s) => cb(0, s), (e) => cb(e)),
    getattr: (p, cb) => settle(() => o.getattr(p, null), (s) => cb(0, toStat(s)), (e) => cb(e)),
    readdir: (p, cb) => settle(() => o.readdir(p), (d) => cb(0, d.names, d.stats?.map(toStat)), (e) => cb(e)),
    open: (p, flags, cb) => settle(() => o.open(p, flags), (fh) => cb(0, fh), (e) => cb(e)),
    create: (p, mode, cb) => settle(() => o.create(p, mode, 0), (fh) => cb(0, fh), (e) => cb(e)),
    read: (p, fd, buf, len, pos, cb) => settle(() => o.read(p, fd, buf.subarray(0, len), pos), (n) => cb(n), (e) => cb(e)),
    write: (p, fd, buf, len, pos, cb) => settle(() => o.write(p, fd, buf.subarray(0, len), pos), (n) => cb(n), (e) => cb(e)),
    flush: (p, fd, cb) => settle(() => o.flush(p, fd), ...status(cb)),
    fsync: (p, fd, d, cb) => settle(() => o.fsync(p, fd, d), ...status(cb)),
    release: (p, fd, cb) => settle(() => o.release(p, fd), ...status(cb)),
    truncate: (p, size, cb) => settle(() => o.truncate(p, size, null), ...status(cb)),
    ftruncate: (p, fd, size, cb) => settle(() => o.truncate(p, size, fd), ...status(cb)),
    unlink: (p, cb) => settle(() => o.unlink(p), ...status(cb)),
    rename: (src, dest, cb) => settle(() => o.rename(src, dest, 0), ...status(cb)),
    getxattr: (p, name, _pos, cb) => settle(() => o.getxattr(p, name), (v) => cb(0, v), (e) => cb(e)),
    listxattr: (p, cb) => settle(() => o.listxattr(p), (v) => cb(0, v), (e) => cb(e)),
    utimens: (p, _a, _m, cb) => settle(() => o.utimens(p, null, null), ...status(cb)),
    chmod: (p, mode, cb) => settle(() => o.chmod(p, mode), ...status(cb)),
    chown: (p, uid, gid, cb) => settle(() => o.chown(p, uid, gid), ...status(cb)),
    setxattr: (p, name, value, _pos, flags, cb) => settle(() => o.setxattr(p, name, value, flags), ...status(cb)),
    mkdir: (p, mode, cb) => settle(() => o.mkdir(p, mode), ...status(cb)),
    rmdir: (p, cb) => settle(() => o.rmdir(p), ...status(cb)),
    symlink: (src, dest, cb) => settle(() => o.symlink(src, dest), ...status(cb)),
    link: (src, dest, cb) => settle(() => o.link(src, dest), ...status(cb)),
    mknod: (p, mode, dev, cb) => settle(() => o.mknod(p, mode, dev), ...status(cb))
  }
}

export class FuseNativeMount {
  private readonly fuse: Fuse

  constructor (readonly mountpoint: string, ops: FsOps) {
    // big_writes + max_write: 128 KiB write requests instead of 4 KiB ones (platform.md: ~55 MB/s
    // otherwise); fuse-native has no option for it, its fsname value passes it through.
    this.fuse = new Fuse(mountpoint, toOps(ops), {
      fsname: 'ddfs,big_writes,max_write=131072', timeout: false, attrTimeout: 1, entryTimeout: 1, autoCache: true
    })
  }

  async ready (): Promise<void> {
    await new Promise<void>((resolve, reject) => this.fuse.mount((err) => err !== null && err !== undefined ? reject(DdfsError.IO(`cannot mount ${this.mountpoint}: ${err.message}`)) : resolve()))
  }

  async close (): Promise<void> {
    await new Promise<void>((resolve) => this.fuse.unmount(() => resolve()))
  }
}
