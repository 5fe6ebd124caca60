// bench:repair — how fast the cluster restores full redundancy after losing a node, and what
// clients keep meanwhile. On a local 6-node 4+2 cluster (ddfs up) it stores enough objects of
// DDFS_BENCH_OBJECT_MIB (default 1024) that one node holds DDFS_BENCH_NODE_GIB (default 2) GiB
// of fragments, measures a get of one object,
// then kills nodes with -9 and measures, in the same run:
//   - node 5 lost, no clients: the time from the kill to full redundancy (detection and the
//     --lost-after grace included) and the rebuild rate (fragment bytes rebuilt per second from
//     the first rebuilt byte to the last);
//   - node 4 lost while a client reads an object back to back: the client's get speed
//     beside the same gets before the loss, and the rebuild rate meanwhile.
// and the node processes' CPU seconds and minor page faults per rebuilt GiB (the rate depends
// on what else the machine runs; CPU per byte much less, page faults not at all).
// Prints `RESULT <name> <value> <unit>` lines. DDFS_BENCH_DIR picks the directory (default
// /var/tmp), DDFS_BENCH_REPAIR_RATE the per-node --repair-rate in MB/s (default 200).
import fs from 'node:fs'
import path from 'node:path'
import crypto from 'node:crypto'
import { execFileSync, spawn } from 'node:child_process'

const GiB = 1024 * 1024 * 1024
const ROOT = path.join(__dirname, '..', '..')
const BIN = path.join(ROOT, 'bin', 'ddfs')
const BASE = 8800
const NODE_GIB = Number(process.env.DDFS_BENCH_NODE_GIB ?? 2)
const OBJECT_BYTES = Number(process.env.DDFS_BENCH_OBJECT_MIB ?? 1024) * 1024 * 1024
const REPAIR_RATE = Number(process.env.DDFS_BENCH_REPAIR_RATE ?? 200)
const LOST_AFTER = 5

function result (name: string, value: number, unit: string): void {
  console.log(`RESULT ${name} ${value.toFixed(unit === 'x' ? 2 : 1)} ${unit}`)
}

function ddfs (args: string[]): string {
  return execFileSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, DDFS_CLUSTER: undefined } })
}

function dropCaches (): void {
  try { fs.writeFileSync('/proc/sys/vm/drop_caches', '3') } catch {}
}

interface Durability { objects: number, objectsBelowN: number, bytesToRepair: number, repairedBytes: number }

const METRIC: Record<keyof Durability, string> = {
  objects: 'ddfs_objects_led', objectsBelowN: 'ddfs_objects_below_n', bytesToRepair: 'ddfs_repair_pending_bytes', repairedBytes: 'ddfs_repaired_bytes'
}

/** Each node's metrics URL, as `ddfs up --json` reported it. */
let metricsUrls: string[] = []

/**
 * The cluster's durability, summed over the nodes that answer: what `ddfs status` shows, read
 * from each node's metrics. Polling `ddfs status` twice a second started a Node.js process each
 * time, and took CPU from the repair it measured.
 */
async function durability (without = -1): Promise<Durability> {
  const sum: Durability = { objects: 0, objectsBelowN: 0, bytesToRepair: 0, repairedBytes: 0 }
  await Promise.all(metricsUrls.map(async (url, i) => {
    if (i === without) return
    try {
      const text = await (await fetch(url, { signal: AbortSignal.timeout(2000) })).text()
      for (const key of Object.keys(METRIC) as Array<keyof Durability>) {
        const m = new RegExp(`^${METRIC[key]} (\\S+)$`, 'm').exec(text)
        if (m !== null) sum[key] += Number(m[1])
      }
    } catch {
      // A node that is down (or just killed) has nothing to add.
    }
  }))
  return sum
}

/** One get of an object from node 0 (the local fast path: the node writes the file), in MB/s. */
function getOnce (id: string, out: string): Promise<number> {
  dropCaches()
  const t0 = process.hrtime.bigint()
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'get', '-p', String(BASE), '-i', id, '-f', out, '-q'], { stdio: 'ignore' })
    child.on('exit', (code) => {
      if (code !== 0) { reject(new Error(`get failed (${code})`)); return }
      resolve(OBJECT_BYTES / 1e6 / (Number(process.hrtime.bigint() - t0) / 1e9))
    })
  })
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

interface Loss { restoreSeconds: number, rebuildMbs: number, getMbs: number, cpuSecondsPerGiB: number, minorFaults: number }

/**
 * CPU seconds (user + system) and minor page faults (fresh memory faulted in, zeroed by the
 * kernel) of the node processes so far, summed; those gone count 0.
 */
function nodesUsage (cluster: string): { cpu: number, minorFaults: number } {
  const tick = 100  // USER_HZ
  let cpu = 0
  let minorFaults = 0
  for (const d of fs.readdirSync(cluster).filter((x) => x.startsWith('node'))) {
    try {
      const pid = fs.readFileSync(path.join(cluster, d, 'node.pid'), 'utf8').trim()
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      cpu += (Number(fields[11]) + Number(fields[12])) / tick
      minorFaults += Number(fields[7])
    } catch {}
  }
  return { cpu, minorFaults }
}

/**
 * Kills node `victim` with -9 and waits until every object is back to full redundancy; with
 * `reader`, gets of one object run back to back meanwhile (the ones overlapping the rebuild are averaged).
 */
async function loseNode (cluster: string, victim: number, objects: number, reader: { id: string, out: string } | null): Promise<Loss> {
  const repairedAtStart = (await durability(victim)).repairedBytes  // the victim's share goes with it
  const killedAt = Date.now()
  process.kill(Number(fs.readFileSync(path.join(cluster, `node${victim}`, 'node.pid'), 'utf8')), 'SIGKILL')
  const atStart = nodesUsage(cluster)
  let done = false
  const gets: Array<{ mbs: number, start: number, end: number }> = []
  const reading = (async () => {
    while (reader !== null && !done) {
      const start = Date.now()
      const mbs = await getOnce(reader.id, reader.out)
      gets.push({ mbs, start, end: Date.now() })
    }
  })()
  let firstRebuilt: number | null = null
  let lastRebuilt = 0
  let repaired = repairedAtStart
  for (;;) {
    await sleep(250)
    const d = await durability()
    if (d.repairedBytes > repaired) { firstRebuilt ??= Date.now(); repaired = d.repairedBytes; lastRebuilt = Date.now() }
    if (firstRebuilt !== null && d.objects === objects && d.objectsBelowN === 0 && d.bytesToRepair === 0) break
    if (Date.now() - killedAt > 30 * 60_000) throw new Error('redundancy not restored within 30 minutes')
  }
  const restoredAt = Date.now()
  const atEnd = nodesUsage(cluster)
  done = true
  await reading
  const first = firstRebuilt as number
  const seconds = Math.max(0.5, (lastRebuilt - first) / 1000)
  const overlapping = gets.filter((g) => g.start < lastRebuilt && g.end > first)
  const at = (t: number): string => `${((t - killedAt) / 1000).toFixed(1)} s`
  console.log(`node ${victim} killed${reader !== null ? ' under client reads' : ''}: rebuilt ${((repaired - repairedAtStart) / GiB).toFixed(2)} GiB in ${seconds.toFixed(1)} s ` +
    `(first byte at ${at(first)}, last at ${at(lastRebuilt)}, full redundancy seen at ${at(restoredAt)}); ${overlapping.length} gets overlapped`)
  return {
    restoreSeconds: (restoredAt - killedAt) / 1000,
    rebuildMbs: (repaired - repairedAtStart) / 1e6 / seconds,
    getMbs: overlapping.length > 0 ? overlapping.reduce((a, g) => a + g.mbs, 0) / overlapping.length : NaN,
    cpuSecondsPerGiB: (atEnd.cpu - atStart.cpu) / ((repaired - repairedAtStart) / GiB),
    minorFaults: atEnd.minorFaults - atStart.minorFaults
  }
}

async function main (): Promise<void> {
  const dir = fs.mkdtempSync(path.join(process.env.DDFS_BENCH_DIR ?? '/var/tmp', 'ddfs-bench-repair-'))
  const cluster = path.join(dir, 'cluster')
  const src = path.join(dir, 'src.bin')
  const out = path.join(dir, 'out.bin')
  // A node holds a sixth of 1.5x the data: 4 GiB of objects per GiB of fragments on a node.
  const objects = Math.max(1, Math.round(4 * NODE_GIB * GiB / OBJECT_BYTES))
  const deviceGiB = Math.ceil(NODE_GIB * 2.2) + 1  // room for the share of two lost nodes
  try {
    const chunk = crypto.randomBytes(64 * 1024 * 1024)
    const fd = fs.openSync(src, 'w')
    for (let off = 0; off < OBJECT_BYTES; off += chunk.length) fs.writeSync(fd, chunk, 0, Math.min(chunk.length, OBJECT_BYTES - off))
    fs.closeSync(fd)

    const up = JSON.parse(ddfs(['up', '--nodes', '6', '--dir', cluster, '--base-port', String(BASE), '--device-size', `${deviceGiB}G`, '--no-mount', '--json', '--',
      '--heartbeat', '1000', '--lost-after', String(LOST_AFTER), '--repair-interval', '1', '--repair-rate', String(REPAIR_RATE)]))
    metricsUrls = (up.nodes as Array<{ metrics: string }>).map((n) => n.metrics)
    const ids: string[] = []
    for (let i = 0; i < objects; i++) ids.push(ddfs(['put', '-p', String(BASE), '-f', src, '-q']).trim())
    console.log(`stored ${objects} x ${OBJECT_BYTES / 1024 / 1024} MiB; node 5 holds ${(fs.statSync(path.join(cluster, 'node5', 'dev0.img')).blocks * 512 / GiB).toFixed(2)} GiB of device`)
    for (let i = 0; i < 60 && (await durability()).objects < objects; i++) await sleep(1000)

    // Phase 1: a node lost with no client traffic: how fast redundancy comes back.
    const idle = await loseNode(cluster, 5, ids.length, null)
    result('repair_restore_seconds', idle.restoreSeconds, 's')
    result('repair_grace_seconds', LOST_AFTER, 's')
    result('repair_rebuild_rate', idle.rebuildMbs, 'MB/s')
    // Less sensitive than the rate to what else the machine runs: the nodes' CPU per rebuilt GiB.
    result('repair_node_cpu_per_gib', idle.cpuSecondsPerGiB, 's')
    result('repair_node_minor_faults_per_gib', idle.minorFaults / NODE_GIB, 'faults')

    // Phase 2: another node lost while a client reads an object back to back: what the
    // client keeps (healing gives way to client traffic) and how fast the repair goes meanwhile.
    const before: number[] = []
    for (let r = 0; r < 3; r++) before.push(await getOnce(ids[0], out))
    const baseline = before.sort((a, b) => a - b)[1]
    if (execFileSync('cmp', [src, out]).length !== 0) throw new Error('get returned different bytes')
    const loaded = await loseNode(cluster, 4, ids.length, { id: ids[0], out })
    result('repair_rebuild_rate_with_client', loaded.rebuildMbs, 'MB/s')
    result('repair_get_before', baseline, 'MB/s')
    result('repair_get_during', loaded.getMbs, 'MB/s')
    result('repair_get_during_vs_before', loaded.getMbs / baseline, 'x')
    if (execFileSync('cmp', [src, out]).length !== 0) throw new Error('a get during the repair returned different bytes')
  } finally {
    try { ddfs(['down', '--dir', cluster]) } catch {}
    if (process.env.DDFS_BENCH_KEEP === undefined) fs.rmSync(dir, { recursive: true, force: true })
    else console.log(`kept ${dir}`)
  }
}

main().catch((err) => { console.error(err); process.exitCode = 1 })
