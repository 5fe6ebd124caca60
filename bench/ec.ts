// bench:ec — Reed-Solomon encode and reconstruct (2 lost) on 1 MiB stripes, one thread, from
// TypeScript, beside a plain C program doing the same through ISA-L in the same run, and the
// object pipeline (hash + encode + fragment trailers) into memory. RESULT lines in GB/s.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import crypto from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { encodeSync, reconstructSync } from '../src/erasure/reed-solomon'
import { xxh64 } from '../src/hash'
import { writeTrailer, TRAILER_BYTES } from '../src/object/records'
import { LocalObjectStore } from '../src/object/local-object-store'
import { MemoryStore } from '../src/store/memory-store'

const STRIPE = 1024 * 1024
const SCHEMAS: Array<[number, number]> = [[4, 2], [8, 3], [10, 4]]

function result (name: string, value: number, unit = 'GB/s'): void {
  console.log(`RESULT ${name} ${value.toFixed(2)} ${unit}`)
}

function timeFor (seconds: number, fn: () => void): number {
  let iters = 0
  const t0 = process.hrtime.bigint()
  let elapsed = 0
  while (elapsed < seconds) {
    for (let i = 0; i < 16; i++) fn()
    iters += 16
    elapsed = Number(process.hrtime.bigint() - t0) / 1e9
  }
  return iters * STRIPE / elapsed / 1e9
}

function typescriptFigures (): Map<string, number> {
  const out = new Map<string, number>()
  for (const [k, m] of SCHEMAS) {
    const len = Math.floor(STRIPE / k)
    const shards = Array.from({ length: k + m }, () => crypto.randomBytes(len))
    const data = shards.slice(0, k)
    const parity = shards.slice(k)
    out.set(`encode.${k}+${m}`, timeFor(1, () => encodeSync(k, m, data, parity)))
    const present = shards.map((_, i) => i >= 2)
    out.set(`reconstruct.${k}+${m}`, timeFor(1, () => reconstructSync(k, m, shards, present)))
    // The object pipeline: hash the stripe, encode, hash every fragment, write its trailer.
    const id = crypto.randomBytes(16)
    const frags = Array.from({ length: k + m }, () => Buffer.alloc(len + TRAILER_BYTES))
    const views = frags.map((f) => f.subarray(0, len))
    let stripe = 0
    out.set(`pipeline.${k}+${m}`, timeFor(1, () => {
      encodeSync(k, m, views.slice(0, k), views.slice(k))
      for (let i = 0; i < k + m; i++) writeTrailer({ id, stripe, index: i, k, m, length: len, hash: xxh64(views[i]) }, frags[i], len)
      stripe++
    }))
  }
  return out
}

function isalFigures (): Map<string, number> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-isal-'))
  try {
    const bin = path.join(dir, 'isal-ec')
    execFileSync('cc', ['-O2', path.join(__dirname, '..', '..', 'bench', 'isal-ec.c'), '-o', bin, '-lisal'])
    const out = new Map<string, number>()
    for (const line of execFileSync(bin, { encoding: 'utf8' }).split('\n')) {
      const m = /^RESULT ec\.(\w+\.\d+\+\d+)\.isal ([\d.]+)/.exec(line)
      if (m !== null) out.set(m[1], Number(m[2]))
    }
    return out
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** The whole put path of the object layer (stream, hash, encode, trailers) into in-memory stores. */
async function objectPut (k: number, m: number): Promise<number> {
  const stores = Array.from({ length: k + m }, (_, i) => new MemoryStore(`mem${i}`, 4 * 1024 ** 3))
  const objects = new LocalObjectStore({ stores: () => stores })
  const chunk = crypto.randomBytes(4 * 1024 * 1024)
  const size = 256 * 1024 * 1024
  async function * source (): AsyncIterable<Buffer> { for (let off = 0; off < size; off += chunk.length) yield chunk }
  await objects.put(source(), { size: 16 * 1024 * 1024, schema: { k, m } }).catch(() => {})  // warm-up
  const t0 = process.hrtime.bigint()
  await objects.put(source(), { size, schema: { k, m } })
  return size / (Number(process.hrtime.bigint() - t0) / 1e9) / 1e9
}

async function main (): Promise<void> {
  console.log(`# bench:ec, 1 MiB stripes, one thread (${os.cpus()[0]?.model ?? '?'})`)
  const c = isalFigures()
  const ts = typescriptFigures()
  for (const [k, m] of SCHEMAS) {
    for (const op of ['encode', 'reconstruct']) {
      const key = `${op}.${k}+${m}`
      result(`ec.${key}.ts`, ts.get(key) ?? 0)
      result(`ec.${key}.isal`, c.get(key) ?? 0)
      result(`ec.${key}.ratio`, (ts.get(key) ?? 0) / (c.get(key) ?? 1), 'isal')
    }
    result(`object.pipeline.${k}+${m}`, ts.get(`pipeline.${k}+${m}`) ?? 0)
    result(`object.put.memory.${k}+${m}`, await objectPut(k, m))
  }
}

main().catch((err) => { console.error(err); process.exitCode = 1 })
