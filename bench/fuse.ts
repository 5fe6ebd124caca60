// bench:fuse — the mount of a local 6-node 4+2 cluster (ddfs up + ddfs mount) against a local
// ext4 directory on the same disk, in the same run, with the same tools:
//   1 GiB sequential write (dd bs=1M conv=fsync) and read after dropping caches (dd bs=1M);
//   1 GiB copied in with cp (its own write size: st_blksize), then synced
//   2,000 x 4 KiB files: created, read cold, listed (ls -l, cold), deleted (one process, sync calls),
//   after a ramp-up of 1,000 files created and deleted: a fresh node's request paths are still
//   being compiled by V8 during its first creates (they cost ~1.6x the CPU of later ones). The
//   ramp-up's own rate is printed too (RESULT *_create_4k_first), so the cold start stays in view.
// Prints `RESULT <name> <value> <unit>` lines and each ddfs figure as a ratio of ext4's.
// DDFS_BENCH_SMALL_ONLY=1 runs the small-file part alone.
// DDFS_BENCH_DIR picks the directory (default /var/tmp), DDFS_BENCH_BASE_PORT the cluster's ports
// (default 8800). DDFS_BENCH_FUSE_BINDINGS=in-node,native,fuse-native measures each kind of mount
// in turn on the same cluster in the same run (RESULT ddfs_in_node_..., ddfs_native_...): in-node
// (the default) is served by node 0 itself (ddfs mount --in-node, the libfuse 3 binding), native a
// mount process of its own through the libfuse 3 binding, fuse-native one through fuse-native;
// the VM's speed drifts within the hour, so only figures of one run compare.
import fs from 'node:fs'
import path from 'node:path'
import crypto from 'node:crypto'
import { execFileSync, spawnSync } from 'node:child_process'

const GiB = 1024 * 1024 * 1024
const FILES = 2000
const RAMP_FILES = 1000
const ROOT = path.join(__dirname, '..', '..')
const BIN = path.join(ROOT, 'bin', 'ddfs')
const BASE = Number(process.env.DDFS_BENCH_BASE_PORT ?? 8800)
const BINDINGS = (process.env.DDFS_BENCH_FUSE_BINDINGS ?? 'in-node').split(',').map((b) => b.trim()).filter((b) => b !== '')
/** DDFS_BENCH_SMALL_ONLY=1: the small-file part alone (no 1 GiB write and read). */
const SMALL_ONLY = process.env.DDFS_BENCH_SMALL_ONLY === '1'

function result (name: string, value: number, unit: string): void {
  console.log(`RESULT ${name} ${value.toFixed(unit === 's' || unit === 'x' ? 3 : 1)} ${unit}`)
}

function dropCaches (): void {
  spawnSync('sync')
  try { fs.writeFileSync('/proc/sys/vm/drop_caches', '3') } catch {}
}

function seconds (fn: () => void): number {
  const t0 = process.hrtime.bigint()
  fn()
  return Number(process.hrtime.bigint() - t0) / 1e9
}

function sh (cmd: string): void {
  const r = spawnSync('bash', ['-c', cmd], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 600_000 })
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`)
}

interface Figures { write: number, read: number, copy: number, createFirst: number, create: number, readFiles: number, ls: number, del: number }

function measure (dir: string, src: string, settle: () => void): Figures {
  let write = NaN
  let read = NaN
  let copy = NaN
  if (!SMALL_ONLY) {
    const big = path.join(dir, 'big.bin')
    sh(`cat ${src} > /dev/null`)  // the source from the page cache, for both
    write = GiB / 1e6 / seconds(() => sh(`dd if=${src} of=${big} bs=1M conv=fsync status=none`))
    dropCaches()
    settle()
    read = GiB / 1e6 / seconds(() => sh(`dd if=${big} of=/dev/null bs=1M status=none`))
    fs.rmSync(big)
    const copied = path.join(dir, 'copy.bin')
    copy = GiB / 1e6 / seconds(() => sh(`cp ${src} ${copied} && sync ${copied}`))
    fs.rmSync(copied)
  }
  const small = crypto.randomBytes(4096)
  const ramp = Array.from({ length: RAMP_FILES }, (_, i) => path.join(dir, `ramp-${i}`))
  const createFirst = RAMP_FILES / seconds(() => { for (const n of ramp) fs.writeFileSync(n, small) })
  for (const n of ramp) fs.unlinkSync(n)
  const names = Array.from({ length: FILES }, (_, i) => path.join(dir, `small-${i}`))
  const create = FILES / seconds(() => { for (const n of names) fs.writeFileSync(n, small) })
  dropCaches()
  settle()
  const ls = seconds(() => sh(`ls -l ${dir} > /dev/null`))
  dropCaches()
  settle()
  const readFiles = FILES / seconds(() => { for (const n of names) if (fs.readFileSync(n).length !== 4096) throw new Error(`${n}: short read`) })
  const del = FILES / seconds(() => { for (const n of names) fs.unlinkSync(n) })
  return { write, read, copy, createFirst, create, readFiles, ls, del }
}

function main (): void {
  const dir = fs.mkdtempSync(path.join(process.env.DDFS_BENCH_DIR ?? '/var/tmp', 'ddfs-bench-fuse-'))
  const cluster = path.join(dir, 'cluster')
  const mnt = path.join(dir, 'mnt')
  const ext4 = path.join(dir, 'ext4')
  fs.mkdirSync(mnt)
  fs.mkdirSync(ext4)
  try {
    const src = path.join(dir, 'src.bin')
    if (!SMALL_ONLY) sh(`head -c 64M /dev/urandom > ${src}.part && for i in $(seq 16); do cat ${src}.part; done > ${src} && rm ${src}.part`)
    const local = measure(ext4, src, () => {})
    execFileSync(process.execPath, [BIN, 'up', '--nodes', '6', '--dir', cluster, '--base-port', String(BASE), '--device-size', '2G', '--no-mount'])
    const rows: Array<[keyof Figures, string, string]> = [
      ['write', 'seq_write_1g', 'MB/s'], ['read', 'seq_read_1g', 'MB/s'], ['copy', 'cp_1g', 'MB/s'], ['createFirst', 'create_4k_first', 'files/s'], ['create', 'create_4k', 'files/s'],
      ['readFiles', 'read_4k_cold', 'files/s'], ['ls', 'ls_l_2000', 's'], ['del', 'delete_4k', 'files/s']
    ]
    const results: Array<[string, Figures]> = []
    for (const binding of BINDINGS) {
      const how = binding === 'in-node' ? ['--in-node'] : ['--log', path.join(cluster, `mount-${binding}.log`)]
      execFileSync(process.execPath, [BIN, 'mount', mnt, '-p', String(BASE), ...how], { env: { ...process.env, DDFS_MOUNT_BINDING: binding === 'in-node' ? 'native' : binding } })
      try {
        // The mount keeps its listing for 1 s: wait that out so "cold" is cold for it too.
        results.push([BINDINGS.length === 1 ? 'ddfs' : `ddfs_${binding.replace(/-/g, '_')}`, measure(mnt, src, () => sh('sleep 1.1'))])
      } finally {
        spawnSync(process.execPath, [BIN, 'umount', mnt])
      }
    }
    for (const [key, name, unit] of rows) {
      if (Number.isNaN(local[key])) continue
      result(`ext4_${name}`, local[key], unit)
      for (const [label, ddfs] of results) {
        result(`${label}_${name}`, ddfs[key], unit)
        result(`${label}_${name}_vs_ext4`, key === 'ls' ? local[key] / ddfs[key] : ddfs[key] / local[key], 'x')
      }
    }
  } finally {
    spawnSync(process.execPath, [BIN, 'umount', mnt])
    spawnSync(process.execPath, [BIN, 'down', '--dir', cluster])
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main()
