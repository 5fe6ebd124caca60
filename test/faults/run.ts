// A seeded fault schedule against a real local cluster (ddfs up, 6 nodes, 4+2), with a checker.
// Clients put, get and delete through the CLI while the schedule, drawn from the seed, kills
// nodes with -9 (restarted later from their data dirs), freezes them (SIGSTOP/SIGCONT),
// restarts them cleanly, and flips bits in or zeroes blocks of fragments on the device files.
// The checker knows every acknowledged put and delete and, during and after the run (once
// healing has finished), verifies: every acknowledged object reads back with identical bytes;
// no read ever returned wrong bytes (an error is allowed while too many fragments are down);
// no deleted object comes back; durability debt returns to 0. The same seed gives the same
// schedule (event kinds, targets and times; what the clients meet depends on timing).
//
//   npm run test:faults -- --seed S --minutes M [--base-port P] [--json]
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'ddfs')
const NODES = 6
const NODE_ARGS = ['--heartbeat', '1000', '--lost-after', '6', '--repair-interval', '1', '--scrub-interval', '3', '--scrub-rate', '200', '--orphan-grace', '10']

export type FaultKind = 'kill' | 'freeze' | 'restart' | 'bitflip' | 'zero-block'
export const FAULT_KINDS: FaultKind[] = ['kill', 'freeze', 'restart', 'bitflip', 'zero-block']

export interface FaultRunOptions {
  seed: number
  minutes: number
  basePort?: number
  log?: (line: string) => void
}

export interface FaultSummary {
  seed: number
  seconds: number
  ops: Record<string, number>
  faults: Record<FaultKind, number>
  /** Acknowledged objects that did not read back (after healing), with why. */
  lost: string[]
  /** Reads that returned bytes other than the acknowledged ones: must be 0. */
  wrongReads: number
  /** Deleted objects that read back or were listed after the delete was acknowledged. */
  resurrected: string[]
  /** Reads that failed with an error while faults were active (allowed). */
  failedReads: number
  debt: { objectsBelowN: number, objectsUnreadable: number, bytesToRepair: number } | null
  notCovered: string[]
}

/** mulberry32: a small seeded PRNG, so a seed replays the same schedule. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface CliResult { code: number, stdout: string, stderr: string }

function ddfs (args: string[], timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DDFS_CLUSTER: undefined } })
    let stdout = ''
    let stderr = ''
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }) })
  })
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

interface Scheduled { at: number, kind: FaultKind, node: number, pick: number, hold: number }

/** The whole schedule, from the seed alone: a fault every 1.5-4 s, each kind in turn-ish. */
export function schedule (seed: number, seconds: number): Scheduled[] {
  const rand = prng(seed)
  const out: Scheduled[] = []
  for (let at = 3 + rand() * 2; at < seconds; at += 1.5 + rand() * 2.5) {
    out.push({ at, kind: FAULT_KINDS[Math.floor(rand() * FAULT_KINDS.length)], node: Math.floor(rand() * NODES), pick: rand(), hold: 2 + rand() * 8 })
  }
  return out
}

export async function runFaults (opts: FaultRunOptions): Promise<FaultSummary> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`))
  const base = opts.basePort ?? 9400
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-faults-'))
  const cluster = path.join(dir, 'cluster')
  const work = path.join(dir, 'work')
  fs.mkdirSync(work)
  const at = (i: number): string[] => ['-s', '127.0.0.1', '-p', String(base + i)]
  const rand = prng(opts.seed ^ 0x5eed)
  const started = Date.now()
  const summary: FaultSummary = {
    seed: opts.seed,
    seconds: 0,
    ops: { put: 0, putFailed: 0, get: 0, delete: 0, deleteFailed: 0 },
    faults: { kill: 0, freeze: 0, restart: 0, bitflip: 0, 'zero-block': 0 },
    lost: [],
    wrongReads: 0,
    resurrected: [],
    failedReads: 0,
    debt: null,
    notCovered: ['network partitions and packet loss', 'devices failing writes or filling up', 'clients through the FUSE mount']
  }
  // What the clients were told: content of every acknowledged object, and acknowledged deletes.
  const acked = new Map<string, string>()      // id -> file with its bytes
  const deleted = new Set<string>()
  const maybeDeleted = new Set<string>()       // a delete that failed: either outcome is fine
  const out = new Set<number>()                // nodes killed or frozen now
  const frozen = new Map<number, number>()     // node -> pid, while frozen
  const pidOf = (i: number): number | null => {
    try { return Number(fs.readFileSync(path.join(cluster, `node${i}`, 'node.pid'), 'utf8')) } catch { return null }
  }
  const liveNode = (): number => {
    const live = [...Array(NODES).keys()].filter((i) => !out.has(i))
    return live[Math.floor(rand() * live.length)]
  }
  let restarting: Promise<unknown> = Promise.resolve()
  const restartMissing = (): Promise<unknown> => {
    restarting = restarting.then(() => ddfs(['up', '--dir', cluster, '--base-port', String(base), '--no-mount'], 180_000))
    return restarting
  }

  try {
    const up = await ddfs(['up', '--nodes', String(NODES), '--dir', cluster, '--base-port', String(base), '--device-size', '512M', '--no-mount', '--', ...NODE_ARGS])
    if (up.code !== 0) throw new Error(`ddfs up failed: ${up.stderr}`)
    log(`faults: seed ${opts.seed}, ${opts.minutes} min, cluster in ${cluster}`)

    // ---- clients ----
    let stop = false
    let opIndex = 0
    const checkRead = async (id: string, file: string, from: number, phase: string): Promise<void> => {
      const target = path.join(work, `read-${opIndex++}`)
      const r = await ddfs(['get', ...at(from), '-i', id, '-f', target, '-q'])
      summary.ops.get++
      if (r.code === 0) {
        const same = Buffer.compare(fs.readFileSync(target), fs.readFileSync(file)) === 0
        if (deleted.has(id)) summary.resurrected.push(`${id} read back after its delete (${phase})`)
        else if (!same) { summary.wrongReads++; log(`WRONG BYTES: ${id} from node ${from} (${phase})`) }
      } else {
        summary.failedReads++
        if (phase === 'final' && !deleted.has(id) && !maybeDeleted.has(id)) summary.lost.push(`${id}: ${r.stderr.trim()}`)
      }
      fs.rmSync(target, { force: true })
    }
    const client = async (): Promise<void> => {
      while (!stop) {
        const dice = rand()
        const from = liveNode()
        const ids = [...acked.keys()].filter((id) => !deleted.has(id))
        // The live set stays near 60 objects (at most ~100 MiB each node): the run tests faults,
        // not a device filling up.
        if ((dice < 0.4 || ids.length < 3) && ids.length < 60) {
          const size = Math.floor(rand() * 3 * 1024 * 1024)
          const file = path.join(work, `obj-${opIndex++}`)
          fs.writeFileSync(file, crypto.randomBytes(size))
          const r = await ddfs(['put', ...at(from), '-f', file, '-q'])
          if (r.code === 0 && /^[0-9a-f]{32}$/.test(r.stdout.trim())) { acked.set(r.stdout.trim(), file); summary.ops.put++ } else { summary.ops.putFailed++; fs.rmSync(file, { force: true }) }
        } else if (dice < 0.85 && ids.length < 60) {
          const id = ids[Math.floor(rand() * ids.length)]
          await checkRead(id, acked.get(id) as string, from, 'during')
        } else {
          const id = ids[Math.floor(rand() * ids.length)]
          const r = await ddfs(['delete', ...at(from), '-i', id])
          if (r.code === 0) { deleted.add(id); maybeDeleted.delete(id); summary.ops.delete++ } else { maybeDeleted.add(id); summary.ops.deleteFailed++ }
        }
      }
    }

    // ---- the schedule ----
    const injector = async (): Promise<void> => {
      for (const ev of schedule(opts.seed, opts.minutes * 60)) {
        const wait = started + ev.at * 1000 - Date.now()
        if (wait > 0) await sleep(wait)
        const node = ev.node
        // At most m = 2 nodes out at once: a third would be a loss beyond the code's promise.
        if ((ev.kind === 'kill' || ev.kind === 'freeze' || ev.kind === 'restart') && (out.has(node) || out.size >= 2)) continue
        const pid = pidOf(node)
        if (ev.kind === 'kill' && pid !== null) {
          try { process.kill(pid, 'SIGKILL') } catch { continue }
          out.add(node)
          summary.faults.kill++
          log(`t=${ev.at.toFixed(1)} kill -9 node ${node}, back in ${ev.hold.toFixed(1)} s`)
          void sleep(ev.hold * 1000).then(async () => { await restartMissing(); out.delete(node) })
        } else if (ev.kind === 'freeze' && pid !== null) {
          try { process.kill(pid, 'SIGSTOP') } catch { continue }
          out.add(node)
          frozen.set(node, pid)
          summary.faults.freeze++
          log(`t=${ev.at.toFixed(1)} SIGSTOP node ${node} for ${ev.hold.toFixed(1)} s`)
          void sleep(ev.hold * 1000).then(() => { try { process.kill(pid, 'SIGCONT') } catch {} frozen.delete(node); out.delete(node) })
        } else if (ev.kind === 'restart') {
          out.add(node)
          summary.faults.restart++
          log(`t=${ev.at.toFixed(1)} restart node ${node}`)
          void ddfs(['node', 'stop', ...at(node)]).then(async () => { await restartMissing(); out.delete(node) })
        } else if (ev.kind === 'bitflip' || ev.kind === 'zero-block') {
          const ids = [...acked.keys()].filter((id) => !deleted.has(id))
          if (ids.length === 0) continue
          const id = ids[Math.floor(ev.pick * ids.length)]
          const q = await ddfs(['query', ...at(liveNode()), '-i', id, '--json'])
          if (q.code !== 0) continue
          const frags = (JSON.parse(q.stdout).fragments as Array<{ device: string, block: number, length: number }>).filter((f) => f.length > 0)
          if (frags.length === 0) continue
          const f = frags[Math.floor(ev.pick * 7919) % frags.length]
          const fd = fs.openSync(f.device, 'r+')
          if (ev.kind === 'bitflip') {
            const buf = Buffer.alloc(1)
            const off = f.block * 4096 + Math.floor(ev.hold * 997) % Math.min(f.length, 4096)
            fs.readSync(fd, buf, 0, 1, off)
            buf[0] ^= 0x10
            fs.writeSync(fd, buf, 0, 1, off)
          } else {
            fs.writeSync(fd, Buffer.alloc(4096), 0, 4096, f.block * 4096)
          }
          fs.closeSync(fd)
          summary.faults[ev.kind]++
          log(`t=${ev.at.toFixed(1)} ${ev.kind} in a fragment of ${id} on ${f.device}`)
        }
      }
    }

    const clients = [client(), client()]
    await injector()
    stop = true
    await Promise.all(clients)

    // ---- heal, then check everything ----
    for (const pid of frozen.values()) { try { process.kill(pid, 'SIGCONT') } catch {} }
    await restartMissing()
    await restarting
    out.clear()
    log('faults: schedule over; waiting for healing')
    let calm = 0
    for (const until = Date.now() + 180_000; Date.now() < until && calm < 3;) {
      await sleep(2000)
      const s = await ddfs(['status', ...at(0), '--json'])
      if (s.code !== 0) { calm = 0; continue }
      const d = JSON.parse(s.stdout).durability
      summary.debt = { objectsBelowN: d.objectsBelowN, objectsUnreadable: d.objectsUnreadable, bytesToRepair: d.bytesToRepair }
      calm = d.objectsBelowN === 0 && d.bytesToRepair === 0 && d.objectsUnreadable === 0 && d.nodesUnreachable === 0 ? calm + 1 : 0
    }
    for (const [id, file] of acked) {
      if (deleted.has(id)) {
        const r = await ddfs(['get', ...at(liveNode()), '-i', id, '-f', path.join(work, 'gone'), '-q'])
        if (r.code === 0) summary.resurrected.push(`${id} reads back after its delete`)
        else if (!r.stderr.includes('NOT_FOUND')) summary.resurrected.push(`${id}: after its delete, neither gone nor readable: ${r.stderr.trim()}`)
      } else {
        await checkRead(id, file, liveNode(), 'final')
      }
    }
    const listed = await ddfs(['ls', ...at(0), '--limit', '100000'])
    for (const id of deleted) if (listed.stdout.includes(id)) summary.resurrected.push(`${id} is listed after its delete`)
  } finally {
    for (const pid of frozen.values()) { try { process.kill(pid, 'SIGCONT') } catch {} }
    await ddfs(['down', '--dir', cluster])
    for (let i = 0; i < NODES; i++) { const pid = pidOf(i); if (pid !== null) { try { process.kill(pid, 'SIGKILL') } catch {} } }
    try { process.kill(Number(fs.readFileSync(path.join(cluster, 'bootstrap.pid'), 'utf8')), 'SIGKILL') } catch {}
    fs.rmSync(dir, { recursive: true, force: true })
    summary.seconds = Math.round((Date.now() - started) / 1000)
  }
  return summary
}

export function verdict (s: FaultSummary): boolean {
  return s.lost.length === 0 && s.wrongReads === 0 && s.resurrected.length === 0 && s.debt !== null &&
    s.debt.objectsBelowN === 0 && s.debt.objectsUnreadable === 0 && s.debt.bytesToRepair === 0
}

if (require.main === module) {
  const argv = process.argv.slice(2)
  const arg = (name: string): string | undefined => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : undefined }
  const seed = Number(arg('seed') ?? Date.now() % 100000)
  const minutes = Number(arg('minutes') ?? 2)
  runFaults({ seed, minutes, basePort: arg('base-port') !== undefined ? Number(arg('base-port')) : undefined }).then((s) => {
    if (argv.includes('--json')) console.log(JSON.stringify(s, null, 2))
    const faults = Object.entries(s.faults).map(([k, v]) => `${k} ${v}`).join(', ')
    console.log(`faults: seed ${s.seed}, ${s.seconds} s; ops: ${Object.entries(s.ops).map(([k, v]) => `${k} ${v}`).join(', ')}; faults: ${faults}`)
    console.log(`faults: reads that failed while faults were active: ${s.failedReads}; not covered: ${s.notCovered.join('; ')}`)
    console.log(`faults: lost ${s.lost.length}, wrong reads ${s.wrongReads}, resurrected ${s.resurrected.length}, debt ${JSON.stringify(s.debt)}`)
    for (const x of [...s.lost, ...s.resurrected]) console.log(`  ${x}`)
    process.exitCode = verdict(s) ? 0 : 1
  }, (err) => { console.error(err); process.exitCode = 2 })
}
