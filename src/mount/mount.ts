// A mount's lifecycle: recover a stale mount point, connect to the node, mount through the
// libfuse 3 binding (native/fuse3.cc; DDFS_MOUNT_BINDING=fuse-native for the old libfuse 2 one),
// and unmount cleanly (open files are committed first). One process per mount; `ddfs umount`
// finds it by the pid file named after the mount point.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import crypto from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { DdfsError } from '../errors'
import { runtimeDir } from '../node/paths'
import type { Logger } from '../log'
import type { StoreLink } from './store-link'
import { DdfsFs } from './ddfs-fs'
import { Fuse3 } from './fuse3'

/** What Mount needs of a FUSE binding. */
interface FuseBinding {
  ready: () => Promise<unknown>
  close: () => Promise<void>
  /** Writes the binding does itself (FsOps.writeTarget) stop: the descriptors are about to close. */
  stopDirectWrites?: () => void
}

export type MountBinding = 'native' | 'fuse-native'

/** The binding `ddfs mount` uses: DDFS_MOUNT_BINDING (native, the default, or fuse-native). */
export function mountBinding (): MountBinding {
  const b = process.env.DDFS_MOUNT_BINDING ?? 'native'
  if (b !== 'native' && b !== 'fuse-native') throw DdfsError.BAD_ARGUMENT(`DDFS_MOUNT_BINDING must be native or fuse-native, not ${b}`)
  return b
}

/**
 * A request the file system has not answered after this long is answered EIO (a close waits for
 * its file's commit: minutes for a large file on a slow cluster are not a hang).
 */
const REQUEST_TIMEOUT_MS = Number(process.env.DDFS_MOUNT_REQUEST_TIMEOUT_MS ?? 600_000)

export interface MountOptions {
  mountpoint: string
  /** The cluster: a NodeLink (a mount process of its own) or an InNodeLink (inside a node). */
  link: StoreLink
  log: Logger
  /** Where files being written are spooled (default a private dir under os.tmpdir()). */
  spoolDir?: string
  /** close() returns before the commit (fsync waits): faster, without close-to-open across mounts. */
  writeback?: boolean
  /** Served inside a node's process (`ddfs umount` unmounts it without stopping the process). */
  inNode?: boolean
  /** Called once after the mount went away from outside (fusermount -u) and was cleaned up. */
  onEnded?: () => void
}

/** The pid file of the process that serves the mount at `mountpoint` (a mount process, or a node). */
export function mountPidFile (mountpoint: string): string {
  const h = crypto.createHash('sha256').update(path.resolve(mountpoint)).digest('hex').slice(0, 16)
  return path.join(runtimeDir(), `mount-${h}.pid`)
}

/** The process that serves the mount at `mountpoint` (from its pid file), and whether it is a node. */
export function mountOwner (mountpoint: string): { pid: number, inNode: boolean } | null {
  let text: string
  try {
    text = fs.readFileSync(mountPidFile(mountpoint), 'utf8')
  } catch {
    return null
  }
  const m = /^(\d+)( node)?\n?$/.exec(text)
  return m === null ? null : { pid: Number(m[1]), inNode: m[2] !== undefined }
}

/** True when `mountpoint` is a FUSE mount whose process is gone ("Transport endpoint is not connected"). */
export function isStale (mountpoint: string): boolean {
  try {
    // statfs, not stat: stat can be answered from the kernel's attribute cache for a second
    // after the process died (a mount right after a kill -9 then failed in readdir with
    // ENOTCONN); statfs always goes to the file system.
    fs.statfsSync(mountpoint)
    return false
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOTCONN'
  }
}

/** Lazily unmounts `mountpoint` (for a stale mount, or when the process died). */
export function forceUnmount (mountpoint: string): void {
  for (const cmd of [['fusermount3', '-uz'], ['fusermount', '-uz'], ['umount', '-l']]) {
    try {
      execFileSync(cmd[0], [...cmd.slice(1), mountpoint], { stdio: 'ignore' })
      return
    } catch {}
  }
}

export class Mount {
  private stopping: Promise<void> | null = null

  private constructor (readonly mountpoint: string, private readonly fuse: FuseBinding, private readonly files: DdfsFs,
    private readonly link: StoreLink, private readonly spoolDir: string, private readonly log: Logger) {}

  static async start (opts: MountOptions): Promise<Mount> {
    const mp = path.resolve(opts.mountpoint)
    if (isStale(mp)) {
      opts.log.warn('stale-mount-recovered', { mountpoint: mp })
      forceUnmount(mp)
    }
    let st: fs.Stats
    try {
      st = fs.statSync(mp)
    } catch {
      throw DdfsError.NOT_FOUND(`mount point ${mp} does not exist; create it with: mkdir -p ${mp}`)
    }
    if (!st.isDirectory()) throw DdfsError.BAD_ARGUMENT(`mount point ${mp} is not a directory`)
    if (fs.readdirSync(mp).length > 0) throw DdfsError.BAD_ARGUMENT(`mount point ${mp} is not empty (or already mounted); unmount it with: ddfs umount ${mp}`)
    const link = opts.link
    await link.ready()
    // Every FUSE request waits for this process: on a machine whose cores the nodes keep busy,
    // answering promptly matters more than the nodes' throughput (measured: 1 GiB written
    // through the mount of a local 6-node cluster in 5.7 s at nice 0, 3.9-4.5 s at -10).
    try { os.setPriority(-10) } catch {}
    removeDeadSpools()
    const spoolDir = opts.spoolDir ?? fs.mkdtempSync(path.join(os.tmpdir(), `ddfs-spool-${process.pid}-`))
    fs.mkdirSync(spoolDir, { recursive: true, mode: 0o700 })
    const files = new DdfsFs(link, spoolDir, opts.log, opts.writeback === true)
    const binding = mountBinding()
    let fuse: FuseBinding
    let mount: Mount | null = null
    let options: Record<string, unknown> = {}
    if (binding === 'fuse-native') {
      // Loaded only when asked for: its prebuilt binary needs the system's libfuse.so.2.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { FuseNativeMount } = require('./fuse-native-binding') as typeof import('./fuse-native-binding')
      fuse = new FuseNativeMount(mp, files.ops())
      await fuse.ready()
    } else {
      const f3 = new Fuse3(mp, files.ops(), {
        // ddfs serves user.ddfs.* only; `ls -l` asks every file for two other names.
        xattrPrefix: 'user.ddfs.',
        requestTimeoutMs: REQUEST_TIMEOUT_MS,
        // Off unless asked for (for measurement): with it the kernel trusts its own size of a
        // cached file over getattr's, so a file another mount replaced keeps its old size here.
        writebackCache: process.env.DDFS_MOUNT_WRITEBACK_CACHE === '1',
        // DDFS_MOUNT_WRITE_BEHIND=0: every spool write is answered after it is written (for comparison).
        writeBehind: process.env.DDFS_MOUNT_WRITE_BEHIND !== '0',
        log: (level, event, fields) => opts.log[level](event, { mountpoint: mp, ...fields }),
        // What was written is committed, and the spool and pid file go, as at `ddfs umount`.
        onEnded: () => { mount?.stop().then(opts.onEnded, (err) => opts.log.error('unmount-failed', { mountpoint: mp, error: String(err) })) }
      })
      fuse = f3
      // DDFS_MOUNT_KEEP_WRITES=0: a following put reads every range back from the spool (for comparison).
      if (process.env.DDFS_MOUNT_KEEP_WRITES !== '0') files.useKeptWrites(f3.kept)
      const info = await f3.ready()
      options = { maxWrite: info.maxWrite, readAheadKb: info.readAheadKb, readdirplus: info.readdirplus, writebackCache: info.writebackCache, atomicOTrunc: info.atomicOTrunc, threads: info.maxThreads }
    }
    mount = new Mount(mp, fuse, files, link, spoolDir, opts.log)
    fs.mkdirSync(path.dirname(mountPidFile(mp)), { recursive: true, mode: 0o700 })
    fs.writeFileSync(mountPidFile(mp), `${process.pid}${opts.inNode === true ? ' node' : ''}\n`)
    opts.log.info('mounted', { mountpoint: mp, node: link.address, local: link.local, binding, ...options })
    return mount
  }

  /** Commits open files, unmounts, removes the spool and pid file. */
  stop (): Promise<void> {
    this.stopping ??= this.release()
    return this.stopping
  }

  private async release (): Promise<void> {
    // closeAll closes the spools while the mount is still up: a write arriving meanwhile must
    // not go to a closed descriptor (or one reused since) but to JS, which answers EBADF.
    this.fuse.stopDirectWrites?.()
    await this.files.closeAll()
    await this.fuse.close()
    if (isStale(this.mountpoint) || fs.existsSync(mountPidFile(this.mountpoint))) forceUnmountIfMounted(this.mountpoint)
    this.link.close()
    fs.rmSync(this.spoolDir, { recursive: true, force: true })
    fs.rmSync(mountPidFile(this.mountpoint), { force: true })
    this.log.info('unmounted', { mountpoint: this.mountpoint })
  }
}

/**
 * Spool directories of mount processes that died (kill -9): what they held was never committed
 * (a file is committed at close or fsync), so nothing would ever read it again.
 */
function removeDeadSpools (): void {
  for (const name of fs.readdirSync(os.tmpdir())) {
    const m = /^ddfs-spool-(\d+)-/.exec(name)
    if (m === null || fs.existsSync(`/proc/${m[1]}`)) continue
    fs.rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true })
  }
}

/** True when something is mounted at `mp` (as /proc/self/mounts lists it). */
export function isMounted (mp: string): boolean {
  return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === mp)
}

export function forceUnmountIfMounted (mp: string): void {
  if (isMounted(mp)) forceUnmount(mp)
}
