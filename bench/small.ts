// bench:small — small files through the mount's own file logic (src/mount/ddfs-fs.ts and the
// client library under it), without the kernel: a 6-node 4+2 local cluster (ddfs up, file-backed
// devices), N x 4 KiB files each created, written and closed the way the kernel drives a FUSE
// file system for `cp` (getattr, create, write, flush, release), at 1 and at 32 files in flight;
// then read cold (getattr, open, read, release) after the nodes restarted (no manifest cache,
// no catalog, no connections) and the mount's listing expired; then listed (readdir) and removed.
// For each phase: files/s and CPU seconds per 1,000 files, summed over every node process (from
// /proc/PID/stat) and this process (the mount's side). bench:fuse has the end-to-end figure
// through the kernel.
// Prints `RESULT <name> <value> <unit>`. DDFS_BENCH_FILES sets N (default 2000),
// DDFS_BENCH_DIR the directory (default /var/tmp), DDFS_BENCH_BASE_PORT the ports (default 15100).
import fs from 'node:fs'
import path from 'node:path'
import crypto from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { Errno, type FsOps } from '../src/mount/fs-ops'
import { NodeLink } from '../src/mount/node-link'
import { DdfsFs } from '../src/mount/ddfs-fs'
import { Logger } from '../src/log'

const ROOT = path.join(__dirname, '..', '..')
const BIN = path.join(ROOT, 'bin', 'ddfs')
const FILES = Number(process.env.DDFS_BENCH_FILES ?? 2000)
const BASE = Number(process.env.DDFS_BENCH_BASE_PORT ?? 15100)
const TICK = 100  // USER_HZ: /proc/PID/stat counts CPU time in these

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

function result (name: string, value: number, unit: string): void {
  console.log(`RESULT ${name} ${value.toFixed(unit === 's' || unit === 'cores' ? 3 : 1)} ${unit}`)
}

function ddfs (args: string[]): string {
  return execFileSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, DDFS_CLUSTER: undefined } })
}

/** CPU seconds (user + system) of a process so far, from /proc/PID/stat. */
function cpuOf (pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / TICK
  } catch {
    return 0
  }
}

let nodePids: number[] = []
function cpuNow (): { nodes: number, client: number } {
  const u = process.cpuUsage()
  return { nodes: nodePids.reduce((a, p) => a + cpuOf(p), 0), client: (u.user + u.system) / 1e6 }
}

type Ops = Required<FsOps>

async function createFile (ops: Ops, name: string, data: Buffer): Promise<void> {
  const p = `/${name}`
  const exists = await Promise.resolve(ops.getattr(p, null)).then(() => true, (err: unknown) => {
    if (Math.abs(err as number) !== Errno.ENOENT) throw err
    return false
  })
  if (exists) throw new Error(`${name} exists`)
  const fh = await ops.create(p, 0o644, fs.constants.O_WRONLY)
  const n = await ops.write(p, fh, data, 0)
  if (n !== data.length) throw new Error(`write of ${name}: ${n}`)
  await ops.flush(p, fh)
  await ops.release(p, fh)
}

async function readFile (ops: Ops, name: string, expect: Buffer): Promise<void> {
  const p = `/${name}`
  await ops.getattr(p, null)
  const fh = await ops.open(p, fs.constants.O_RDONLY)
  const buf = Buffer.alloc(128 * 1024)
  const n = await ops.read(p, fh, buf, 0)
  if (n !== expect.length || !buf.subarray(0, n).equals(expect)) throw new Error(`${name} read back ${n} bytes, not what was written`)
  await ops.release(p, fh)
}

/** Runs `fn` over every name with `inflight` at once; returns files/s and CPU s per 1,000 files. */
async function phase (label: string, names: string[], inflight: number, fn: (name: string) => Promise<void>): Promise<void> {
  const c0 = cpuNow()
  const t0 = process.hrtime.bigint()
  let next = 0
  await Promise.all(Array.from({ length: inflight }, async () => {
    while (next < names.length) await fn(names[next++])
  }))
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const c1 = cpuNow()
  result(`${label}_files_per_s`, names.length / seconds, 'files/s')
  result(`${label}_cpu_nodes_per_1000`, (c1.nodes - c0.nodes) * 1000 / names.length, 's')
  result(`${label}_cpu_client_per_1000`, (c1.client - c0.client) * 1000 / names.length, 's')
}

async function main (): Promise<void> {
  const dir = fs.mkdtempSync(path.join(process.env.DDFS_BENCH_DIR ?? '/var/tmp', 'ddfs-bench-small-'))
  const cluster = path.join(dir, 'cluster')
  const spool = path.join(dir, 'spool')
  fs.mkdirSync(spool)
  const up = (): void => {
    const report = JSON.parse(ddfs(['up', '--nodes', '6', '--dir', cluster, '--base-port', String(BASE), '--device-size', '1G', '--no-mount', '--json']))
    nodePids = (report.nodes as Array<{ pid: number }>).map((n) => n.pid)
  }
  // Every node stopped (its process gone: a store checkpoints at close) before they start again.
  const restart = async (): Promise<void> => {
    ddfs(['down', '--dir', cluster])
    for (let i = 0; i < 1200 && nodePids.some((p) => fs.existsSync(`/proc/${p}`)); i++) await sleep(100)
    up()
  }
  const log = new Logger(path.join(dir, 'mount.log'), 'bench-small')
  let link: NodeLink | null = null
  try {
    up()
    // What the nodes spend doing nothing (heartbeats, healing scans), beside the phases' figures.
    const idle0 = cpuNow()
    await sleep(5000)
    result('idle_cpu_nodes', (cpuNow().nodes - idle0.nodes) / 5, 'cores')
    const data = crypto.randomBytes(4096)
    for (const inflight of [1, 32]) {
      link = new NodeLink({ host: '127.0.0.1', port: BASE })
      await link.ready()
      const files = new DdfsFs(link, spool, log)
      const ops = files.ops() as Ops
      const names = Array.from({ length: FILES }, (_, i) => `small-${inflight}-${i}`)
      await phase(`create_4k_q${inflight}`, names, inflight, (n) => createFile(ops, n, data))
      // Cold: every node restarted (no manifest cache, no catalog in memory, no connections),
      // and a new mount (no listing).
      link.close()
      await restart()
      link = new NodeLink({ host: '127.0.0.1', port: BASE })
      await link.ready()
      const cold = new DdfsFs(link, spool, log)
      const readOps = cold.ops() as Ops
      await phase(`read_4k_cold_q${inflight}`, names, inflight, (n) => readFile(readOps, n, data))
      const t0 = process.hrtime.bigint()
      const listed = (await readOps.readdir('/')).names
      result(`list_q${inflight}`, Number(process.hrtime.bigint() - t0) / 1e9, 's')
      if (listed.filter((n) => n.startsWith(`small-${inflight}-`)).length !== FILES) throw new Error(`listed ${listed.length} files, ${FILES} created`)
      await phase(`delete_4k_q${inflight}`, names, inflight, async (n) => { await readOps.unlink(`/${n}`) })
      link.close()
      link = null
    }
  } finally {
    link?.close()
    try { ddfs(['down', '--dir', cluster]) } catch {}
    if (process.env.DDFS_BENCH_KEEP === undefined) fs.rmSync(dir, { recursive: true, force: true })
    else console.log(`kept ${dir}`)
  }
}

main().catch((err) => { console.error(err); process.exitCode = 1 })
