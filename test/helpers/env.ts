// Test helpers: temp dirs, loop devices, node processes, all cleaned up in teardown (also
// when the test fails).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import type { Test } from 'brittle'
import { socketPath, removeStaleSocket } from '../../src/node/paths'

export const ROOT = path.join(__dirname, '..', '..', '..')
export const BIN = path.join(ROOT, 'bin', 'ddfs')
export const isRoot = process.getuid?.() === 0

export function tmpDir (t: Test, prefix = 'ddfs-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  // DDFS_TEST_KEEP=1 keeps it (node logs, mount logs) for a look after a failure.
  if (process.env.DDFS_TEST_KEEP === undefined) t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }), { order: Infinity })
  return dir
}

/** A sparse file of `size` bytes. */
export function deviceFile (dir: string, name: string, size: number): string {
  const file = path.join(dir, name)
  fs.writeFileSync(file, '')
  fs.truncateSync(file, size)
  return file
}

/** A loop device over a new file (root only); detached in teardown. */
export function loopDevice (t: Test, dir: string, size: number): string {
  const file = deviceFile(dir, `loop-${Date.now()}-${Math.random().toString(16).slice(2)}.img`, size)
  const dev = execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8' }).trim()
  t.teardown(() => { spawnSync('losetup', ['-d', dev]) }, { order: 10 })
  return dev
}

export interface CliResult { code: number, stdout: string, stderr: string }

/** Runs `ddfs ...args` to completion. */
export function ddfs (args: string[], opts: { input?: string, env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.stdin.end(opts.input ?? '')
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}

// Test ports stay below the kernel's ephemeral range (32768-60999), where any outgoing
// connection on the machine may hold a port a test node wants to listen on.
let nextPort = 3000 + (process.pid % 600) * 10

/** A free-looking port for a test node, its DHT on + 1000 (spread by pid so parallel runs do not meet). */
export function testPort (): number {
  return nextPort++
}

export interface TestNode { host: string, port: number, data: string, log: string, args: string[] }

/** Starts a node through `ddfs node start` and stops it (or kills it) in teardown. */
export async function startNode (t: Test, dir: string, devices: string[], opts: { port?: number, format?: boolean } = {}): Promise<TestNode> {
  const port = opts.port ?? testPort()
  const data = path.join(dir, `node-${port}`)
  const log = path.join(dir, `node-${port}.log`)
  const args = ['-s', '127.0.0.1', '-p', String(port), '--data', data]
  for (const d of devices) {
    const r = await ddfs(['dev', 'add', '-d', d, ...(opts.format !== false ? ['-f'] : []), ...args])
    if (r.code !== 0) throw new Error(`dev add failed: ${r.stderr}`)
  }
  const r = await ddfs(['node', 'start', ...args, '--log', log])
  if (r.code !== 0) throw new Error(`node start failed: ${r.stderr}`)
  t.teardown(() => stopNode({ host: '127.0.0.1', port, data, log, args }), { order: 0 })
  return { host: '127.0.0.1', port, data, log, args }
}

/** Stops a node; kills it when it does not stop. */
export async function stopNode (node: TestNode): Promise<void> {
  const pid = readPid(node.data)
  await ddfs(['node', 'stop', '-s', node.host, '-p', String(node.port)])
  if (pid !== null) { try { process.kill(pid, 'SIGKILL') } catch {} }
}

export function readPid (data: string): number | null {
  try { return Number(fs.readFileSync(path.join(data, 'node.pid'), 'utf8').trim()) } catch { return null }
}

export function md5 (file: string): string {
  return execFileSync('md5sum', [file], { encoding: 'utf8' }).split(' ')[0]
}

export interface TestCluster {
  dir: string
  basePort: number
  secret: string
  /** `-s 127.0.0.1 -p PORT` of node i. */
  at: (i: number) => string[]
  /** Node i's data dir. */
  data: (i: number) => string
}

// DDFS_TEST_BASE_PORT pins the range (a shared machine: each user keeps to their own ports).
let nextBase = process.env.DDFS_TEST_BASE_PORT !== undefined ? Number(process.env.DDFS_TEST_BASE_PORT) : 10000 + (process.pid % 500) * 40

/** A base port for a local cluster: nodes base+i, bootstrap base+999, DHT base+1000+i. */
export function clusterBasePort (): number {
  const base = nextBase
  nextBase += 20
  return base
}

/** kill -9 of every process of a local cluster (its nodes' and bootstrap's pid files). */
function killCluster (dir: string): void {
  let pids: Array<number | null> = []
  try { pids = [readPid(path.join(dir, '.')), ...fs.readdirSync(dir).filter((d) => d.startsWith('node')).map((d) => readPid(path.join(dir, d)))] } catch {}
  try { pids.push(Number(fs.readFileSync(path.join(dir, 'bootstrap.pid'), 'utf8'))) } catch {}
  for (const pid of pids) if (pid !== null && pid > 0) { try { process.kill(pid, 'SIGKILL') } catch {} }
}

/**
 * Clusters whose teardown has not run. A test that times out ends its process from a timer
 * (brittle throws), and teardowns never run: the clusters are killed on the way out instead.
 */
const liveClusters = new Set<string>()
const liveMounts = new Set<string>()
process.on('exit', () => {
  for (const mp of liveMounts) spawnSync('fusermount3', ['-uz', mp])
  for (const dir of liveClusters) killCluster(dir)
})

/** `ddfs up` of a local cluster; `ddfs down` and kill -9 of anything left in teardown. */
export async function localCluster (t: Test, nodes: number, nodeArgs: string[] = ['--heartbeat', '1000'], deviceSize = '1G'): Promise<TestCluster> {
  const dir = tmpDir(t, 'ddfs-cluster-')
  const basePort = clusterBasePort()
  const c: TestCluster = {
    dir,
    basePort,
    secret: path.join(dir, 'cluster.secret'),
    at: (i) => ['-s', '127.0.0.1', '-p', String(basePort + i)],
    data: (i) => path.join(dir, `node${i}`)
  }
  liveClusters.add(dir)
  t.teardown(async () => {
    await ddfs(['down', '--dir', dir])
    killCluster(dir)
    // The local sockets of nodes the test killed with -9 (a node removes its own as it stops);
    // only those nobody listens on: a node the test started beside the cluster may still run.
    await Promise.all(Array.from({ length: 20 }, async (_, i) => await removeStaleSocket(socketPath('127.0.0.1', basePort + i))))
    liveClusters.delete(dir)
  }, { order: 0 })
  const r = await ddfs(['up', '--nodes', String(nodes), '--dir', dir, '--base-port', String(basePort), '--device-size', deviceSize, '--no-mount', '--', ...nodeArgs])
  if (r.code !== 0) throw new Error(`ddfs up failed: ${r.stderr}`)
  return c
}

/** Runs a shell command with a deadline (a hung mount must fail the test, not hang it). */
export function sh (cmd: string, timeoutSeconds = 300): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn('timeout', ['-k', '5', String(timeoutSeconds), 'bash', '-c', cmd], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}

/**
 * `ddfs mount` of node i at a fresh mount point (inNode: served by the node itself); unmounted
 * (forcibly if need be) in teardown.
 */
export async function mountNode (t: Test, c: TestCluster, i: number, opts: { inNode?: boolean, env?: NodeJS.ProcessEnv } = {}): Promise<{ mp: string, log: string }> {
  const mp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-mnt-'))
  const log = path.join(c.dir, `mount-${i}-${path.basename(mp)}.log`)
  liveMounts.add(mp)
  t.teardown(async () => {
    await ddfs(['umount', mp])
    spawnSync('fusermount3', ['-uz', mp])
    fs.rmSync(mp, { recursive: true, force: true })
    liveMounts.delete(mp)
  }, { order: -1 })
  const r = await ddfs(['mount', mp, ...c.at(i), ...(opts.inNode === true ? ['--in-node'] : ['--log', log])], { env: opts.env })
  if (r.code !== 0) throw new Error(`ddfs mount failed: ${r.stderr}`)
  return { mp, log }
}
