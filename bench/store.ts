// bench:store — the native store against the disk's own limit, in one run on one file-backed
// device on the main disk:
//   fio O_DIRECT 1 MiB sequential write and read (qd16): the limit
//   the store from TypeScript: one 1 GiB entry written and read; 10,000 x 4 KiB durable puts
//   ddfs put / get of a 1 GiB file through a running node (local socket)
// Prints `RESULT <name> <value> <unit>` lines. DDFS_BENCH_DIR picks the directory (default /var/tmp).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import crypto from 'node:crypto'
import { execFileSync, spawnSync } from 'node:child_process'
import { formatDevice, openDevice } from '../src/store/native-store'
import { allocAligned } from '../src/hash'
import { EntryKind } from '../src/store/types'

const GiB = 1024 * 1024 * 1024
const MiB = 1024 * 1024
const ROOT = path.join(__dirname, '..', '..')
const BIN = path.join(ROOT, 'bin', 'ddfs')

function result (name: string, value: number, unit: string): void {
  console.log(`RESULT ${name} ${value.toFixed(unit === 'ops/s' ? 0 : unit === 'MB/s' ? 1 : 2)} ${unit}`)
}

function fio (file: string, rw: 'write' | 'read'): number {
  const out = execFileSync('fio', ['--name=b', `--filename=${file}`, `--rw=${rw}`, '--bs=1M', '--direct=1', '--ioengine=libaio',
    '--iodepth=16', '--size=1G', '--output-format=json'], { encoding: 'utf8' })
  const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0]
  return job[rw].bw_bytes / 1e6
}

async function storeFigures (file: string): Promise<{ write: number, read: number, put4k: number }> {
  await formatDevice(file, { force: true })
  const store = await openDevice(file)
  const id = crypto.randomBytes(16)
  const key = { id, kind: EntryKind.Fragment, stripe: 0, index: 0 }
  // One 1 GiB entry: 4 MiB writes, 8 in flight, from aligned buffers.
  const piece = allocAligned(4 * MiB)
  crypto.randomFillSync(piece)
  let t = process.hrtime.bigint()
  const h = await store.beginWrite(key, GiB)
  const inflight = new Set<Promise<void>>()
  for (let off = 0; off < GiB; off += piece.length) {
    const p: Promise<void> = h.write(off, piece).finally(() => inflight.delete(p))
    inflight.add(p)
    if (inflight.size >= 8) await Promise.race(inflight)
  }
  await Promise.all(inflight)
  await h.commit()
  const write = GiB / 1e6 / (Number(process.hrtime.bigint() - t) / 1e9)
  t = process.hrtime.bigint()
  const reads = new Set<Promise<void>>()
  for (let off = 0; off < GiB; off += 4 * MiB) {
    const p: Promise<void> = store.read(key, off, 4 * MiB).then(() => undefined).finally(() => reads.delete(p))
    reads.add(p)
    if (reads.size >= 8) await Promise.race(reads)
  }
  await Promise.all(reads)
  const read = GiB / 1e6 / (Number(process.hrtime.bigint() - t) / 1e9)
  await store.removeId(id)
  // 10,000 x 4 KiB durable puts, 64 in flight.
  const small = crypto.randomBytes(4096)
  t = process.hrtime.bigint()
  const puts = new Set<Promise<unknown>>()
  for (let i = 0; i < 10_000; i++) {
    const p: Promise<unknown> = store.put({ id: crypto.randomBytes(16), kind: EntryKind.Fragment, stripe: 0, index: 0 }, small).finally(() => puts.delete(p))
    puts.add(p)
    if (puts.size >= 64) await Promise.race(puts)
  }
  await Promise.all(puts)
  const put4k = 10_000 / (Number(process.hrtime.bigint() - t) / 1e9)
  await store.close()
  return { write, read, put4k }
}

function ddfs (args: string[]): string {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`ddfs ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

function nodeFigures (dir: string, file: string): { put: number, get: number } {
  const port = 18000 + (process.pid % 1000)
  const addr = ['-s', '127.0.0.1', '-p', String(port)]
  const data = path.join(dir, 'node')
  ddfs(['dev', 'add', '-d', file, '-f', ...addr, '--data', data])
  ddfs(['node', 'start', ...addr, '--data', data, '--log', path.join(dir, 'node.log')])
  try {
    const input = path.join(dir, 'input.bin')
    const fd = fs.openSync(input, 'w')
    const chunk = crypto.randomBytes(8 * MiB)
    for (let i = 0; i < 128; i++) fs.writeSync(fd, chunk)
    fs.closeSync(fd)
    spawnSync('sh', ['-c', `cat ${input} > /dev/null`])  // the input in the page cache: measure ddfs, not the source disk
    let t = Date.now()
    const id = ddfs(['put', ...addr, '-f', input, '-q']).trim()
    const put = GiB / 1e6 / ((Date.now() - t) / 1000)
    t = Date.now()
    ddfs(['get', ...addr, '-i', id, '-f', path.join(dir, 'output.bin'), '-q'])
    const get = GiB / 1e6 / ((Date.now() - t) / 1000)
    return { put, get }
  } finally {
    spawnSync(process.execPath, [BIN, 'node', 'stop', ...addr])
  }
}

async function main (): Promise<void> {
  const dir = fs.mkdtempSync(path.join(process.env.DDFS_BENCH_DIR ?? '/var/tmp', 'ddfs-bench-'))
  const file = path.join(dir, 'device.img')
  try {
    fs.writeFileSync(file, '')
    fs.truncateSync(file, 3 * GiB)
    execFileSync('fallocate', ['-l', String(3 * GiB), file])
    console.log(`# bench:store on ${file} (${os.cpus().length} cores, ${os.cpus()[0]?.model ?? '?'})`)
    fio(file, 'write')  // first pass turns fallocate's unwritten extents into written ones, as for the store later
    const fioWrite = fio(file, 'write')
    const fioRead = fio(file, 'read')
    result('fio.write', fioWrite, 'MB/s')
    result('fio.read', fioRead, 'MB/s')
    const s = await storeFigures(file)
    result('store.write.1g', s.write, 'MB/s')
    result('store.read.1g', s.read, 'MB/s')
    result('store.put4k', s.put4k, 'ops/s')
    result('store.write.ratio', s.write / fioWrite, 'fio')
    result('store.read.ratio', s.read / fioRead, 'fio')
    const n = nodeFigures(dir, file)
    result('node.put.1g', n.put, 'MB/s')
    result('node.get.1g', n.get, 'MB/s')
    result('node.put.ratio', n.put / s.write, 'store')
    result('node.get.ratio', n.get / s.read, 'store')
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err) => { console.error(err); process.exitCode = 1 })
