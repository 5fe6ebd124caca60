// A whole cluster on this machine, for trying ddfs and for tests and benchmarks: a DHT
// bootstrap node and N node processes on 127.0.0.1, each with a formatted file-backed device,
// all under one directory:
//   DIR/cluster.json     ports and options (what `ddfs down` and `ddfs node add` read)
//   DIR/cluster.secret   the cluster secret (0600)
//   DIR/bootstrap.pid    the DHT bootstrap process
//   DIR/node<i>/         node i: data dir, dev0.img, ddfs.log; port base + i, DHT port base + 1000 + i
import fs from 'node:fs'
import path from 'node:path'
import { DdfsError } from '../errors'
import { Client } from '../client/client'
import { DataDir } from '../node/data-dir'
import { socketPath, removeStaleSocket } from '../node/paths'
import { formatDevice } from '../store/native-store'
import { createClusterSecret } from '../cluster/secret'
import { startDetached, waitExit, processAlive } from './daemon'
import { isStale, isMounted, forceUnmountIfMounted } from '../mount/mount'
import { unmount } from './unmount'

export const HOST = '127.0.0.1'

export interface LocalClusterConfig {
  basePort: number
  nodes: number
  deviceSize: number
  /** Further node options given to `ddfs up`, passed to every node. */
  nodeArgs: string[]
  /** Where the store is mounted (through node 0), if it is. */
  mountpoint?: string | null
}

export interface NodeReport {
  index: number
  address: string
  dataDir: string
  device: string
  log: string
  /** Prometheus text of the node (port base + 2000 + i), or null when nodeArgs chose otherwise. */
  metrics: string | null
  pid: number
  started: boolean   // false: it was already running
}

const configFile = (dir: string): string => path.join(dir, 'cluster.json')
export const secretFile = (dir: string): string => path.join(dir, 'cluster.secret')
const bootstrapPidFile = (dir: string): string => path.join(dir, 'bootstrap.pid')
const bootstrapPort = (c: LocalClusterConfig): number => c.basePort + 999

export function readConfig (dir: string): LocalClusterConfig {
  try {
    return JSON.parse(fs.readFileSync(configFile(dir), 'utf8')) as LocalClusterConfig
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw DdfsError.NOT_FOUND(`no local cluster in ${dir}; start one with: ddfs up --dir ${dir}`)
    throw DdfsError.BAD_ARGUMENT(`cannot read ${configFile(dir)}: ${(err as Error).message}`)
  }
}

function writeConfig (dir: string, c: LocalClusterConfig): void {
  fs.writeFileSync(`${configFile(dir)}.tmp`, JSON.stringify(c, null, 2) + '\n')
  fs.renameSync(`${configFile(dir)}.tmp`, configFile(dir))
}

function alive (pid: number | null): boolean {
  return pid !== null && processAlive(pid)
}

function readPid (file: string): number | null {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : null
  } catch {
    return null
  }
}

/** Starts (or completes) the local cluster in `dir`; resolves once every node sees all others. */
/** `wait` false: return once every node serves, without waiting until they all see each other. */
export async function up (dir: string, want: LocalClusterConfig, mountpoint: string | null = null, wait = true): Promise<NodeReport[]> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  let config = want
  if (fs.existsSync(configFile(dir))) {
    const had = readConfig(dir)
    if (had.basePort !== want.basePort) throw DdfsError.BAD_ARGUMENT(`the cluster in ${dir} uses base port ${had.basePort}; pass --base-port ${had.basePort} or use another --dir`)
    config = { ...had, nodes: Math.max(had.nodes, want.nodes), nodeArgs: want.nodeArgs.length > 0 ? want.nodeArgs : had.nodeArgs }
  }
  if (!fs.existsSync(secretFile(dir))) createClusterSecret(secretFile(dir))
  writeConfig(dir, config)
  await startBootstrap(dir, config)
  const reports = await Promise.all(Array.from({ length: config.nodes }, (_, i) => startNode(dir, config, i)))
  if (wait) await waitConverged(reports.map((r) => r.index), config, 60_000)
  if (mountpoint !== null) {
    fs.mkdirSync(mountpoint, { recursive: true })
    if (!isMounted(mountpoint) || isStale(mountpoint)) {
      // Node 0 serves the mount itself: measured faster than a mount process beside it (no
      // socket and no process between the mount and the node; see README, Benchmarks).
      const c = await Client.connect({ host: HOST, port: config.basePort })
      try {
        await c.mount(path.resolve(mountpoint), false)
      } finally {
        c.close()
      }
    }
    writeConfig(dir, { ...config, mountpoint })
  }
  return reports
}

/** Adds one node to the running local cluster in `dir`. */
export async function addNode (dir: string): Promise<NodeReport> {
  const config = readConfig(dir)
  const index = config.nodes
  config.nodes++
  writeConfig(dir, config)
  const report = await startNode(dir, config, index)
  await waitConverged(Array.from({ length: config.nodes }, (_, i) => i), config, 60_000)
  return report
}

/** Stops every node of the local cluster in `dir`, then its bootstrap node. */
export async function down (dir: string): Promise<{ stopped: string[] }> {
  const config = readConfig(dir)
  const stopped: string[] = []
  const mp = config.mountpoint
  if (mp !== undefined && mp !== null && isMounted(mp)) {
    // The mount first: it commits what is being written while the nodes still run. A node that
    // serves it and cannot unmount now (files open there) unmounts as it stops.
    try {
      await unmount(mp)
    } catch {}
    stopped.push(`mount ${mp}`)
  }
  await Promise.all(Array.from({ length: config.nodes }, async (_, i) => {
    const port = config.basePort + i
    if (!fs.existsSync(socketPath(HOST, port))) return
    try {
      const c = await Client.connect({ host: HOST, port, timeoutMs: 3000 })
      try {
        const { pid } = await c.stopNode() as { pid: number }
        await waitExit(pid, 30_000)
        stopped.push(`${HOST}:${port}`)
      } finally {
        c.close()
      }
    } catch {
      // Not running: a node killed with -9 left its socket file behind.
      await removeStaleSocket(socketPath(HOST, port))
    }
  }))
  const boot = readPid(bootstrapPidFile(dir))
  if (alive(boot)) {
    process.kill(boot as number, 'SIGTERM')
    if (!await waitExit(boot as number, 5000)) process.kill(boot as number, 'SIGKILL')
    stopped.push(`bootstrap ${HOST}:${bootstrapPort(config)}`)
  }
  fs.rmSync(bootstrapPidFile(dir), { force: true })
  if (mp !== undefined && mp !== null) forceUnmountIfMounted(mp)  // a node that died while serving it
  return { stopped: stopped.sort() }
}

async function startBootstrap (dir: string, config: LocalClusterConfig): Promise<void> {
  if (alive(readPid(bootstrapPidFile(dir)))) return
  const pid = await startDetached(['bootstrap', '-s', HOST, '-p', String(bootstrapPort(config))], path.join(dir, 'bootstrap.stderr.log'))
  fs.writeFileSync(bootstrapPidFile(dir), `${pid}\n`)
}

async function startNode (dir: string, config: LocalClusterConfig, index: number): Promise<NodeReport> {
  const port = config.basePort + index
  const nodeDir = path.join(dir, `node${index}`)
  const device = path.join(nodeDir, 'dev0.img')
  const log = path.join(nodeDir, 'ddfs.log')
  const data = new DataDir(nodeDir)
  // Every node serves its metrics unless the caller set --metrics-port in the node arguments.
  const ownMetrics = config.nodeArgs.includes('--metrics-port')
  const metricsPort = config.basePort + 2000 + index
  const report = { index, address: `${HOST}:${port}`, dataDir: nodeDir, device, log, metrics: ownMetrics ? null : `http://${HOST}:${metricsPort}/metrics` }
  const running = data.readPid()
  if (alive(running) && fs.existsSync(socketPath(HOST, port))) return { ...report, pid: running as number, started: false }
  // Alive without its socket: it is stopping (the socket goes first, the device locks last). A
  // new process started now would find its devices locked and serve without them: wait it out.
  if (alive(running) && !await waitExit(running as number, 30_000)) throw DdfsError.NODE_RUNNING(`node ${index} (pid ${running as number}) is still stopping after 30 s`)
  if (!fs.existsSync(device)) {
    data.ensure()
    fs.writeFileSync(device, '')
    fs.truncateSync(device, config.deviceSize)
    await formatDevice(device, { force: true })
    data.addDevice(device)
  }
  const pid = await startDetached(['node', 'run', '-s', HOST, '-p', String(port), '--data', nodeDir, '--log', log,
    '--cluster', secretFile(dir), '--bootstrap', `${HOST}:${bootstrapPort(config)}`, '--dht-port', String(config.basePort + 1000 + index),
    ...(ownMetrics ? [] : ['--metrics-port', String(metricsPort)]), ...config.nodeArgs], path.join(nodeDir, 'stderr.log'))
  return { ...report, pid, started: true }
}

/** Waits until each listed node sees every listed node as a member. */
async function waitConverged (indices: number[], config: LocalClusterConfig, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  let seen = ''
  for (;;) {
    const counts = await Promise.all(indices.map(async (i) => {
      try {
        const c = await Client.connect({ host: HOST, port: config.basePort + i, timeoutMs: 3000 })
        try {
          const s = await c.status() as { members: Array<{ state: string }> | null }
          return s.members?.filter((m) => m.state === 'live' || m.state === 'draining').length ?? 0
        } finally { c.close() }
      } catch {
        return 0
      }
    }))
    if (counts.every((n) => n >= indices.length)) return
    seen = counts.map((n, j) => `node${indices[j]} sees ${n}`).join(', ')
    if (Date.now() > deadline) throw DdfsError.UNAVAILABLE(`the nodes did not all find each other within ${ms / 1000} s (${seen} of ${indices.length}); see the logs under each node's directory`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

/** The last `lines` lines of every log of the local cluster in `dir` (nodes and mount), merged by time. */
export function mergedLogTail (dir: string, lines: number): string[] {
  const config = readConfig(dir)
  const files = [path.join(dir, 'mount.log'), ...Array.from({ length: config.nodes }, (_, i) => path.join(dir, `node${i}`, 'ddfs.log'))]
  const all: string[] = []
  for (const f of files) {
    let text: string
    try { text = fs.readFileSync(f, 'utf8') } catch { continue }
    const own = text.split('\n').filter((l) => l !== '')
    all.push(...own.slice(-lines))  // each file's own tail is enough for the merged one
  }
  // Lines start with an ISO time: sorting them as text orders them in time.
  return all.sort().slice(-lines)
}
