// The subset of fuse-native 2.2 that src/mount uses (the package ships no types).
declare module 'fuse-native' {
  type Cb<T = never> = (err: number, value?: T) => void
  export interface Stat {
    mode: number, size: number, uid?: number, gid?: number, nlink?: number, ino?: number,
    atime: Date, mtime: Date, ctime: Date, blksize?: number, blocks?: number
  }
  export interface Statfs {
    bsize: number, frsize: number, blocks: number, bfree: number, bavail: number,
    files: number, ffree: number, favail: number, fsid: number, flag: number, namemax: number
  }
  export interface Ops {
    init?: (cb: (err: number) => void) => void
    statfs?: (path: string, cb: Cb<Statfs>) => void
    getattr?: (path: string, cb: Cb<Stat>) => void
    readdir?: (path: string, cb: (err: number, names?: string[], stats?: Stat[]) => void) => void
    open?: (path: string, flags: number, cb: Cb<number>) => void
    create?: (path: string, mode: number, cb: Cb<number>) => void
    read?: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (result: number) => void) => void
    write?: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (result: number) => void) => void
    flush?: (path: string, fd: number, cb: (err: number) => void) => void
    fsync?: (path: string, fd: number, datasync: boolean, cb: (err: number) => void) => void
    release?: (path: string, fd: number, cb: (err: number) => void) => void
    truncate?: (path: string, size: number, cb: (err: number) => void) => void
    ftruncate?: (path: string, fd: number, size: number, cb: (err: number) => void) => void
    unlink?: (path: string, cb: (err: number) => void) => void
    rename?: (src: string, dest: string, cb: (err: number) => void) => void
    getxattr?: (path: string, name: string, position: number, cb: (err: number, value?: Buffer | null) => void) => void
    listxattr?: (path: string, cb: (err: number, list?: string[]) => void) => void
    setxattr?: (path: string, name: string, value: Buffer, position: number, flags: number, cb: (err: number) => void) => void
    removexattr?: (path: string, name: string, cb: (err: number) => void) => void
    utimens?: (path: string, atime: number, mtime: number, cb: (err: number) => void) => void
    chmod?: (path: string, mode: number, cb: (err: number) => void) => void
    chown?: (path: string, uid: number, gid: number, cb: (err: number) => void) => void
    mkdir?: (path: string, mode: number, cb: (err: number) => void) => void
    rmdir?: (path: string, cb: (err: number) => void) => void
    symlink?: (src: string, dest: string, cb: (err: number) => void) => void
    link?: (src: string, dest: string, cb: (err: number) => void) => void
    mknod?: (path: string, mode: number, dev: number, cb: (err: number) => void) => void
  }
  export interface FuseOptions {
    force?: boolean, mkdir?: boolean, timeout?: number | false, debug?: boolean, fsname?: string,
    maxRead?: number, attrTimeout?: number, entryTimeout?: number, autoCache?: boolean, kernelCache?: boolean,
    defaultPermissions?: boolean, allowOther?: boolean, uid?: number, gid?: number
  }
  class Fuse {
    constructor (mnt: string, ops: Ops, opts?: FuseOptions)
    mount (cb: (err: Error | null) => void): void
    unmount (cb: (err: Error | null) => void): void
    static unmount (mnt: string, cb: (err: Error | null) => void): void
    static isConfigured (cb: (err: Error | null, yes: boolean) => void): void
    static [errno: string]: number | unknown
  }
  export default Fuse
}
