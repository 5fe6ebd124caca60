// bench:cluster — 1 GiB put and get through the CLI on a local 6-node 4+2 cluster (ddfs up),
// beside plain local disk in the same run:
//   disk: dd of the same file with O_DIRECT writes, then O_DIRECT reads (the limit under it all)
//   ddfs put -p BASE (node 0 reads the file itself and spreads 6 fragments per stripe over the
//   6 nodes through the encrypted transport), ddfs get -p BASE (node 0 gathers 4 of 6)
// CPU seconds per GiB are summed over every process: the CLI and all node and bootstrap processes.
// Prints `RESULT <name> <value> <unit>` lines. DDFS_BENCH_DIR picks the directory (default /var/tmp),
// DDFS_BENCH_RUNS the repetitions (default 3; the median is reported).
import fs from 'node:fs'
import path from 'node:path'
import crypto from 'node:crypto'
import { execFileSync, spawnSync } from 'node:child_process'

const GiB = 1024 * 1024 * 1024
const ROOT = path.join(__dirname, '..', '..')
const BIN = path.join(ROOT, 'bin', 'ddfs')
const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }))
const RUNS = Number(process.env.DDFS_BENCH_RUNS ?? 3)
const BASE = 8600

function result (name: string, value: number, unit: string): void {
  console.log(`RESULT ${name} ${value.toFixed(unit === 'MB/s' ? 1 : 2)} ${unit}`)
}

/** user + system CPU seconds of a process so far (0 when it is gone). */
function cpuOf (pid: number): number {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(f[11]) + Number(f[12])) / TICK
  } catch {
    return 0
  }
}

/** Runs a command through bash and returns wall seconds and the CPU seconds it used. */
function timed (cmd: string): { seconds: number, cpu: number, out: string } {
  const t0 = process.hrtime.bigint()
  // bash reports its waited-for children's CPU (cutime + cstime) after the command ended.
  const r = spawnSync('bash', ['-c', `out=$(${cmd}) || exit 1; echo "$out"; cut -d' ' -f16,17 /proc/$$/stat`], { encoding: 'utf8' })
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`)
  const lines = r.stdout.trim().split('\n')
  const [cu, cs] = (lines.pop() as string).split(' ').map(Number)
  return { seconds, cpu: (cu + cs) / TICK, out: lines.join('\n') }
}

function dropCaches (): void {
  try { fs.writeFileSync('/proc/sys/vm/drop_caches', '3') } catch {}
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

function ddfs (args: string[]): string {
  return execFileSync(process.execPath, [BIN, ...args], { encoding: 'utf8' })
}

function main (): void {
  const dir = fs.mkdtempSync(path.join(process.env.DDFS_BENCH_DIR ?? '/var/tmp', 'ddfs-bench-cluster-'))
  const cluster = path.join(dir, 'cluster')
  const src = path.join(dir, 'src.bin')
  try {
    const chunk = crypto.randomBytes(64 * 1024 * 1024)
    const fd = fs.openSync(src, 'w')
    for (let i = 0; i < GiB / chunk.length; i++) fs.writeSync(fd, chunk)
    fs.closeSync(fd)

    // The machine's own limit, same file, same run.
    const diskOut = path.join(dir, 'disk.bin')
    const dw: number[] = []; const dr: number[] = []
    for (let r = 0; r < RUNS; r++) {
      dropCaches()
      dw.push(GiB / 1e6 / timed(`dd if=${src} of=${diskOut} bs=4M oflag=direct conv=fsync status=none`).seconds)
      dropCaches()
      dr.push(GiB / 1e6 / timed(`dd if=${diskOut} of=/dev/null bs=4M iflag=direct status=none`).seconds)
    }
    fs.rmSync(diskOut)
    result('disk_write_odirect', median(dw), 'MB/s')
    result('disk_read_odirect', median(dr), 'MB/s')

    ddfs(['up', '--nodes', '6', '--dir', cluster, '--base-port', String(BASE), '--device-size', '2G', '--no-mount'])
    const pids = [Number(fs.readFileSync(path.join(cluster, 'bootstrap.pid'), 'utf8'))]
    for (let i = 0; i < 6; i++) pids.push(Number(fs.readFileSync(path.join(cluster, `node${i}`, 'node.pid'), 'utf8')))
    const nodesCpu = (): number => pids.reduce((a, p) => a + cpuOf(p), 0)

    const puts: Array<{ mbs: number, cpu: number }> = []
    const gets: Array<{ mbs: number, cpu: number }> = []
    for (let r = 0; r < RUNS; r++) {
      dropCaches()
      let before = nodesCpu()
      const p = timed(`${process.execPath} ${BIN} put -p ${BASE} -f ${src} -q`)
      puts.push({ mbs: GiB / 1e6 / p.seconds, cpu: p.cpu + nodesCpu() - before })
      const id = p.out.trim()
      const out = path.join(dir, 'out.bin')
      dropCaches()
      before = nodesCpu()
      const g = timed(`${process.execPath} ${BIN} get -p ${BASE} -i ${id} -f ${out} -q`)
      gets.push({ mbs: GiB / 1e6 / g.seconds, cpu: g.cpu + nodesCpu() - before })
      if (execFileSync('cmp', [src, out]).length !== 0) throw new Error('get returned different bytes')
      fs.rmSync(out)
      ddfs(['delete', '-p', String(BASE), '-i', id])
      console.log(`run ${r + 1}: put ${puts[r].mbs.toFixed(0)} MB/s ${puts[r].cpu.toFixed(2)} CPU s; get ${gets[r].mbs.toFixed(0)} MB/s ${gets[r].cpu.toFixed(2)} CPU s`)
    }
    const put = median(puts.map((x) => x.mbs))
    const get = median(gets.map((x) => x.mbs))
    result('cluster6_put_1g', put, 'MB/s')
    result('cluster6_get_1g', get, 'MB/s')
    result('cluster6_put_cpu_per_gib', median(puts.map((x) => x.cpu)), 's')
    result('cluster6_get_cpu_per_gib', median(gets.map((x) => x.cpu)), 's')
    result('cluster6_put_vs_disk_write', put / median(dw), 'x')
    result('cluster6_get_vs_disk_read', get / median(dr), 'x')
  } finally {
    try { ddfs(['down', '--dir', cluster]) } catch {}
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main()
