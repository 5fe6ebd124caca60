// The `ddfs` command: the seed's ds_ctl and ds_client commands, one for one.
import fs from 'node:fs'
import path from 'node:path'
import { DdfsError, EXIT_CODES } from '../errors'
import { DEFAULT_HOST, DEFAULT_PORT, DEFAULT_LOG } from '../constants'
import { Client } from '../client/client'
import { Node, DEFAULT_HEALING, type HealingOptions } from '../node/node'
import { DataDir } from '../node/data-dir'
import { defaultDataDir, socketPath } from '../node/paths'
import { formatDevice, probeDevice } from '../store/native-store'
import { parseFlags, usage, closest, type FlagSpec, type Flags } from './args'
import { ProgressBar } from './progress'
import { OutputFile } from '../client/output-file'
import { printDevice, printObject } from './output'
import { startDetached, reportReady, reportCrashBeforeReady, waitExit } from './daemon'
import { up, down, addNode, readConfig, secretFile, mergedLogTail, type NodeReport } from './local-cluster'
import { createClusterSecret, loadClusterSecret } from '../cluster/secret'
import { startBootstrap, parseAddress } from '../cluster/discovery'
import { Mount } from '../mount/mount'
import { NodeLink } from '../mount/node-link'
import { unmount } from './unmount'
import { Logger } from '../log'

const ADDRESS: FlagSpec[] = [
  { name: 'server', short: 's', type: 'string', help: 'node address', default: DEFAULT_HOST },
  { name: 'port', short: 'p', type: 'number', help: 'node port', default: DEFAULT_PORT },
  { name: 'cluster', short: 'c', type: 'string', help: 'cluster secret file: a node joins that cluster; a client needs it to reach a node over TCP (default $DDFS_CLUSTER)' }
]
const NODE: FlagSpec[] = [
  { name: 'bootstrap', short: 'b', type: 'string', help: 'DHT bootstrap nodes HOST:PORT[,HOST:PORT]; without it a node with --cluster bootstraps the DHT itself' },
  { name: 'dht-port', type: 'number', help: 'UDP port of the node\'s DHT node (default: port + 1000)' },
  { name: 'heartbeat', type: 'number', help: 'membership refresh in ms; a member silent for 3 heartbeats leaves the view', default: 5000 },
  { name: 'metrics-port', type: 'number', help: 'serve Prometheus metrics at http://HOST:PORT/metrics' },
  { name: 'lost-after', type: 'number', help: 'seconds a member may be out of the view before it counts as lost and its fragments are rebuilt elsewhere', default: DEFAULT_HEALING.lostAfterMs / 1000 },
  { name: 'repair-rate', type: 'number', help: 'MB/s of fragments rebuilt or moved by this node (clients keep the rest)', default: DEFAULT_HEALING.repairRate / 1e6 },
  { name: 'repair-interval', type: 'number', help: 'seconds between healing scans', default: DEFAULT_HEALING.repairIntervalMs / 1000 },
  { name: 'scrub-rate', type: 'number', help: 'MB/s read back and verified by the background scrub', default: DEFAULT_HEALING.scrubRate / 1e6 },
  { name: 'scrub-interval', type: 'number', help: 'seconds between scrub passes', default: DEFAULT_HEALING.scrubIntervalMs / 1000 },
  { name: 'orphan-grace', type: 'number', help: 'seconds before a fragment no manifest points at is removed', default: DEFAULT_HEALING.orphanGraceMs / 1000 },
  { name: 'tombstone-ttl', type: 'number', help: 'seconds a delete\'s tombstone is kept at least; then it is removed once every member is in view and holds no manifest of the object', default: DEFAULT_HEALING.tombstoneTtlMs / 1000 }
]
const DIR: FlagSpec = { name: 'dir', short: 'd', type: 'string', help: 'directory of the local cluster', default: './ddfs-cluster' }
const COMMON: FlagSpec[] = [
  { name: 'json', type: 'boolean', help: 'print JSON for scripts' },
  { name: 'quiet', short: 'q', type: 'boolean', help: 'no progress bar' },
  { name: 'help', short: 'h', type: 'boolean', help: 'show this help' }
]
const DATA: FlagSpec = { name: 'data', type: 'string', help: 'node data directory (default /var/lib/ddfs/node-<port>)' }
const STREAM: FlagSpec = { name: 'stream', type: 'boolean', help: 'send the bytes over the connection even when the node could read or write the file itself' }
const LOG: FlagSpec = { name: 'log', type: 'string', help: 'log file', default: DEFAULT_LOG }

interface Command {
  name: string
  summary: string
  flags: FlagSpec[]
  examples: string[]
  run: (flags: Flags, rest: string[]) => Promise<void>
  /** Arguments after `--` are passed on (ddfs up: node options for every node). */
  passThrough?: boolean
  /** The one positional argument the command takes (shown in its usage), e.g. MOUNTPOINT. */
  positional?: string
}

const COMMANDS: Command[] = [
  {
    name: 'dev add',
    summary: 'attach a block device (or a file) to a node; -f formats it first (destroys its contents)',
    flags: [{ name: 'device', short: 'd', type: 'string', help: 'block device or file' }, { name: 'format', short: 'f', type: 'boolean', help: 'format the device (!!!)' }, ...ADDRESS, DATA, ...COMMON],
    examples: ['ddfs dev add -d /dev/sdb -f', 'ddfs dev add -d /var/tmp/disk0.img -f -p 8001'],
    run: devAdd
  },
  {
    name: 'dev rem',
    summary: 'detach a device from a node: its entries move to the node\'s other devices first; refused when they cannot, unless --force',
    flags: [{ name: 'device', short: 'd', type: 'string', help: 'block device or file' },
      { name: 'force', short: 'f', type: 'boolean', help: 'detach even when its data cannot move to another device of the node (healing rebuilds it elsewhere)' },
      ...ADDRESS, DATA, ...COMMON],
    examples: ['ddfs dev rem -d /dev/sdb', 'ddfs dev rem -d /dev/sdb --force   # the node\'s last device, in a cluster'],
    run: devRem
  },
  {
    name: 'dev query',
    summary: 'show a device\'s superblock and usage',
    flags: [{ name: 'device', short: 'd', type: 'string', help: 'block device or file' }, ...ADDRESS, ...COMMON],
    examples: ['ddfs dev query -d /dev/loop0', 'ddfs dev query -d /dev/loop0 --json'],
    run: devQuery
  },
  {
    name: 'node start',
    summary: 'start a node in the background; returns once it serves',
    flags: [...ADDRESS, ...NODE, DATA, LOG, { name: 'foreground', type: 'boolean', help: 'stay attached (do not daemonize)' }, ...COMMON],
    examples: [
      'ddfs node start -s 127.0.0.1 -p 8000',
      'ddfs node start -s 10.0.0.1 -p 8000 --cluster /etc/ddfs/cluster.secret            # the first node of a cluster',
      'ddfs node start -s 10.0.0.2 -p 8000 --cluster /etc/ddfs/cluster.secret -b 10.0.0.1:9000'
    ],
    run: nodeStart
  },
  {
    name: 'node stop',
    summary: 'stop a node (finishes requests, closes devices cleanly)',
    flags: [...ADDRESS, ...COMMON],
    examples: ['ddfs node stop -s 127.0.0.1 -p 8000'],
    run: nodeStop
  },
  {
    name: 'node drain',
    summary: 'move every fragment, manifest and name off a node (others take them), then it can be stopped with nothing lost',
    flags: [...ADDRESS, { name: 'cancel', type: 'boolean', help: 'stop draining: the node takes new data again' },
      { name: 'no-wait', type: 'boolean', help: 'return at once instead of waiting until the node is empty' }, ...COMMON],
    examples: ['ddfs node drain -s 127.0.0.1 -p 8003 && ddfs node stop -s 127.0.0.1 -p 8003', 'ddfs node drain -p 8003 --cancel'],
    run: nodeDrain
  },
  {
    name: 'node run',
    summary: 'run a node in the foreground (what node start runs)',
    flags: [...ADDRESS, ...NODE, DATA, LOG, ...COMMON],
    examples: ['ddfs node run -p 8000', 'ddfs node run -p 8001 --cluster cluster.secret -b 127.0.0.1:9000'],
    run: nodeRun
  },
  {
    name: 'node add',
    summary: 'add one more node to a running local cluster (see ddfs up)',
    flags: [DIR, ...COMMON],
    examples: ['ddfs node add --dir ./ddfs-cluster'],
    run: nodeAdd
  },
  {
    name: 'cluster init',
    summary: 'make a new cluster secret (a file, mode 0600); every node and remote client of the cluster needs a copy',
    flags: [{ name: 'file', short: 'f', type: 'string', help: 'where to write the secret', default: './cluster.secret' }, ...COMMON],
    examples: ['ddfs cluster init -f /etc/ddfs/cluster.secret'],
    run: clusterInit
  },
  {
    name: 'bootstrap',
    summary: 'run a DHT bootstrap node in the foreground (nodes join the cluster through it)',
    flags: [{ name: 'server', short: 's', type: 'string', help: 'address to bind', default: DEFAULT_HOST }, { name: 'port', short: 'p', type: 'number', help: 'UDP port', default: 9000 }, ...COMMON],
    examples: ['ddfs bootstrap -s 10.0.0.1 -p 9000'],
    run: bootstrap
  },
  {
    name: 'up',
    summary: 'start a local cluster on this machine: a DHT bootstrap node and N nodes on 127.0.0.1, each with a file-backed device',
    flags: [
      { name: 'nodes', short: 'n', type: 'number', help: 'number of nodes (default 6; an existing cluster keeps its count)' }, DIR,
      { name: 'base-port', type: 'number', help: 'node i listens on base-port + i (its DHT node on + 1000 + i, its metrics on + 2000 + i)', default: DEFAULT_PORT },
      { name: 'device-size', type: 'string', help: 'size of each node\'s device file (space is reserved when it is formatted)', default: '2G' },
      { name: 'mount', type: 'string', help: 'where to mount the store (through node 0)', default: './mnt' },
      { name: 'no-mount', type: 'boolean', help: 'do not mount the store' },
      { name: 'no-wait', type: 'boolean', help: 'return once every node serves, without waiting until they all see each other (restarting nodes of a running cluster)' },
      ...COMMON
    ],
    examples: ['ddfs up --nodes 6 --dir ./ddfs-cluster --mount ./mnt', 'ddfs up -n 3 --base-port 8100 --no-mount -- --heartbeat 1000   # node options after --'],
    run: clusterUp,
    passThrough: true
  },
  {
    name: 'mount',
    summary: 'show the store as a directory (FUSE): ls lists objects by name or id, cp/cat/rm/mv work',
    flags: [...ADDRESS, LOG, { name: 'foreground', type: 'boolean', help: 'stay attached (do not daemonize)' },
      { name: 'writeback', type: 'boolean', help: 'close() returns before the file is committed (fsync waits): faster small files; other mounts see a file once its commit lands' },
      { name: 'in-node', type: 'boolean', help: 'the node itself serves the mount (a node on this machine): no mount process, no socket between mount and node' }, ...COMMON],
    examples: ['ddfs mount /mnt/ddfs', 'ddfs mount /mnt/ddfs --in-node -p 8000', 'ddfs mount /mnt/ddfs -s 10.0.0.2 -p 8000 --cluster /etc/ddfs/cluster.secret'],
    run: mount,
    positional: 'MOUNTPOINT'
  },
  {
    name: 'umount',
    summary: 'unmount a ddfs mount (files being written are committed first)',
    flags: [...COMMON],
    examples: ['ddfs umount /mnt/ddfs'],
    run: umount,
    positional: 'MOUNTPOINT'
  },
  {
    name: 'logs',
    summary: 'show the merged tail of a local cluster\'s logs (every node and the mount, in time order)',
    flags: [DIR, { name: 'lines', short: 'n', type: 'number', help: 'how many lines', default: 50 }, ...COMMON],
    examples: ['ddfs logs --dir ./ddfs-cluster', 'ddfs logs -n 200 | grep warn'],
    run: logs
  },
  {
    name: 'down',
    summary: 'stop a local cluster started with ddfs up (its data stays in --dir)',
    flags: [DIR, ...COMMON],
    examples: ['ddfs down --dir ./ddfs-cluster'],
    run: clusterDown
  },
  {
    name: 'status',
    summary: 'show a node\'s devices and state, and the cluster members it sees',
    flags: [...ADDRESS, { name: 'watch', short: 'w', type: 'number', help: 'redraw every N seconds (Ctrl-C to stop)' },
      { name: 'wait', type: 'boolean', help: 'wait until every object has all n fragments again (a progress bar shows the repair), then print the status' },
      { name: 'timeout', type: 'number', help: 'with --wait: give up after this many seconds (exit 11)' }, ...COMMON],
    examples: ['ddfs status', 'ddfs status --json', 'ddfs status --watch 2', 'ddfs status --wait --timeout 600   # before taking the next node out'],
    run: status
  },
  {
    name: 'put',
    summary: 'store a file; prints its 32-hex object id',
    flags: [
      { name: 'file', short: 'f', type: 'string', help: 'file to store' },
      { name: 'name', type: 'string', help: 'name to list the object under' },
      { name: 'fragments', short: 'n', type: 'number', help: 'n: fragments per stripe' },
      { name: 'needed', short: 'k', type: 'number', help: 'k: fragments needed to restore' },
      { name: 'allow-degraded', type: 'boolean', help: 'place the schema even on fewer failure domains' },
      STREAM, ...ADDRESS, ...COMMON
    ],
    examples: ['ddfs put -s 127.0.0.1 -p 8000 -f myfile.txt', 'ddfs put -f big.iso -n 6 -k 4'],
    run: put
  },
  {
    name: 'get',
    summary: 'read an object back into a file',
    flags: [{ name: 'id', short: 'i', type: 'string', help: 'object id (32 hex chars)' }, { name: 'file', short: 'f', type: 'string', help: 'output file' }, STREAM, ...ADDRESS, ...COMMON],
    examples: ['ddfs get -s 127.0.0.1 -p 8000 -i d963a52161d67bf9d1e7c09ce313b050 -f output.txt'],
    run: get
  },
  {
    name: 'query',
    summary: 'show an object: size, schema, and where each fragment lives',
    flags: [{ name: 'id', short: 'i', type: 'string', help: 'object id (32 hex chars)' }, ...ADDRESS, ...COMMON],
    examples: ['ddfs query -i d963a52161d67bf9d1e7c09ce313b050'],
    run: query
  },
  {
    name: 'delete',
    summary: 'delete an object',
    flags: [{ name: 'id', short: 'i', type: 'string', help: 'object id (32 hex chars)' }, ...ADDRESS, ...COMMON],
    examples: ['ddfs delete -i d963a52161d67bf9d1e7c09ce313b050'],
    run: del
  },
  {
    name: 'ls',
    summary: 'list object ids (-l: with size, time and name)',
    flags: [{ name: 'limit', type: 'number', help: 'at most this many', default: 1000 }, { name: 'long', short: 'l', type: 'boolean', help: 'size, creation time and name of each object' }, ...ADDRESS, ...COMMON],
    examples: ['ddfs ls', 'ddfs ls -l', 'ddfs ls --json'],
    run: ls
  }
]

// ---- helpers ---------------------------------------------------------------------------------

function need (flags: Flags, name: string, cmd: string, what: string): string {
  const v = flags[name]
  if (typeof v !== 'string' || v === '') throw DdfsError.BAD_ARGUMENT(`'ddfs ${cmd}' needs ${what} (see ddfs ${cmd} --help)`)
  return v
}

function idArg (flags: Flags, cmd: string): Buffer {
  const id = need(flags, 'id', cmd, '-i ID')
  if (!/^[0-9a-fA-F]{32}$/.test(id)) throw DdfsError.BAD_ARGUMENT(`'${id}' is not an object id (32 hex characters)`)
  return Buffer.from(id, 'hex')
}

function address (flags: Flags): { host: string, port: number } {
  const port = flags.port as number
  if (port < 1 || port > 65535) throw DdfsError.BAD_ARGUMENT(`port ${port} is out of range (1-65535)`)
  return { host: flags.server as string, port }
}

/** The cluster secret from --cluster or $DDFS_CLUSTER, or null when neither is given. */
function secret (flags: Flags): Buffer | null {
  const file = typeof flags.cluster === 'string' ? flags.cluster : process.env.DDFS_CLUSTER
  return file === undefined || file === '' ? null : loadClusterSecret(file)
}

async function withClient<T> (flags: Flags, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = await Client.connect({ ...address(flags), secret: secret(flags) })
  try {
    return await fn(client)
  } finally {
    client.close()
  }
}

/** A client on the node's local socket, or null when no node runs at that address. */
async function localClient (flags: Flags): Promise<Client | null> {
  const { host, port } = address(flags)
  if (!fs.existsSync(socketPath(host, port))) return null
  try {
    const c = await Client.connect({ host, port, timeoutMs: 3000 })
    if (!c.local) { c.close(); return null }
    return c
  } catch {
    return null
  }
}

function dataDir (flags: Flags): DataDir {
  const d = flags.data
  return new DataDir(typeof d === 'string' ? path.resolve(d) : defaultDataDir(address(flags).port))
}

function out (flags: Flags, json: unknown, text: string): void {
  process.stdout.write(flags.json === true ? JSON.stringify(json, null, 2) + '\n' : text)
}

// ---- device commands -----------------------------------------------------------------------------

async function devAdd (flags: Flags): Promise<void> {
  const device = path.resolve(need(flags, 'device', 'dev add', '-d DEVICE'))
  const format = flags.format === true
  const client = await localClient(flags)
  let info: unknown
  if (client !== null) {
    try { info = await client.devAdd(device, format) } finally { client.close() }
  } else {
    // No node running: format now if asked, check the device, and record it for the next start.
    if (format) info = await formatDevice(device, { force: true })
    else {
      info = await probeDevice(device)
      if (info === null) throw DdfsError.DEVICE_NOT_FORMATTED(`${device} holds no ddfs store; add -f to format it (this destroys its contents)`)
    }
    dataDir(flags).addDevice(device)
  }
  out(flags, info, `${device} attached${format ? ' (formatted)' : ''}\n`)
}

async function devRem (flags: Flags): Promise<void> {
  const device = path.resolve(need(flags, 'device', 'dev rem', '-d DEVICE'))
  const client = await localClient(flags)
  let report = { moved: 0, left: 0 }
  if (client !== null) {
    try { report = await client.devRem(device, flags.force === true) as typeof report } finally { client.close() }
  } else if (!dataDir(flags).removeDevice(device)) {
    throw DdfsError.NOT_FOUND(`${device} is not attached to the node at ${address(flags).host}:${address(flags).port}`)
  }
  const what = report.left > 0 ? ` (${report.left} entries left on it: healing rebuilds them elsewhere)` : report.moved > 0 ? ` (${report.moved} entries moved to the node's other devices)` : ''
  out(flags, { device, ...report }, `${device} detached${what}\n`)
}

async function devQuery (flags: Flags): Promise<void> {
  const device = path.resolve(need(flags, 'device', 'dev query', '-d DEVICE'))
  const client = await localClient(flags)
  let info
  if (client !== null) {
    try { info = await client.devQuery(device) } finally { client.close() }
  } else {
    info = await probeDevice(device)
    if (info === null) throw DdfsError.DEVICE_NOT_FORMATTED(`${device} holds no ddfs store; format it with: ddfs dev add -d ${device} -f`)
  }
  printDevice(info as Record<string, unknown>, flags.json === true)
}

// ---- node commands ---------------------------------------------------------------------------

/** The detached node's arguments: every node option given (healing ones too; defaults apply again there), paths made absolute. */
function nodeArgs (flags: Flags): string[] {
  const a = ['-s', String(flags.server), '-p', String(flags.port)]
  if (typeof flags.data === 'string') a.push('--data', path.resolve(flags.data))
  if (typeof flags.log === 'string') a.push('--log', path.resolve(flags.log))
  if (typeof flags.cluster === 'string') a.push('--cluster', path.resolve(flags.cluster))
  for (const spec of NODE) {
    const v = flags[spec.name]
    if ((typeof v === 'number' || typeof v === 'string') && v !== spec.default) a.push(`--${spec.name}`, String(v))
  }
  return a
}

async function nodeStart (flags: Flags): Promise<void> {
  if (flags.foreground === true) return nodeRun(flags)
  const { host, port } = address(flags)
  const data = dataDir(flags)
  data.ensure()
  const pid = await startDetached(['node', 'run', ...nodeArgs(flags)], path.join(data.dir, 'stderr.log'))
  out(flags, { address: `${host}:${port}`, pid, dataDir: data.dir }, `node started at ${host}:${port} pid ${pid} data ${data.dir}\n`)
}

async function nodeRun (flags: Flags): Promise<void> {
  reportCrashBeforeReady()
  const { host, port } = address(flags)
  const clusterFile = typeof flags.cluster === 'string' ? path.resolve(flags.cluster) : process.env.DDFS_CLUSTER ?? null
  const bootstrapList = typeof flags.bootstrap === 'string' ? flags.bootstrap.split(',').filter((x) => x !== '') : []
  bootstrapList.forEach(parseAddress)
  if (bootstrapList.length > 0 && clusterFile === null) throw DdfsError.BAD_ARGUMENT('--bootstrap joins a cluster: give its secret with --cluster FILE (made by ddfs cluster init)')
  const heartbeat = flags.heartbeat as number
  if (!Number.isInteger(heartbeat) || heartbeat < 100) throw DdfsError.BAD_ARGUMENT('--heartbeat is at least 100 ms')
  const node = new Node({
    host,
    port,
    dataDir: typeof flags.data === 'string' ? path.resolve(flags.data) : defaultDataDir(port),
    logFile: typeof flags.log === 'string' ? path.resolve(flags.log) : DEFAULT_LOG,
    clusterFile,
    bootstrap: clusterFile === null ? null : bootstrapList,
    dhtPort: typeof flags['dht-port'] === 'number' ? flags['dht-port'] : port + 1000,
    discoveryIntervalMs: heartbeat,
    metricsPort: typeof flags['metrics-port'] === 'number' ? flags['metrics-port'] : null,
    healing: healingOptions(flags)
  })
  await node.start()  // a failure reaches the parent through main()'s reportReady
  const stop = (signal: string): void => { node.stop(signal).then(() => process.exit(0), () => process.exit(1)) }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('uncaughtException', (err) => { node.log.error('uncaught-exception', { error: err.stack ?? err.message }) })
  process.on('unhandledRejection', (err) => { node.log.error('unhandled-rejection', { error: String(err) }) })
  reportReady()
  // After a `node stop`, exit once everything is closed.
  await node.stopped
  await node.log.close()
  process.exit(0)
}

function healingOptions (flags: Flags): HealingOptions {
  const positive = (name: string, scale: number): number => {
    const v = flags[name] as number
    if (!(v > 0) || !Number.isFinite(v)) throw DdfsError.BAD_ARGUMENT(`--${name} takes a positive number`)
    return v * scale
  }
  return {
    lostAfterMs: positive('lost-after', 1000),
    repairRate: positive('repair-rate', 1e6),
    repairIntervalMs: positive('repair-interval', 1000),
    scrubRate: positive('scrub-rate', 1e6),
    scrubIntervalMs: positive('scrub-interval', 1000),
    orphanGraceMs: positive('orphan-grace', 1000),
    tombstoneTtlMs: positive('tombstone-ttl', 1000)
  }
}

interface Holding { fragments: number, manifests: number, names: number, bytes: number }

async function nodeDrain (flags: Flags): Promise<void> {
  const { host, port } = address(flags)
  const client = await localClient(flags)
  if (client === null) throw DdfsError.NODE_NOT_RUNNING(`no ddfs node runs at ${host}:${port} on this machine (drain runs on the node's machine)`)
  try {
    const drain = flags.cancel !== true
    let report = await client.drain(drain) as { holding: Holding }
    const left = (h: Holding): number => h.fragments + h.manifests + h.names
    if (!drain || flags['no-wait'] === true) {
      out(flags, { address: `${host}:${port}`, draining: drain, holding: report.holding }, drain
        ? `node ${host}:${port} is draining: ${left(report.holding)} entries (${mibText(report.holding.bytes)}) to move (watch with ddfs status)\n`
        : `node ${host}:${port} takes new data again\n`)
      return
    }
    const total = report.holding.bytes
    const bar = new ProgressBar(total, `draining ${host}:${port}`, flags.quiet === true, 0)
    while (left(report.holding) > 0) {
      bar.update(Math.max(0, total - report.holding.bytes))
      await new Promise((resolve) => setTimeout(resolve, 1000))
      report = await client.health() as { holding: Holding }
    }
    bar.update(total)
    bar.finish()
    out(flags, { address: `${host}:${port}`, draining: true, holding: report.holding },
      `node ${host}:${port} is drained: it holds no data; stop it with: ddfs node stop -s ${host} -p ${port}\n`)
  } finally {
    client.close()
  }
}

function mibText (bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`
}

async function nodeStop (flags: Flags): Promise<void> {
  const { host, port } = address(flags)
  const client = await localClient(flags)
  if (client === null) throw DdfsError.NODE_NOT_RUNNING(`no ddfs node runs at ${host}:${port} on this machine`)
  let pid: number
  try {
    pid = ((await client.stopNode()) as { pid: number }).pid
  } finally {
    client.close()
  }
  // Wait until the process is gone, so a following start on the same port succeeds.
  await waitExit(pid, 30000)
  out(flags, { address: `${host}:${port}`, pid }, `node at ${host}:${port} (pid ${pid}) stopped\n`)
}

async function status (flags: Flags): Promise<void> {
  if (flags.wait === true) await waitHealed(flags)
  const every = flags.watch as number | undefined
  if (every === undefined) return await statusOnce(flags)
  if (!(every > 0)) throw DdfsError.BAD_ARGUMENT('--watch takes a number of seconds')
  for (;;) {
    if (process.stdout.isTTY) process.stdout.write('\x1b[H\x1b[2J')
    await statusOnce(flags).catch((err) => process.stdout.write(`${DdfsError.from(err).message}\n`))
    await new Promise((resolve) => setTimeout(resolve, every * 1000))
  }
}

/**
 * ddfs status --wait: polls the cluster's durability until nothing is below n fragments and no
 * member is out of reach, drawing the repair as a progress bar (bytes rebuilt since the wait
 * began, of those plus what is left).
 */
async function waitHealed (flags: Flags): Promise<void> {
  const timeout = flags.timeout as number | undefined
  if (timeout !== undefined && !(timeout > 0)) throw DdfsError.BAD_ARGUMENT('--timeout takes a positive number of seconds')
  const deadline = timeout === undefined ? Infinity : Date.now() + timeout * 1000
  const bar = new ProgressBar(0, 'repair', flags.quiet === true, 0)
  let firstRepaired: number | null = null
  let total = 0  // a node reports what its last scan found, so the total only grows
  for (;;) {
    const s = await withClient(flags, (c) => c.status()) as { durability: Record<string, any> | null }
    const d = s.durability
    if (d === null) break  // a standalone node: nothing to heal between nodes
    firstRepaired ??= Number(d.repairedBytes)
    const done = Math.max(0, Number(d.repairedBytes) - firstRepaired)
    total = Math.max(total, done + Number(d.bytesToRepair))
    if (d.objectsBelowN === 0 && d.bytesToRepair === 0 && d.nodesUnreachable === 0) { bar.update(total, total); break }
    bar.update(done, total)
    if (Date.now() > deadline) {
      bar.finish()
      throw DdfsError.UNAVAILABLE(`not healed after ${String(timeout)} s: ${String(d.objectsBelowN)} objects below n fragments, ` +
        `${mibText(Number(d.bytesToRepair))} to repair, ${String(d.nodesUnreachable)} member(s) not reporting` +
        (d.objectsBelowN > 0 && d.bytesToRepair === 0 ? ' (a member that is down is waited for until --lost-after has passed)' : ''))
    }
    await new Promise((resolve) => setTimeout(resolve, 1000))
  }
  bar.finish()
}

async function statusOnce (flags: Flags): Promise<void> {
  const s = await withClient(flags, (c) => c.status()) as {
    address: string, pid: number, dataDir: string, uptimeSeconds: number, mode: string, publicKey: string, draining: boolean, mounts?: string[],
    members: Array<{ address: string, publicKey: string, self: boolean, state: string }> | null,
    devices: Array<Record<string, number | string>>, failedDevices: Array<{ path: string, error: string }>,
    durability: Record<string, any> | null, scrub?: { bytesChecked: number, damagedFound: number, repaired: number, passes: number } | null,
    tombstones?: number, tombstonesCollected?: number
  }
  let text = `node ${s.address} pid ${s.pid} up ${s.uptimeSeconds}s data ${s.dataDir} key ${s.publicKey.slice(0, 16)}${s.draining ? ' DRAINING' : ''}\n`
  for (const mp of s.mounts ?? []) text += `  serves the mount at ${mp}\n`
  if (s.members === null) {
    text += '  standalone (no cluster): objects are spread over this node\'s devices\n'
    if (s.scrub != null) text += `  scrub: ${mibText(s.scrub.bytesChecked)} checked in ${String(s.scrub.passes)} passes, ${String(s.scrub.damagedFound)} damaged found, ${String(s.scrub.repaired)} repaired\n`
    if (s.tombstones !== undefined) text += `  tombstones: ${String(s.tombstones)} held (deleted ids, kept --tombstone-ttl), ${String(s.tombstonesCollected ?? 0)} removed\n`
  } else {
    const inView = s.members.filter((m) => m.state === 'live' || m.state === 'draining').length
    text += `  cluster: ${inView} member${inView === 1 ? '' : 's'} in view\n`
    for (const m of s.members) text += `    ${m.address.padEnd(22)} ${m.state.padEnd(9)} ${m.publicKey.slice(0, 16)}${m.self ? '  (this node)' : ''}\n`
  }
  const d = s.durability
  if (d !== null) {
    const eta = d.etaSeconds === null ? 'unknown' : `${String(d.etaSeconds)}s`
    text += `  objects ${String(d.objects)}: below n ${String(d.objectsBelowN)}, below k+1 ${String(d.objectsBelowK1)}, unreadable ${String(d.objectsUnreadable)}\n`
    text += `  to repair ${mibText(Number(d.bytesToRepair))} at ${(Number(d.repairRateBytesPerSec) / 1e6).toFixed(1)} MB/s, ETA ${eta}; repaired ${mibText(Number(d.repairedBytes))}\n`
    text += `  scrub: ${mibText(Number(d.scrub.bytesChecked))} checked, ${String(d.scrub.damagedFound)} damaged found, ${String(d.scrub.repaired)} repaired\n`
    if (Number(d.nodesUnreachable) > 0) text += `  ${String(d.nodesUnreachable)} member(s) did not report: their objects are not counted\n`
  }
  for (const d of s.devices) {
    const pct = (100 * Number(d.usedBlocks) / Number(d.blocks)).toFixed(1)
    text += `  ${String(d.path)}  sb_id ${String(d.sbId)}  ${pct}% used (${String(d.usedBlocks)}/${String(d.blocks)} blocks)  entries ${String(d.entries)}\n`
  }
  for (const d of s.failedDevices) text += `  ${d.path}  FAILED: ${d.error}\n`
  if (s.devices.length === 0) text += '  no devices attached: ddfs dev add -d DEVICE -f\n'
  out(flags, s, text)
}

// ---- object commands -------------------------------------------------------------------------

async function put (flags: Flags): Promise<void> {
  const file = need(flags, 'file', 'put', '-f FILE')
  let st: fs.Stats
  try {
    st = fs.statSync(file)
  } catch {
    throw DdfsError.NOT_FOUND(`no such file: ${file}`)
  }
  if (!st.isFile()) throw DdfsError.BAD_ARGUMENT(`${file} is not a regular file`)
  const n = flags.fragments as number | undefined
  const k = flags.needed as number | undefined
  if ((n === undefined) !== (k === undefined)) throw DdfsError.BAD_ARGUMENT('give both -n N and -k K, or neither')
  if (n !== undefined && k !== undefined && (k < 1 || n < k || n > 64)) throw DdfsError.BAD_ARGUMENT(`schema -n ${n} -k ${k} is invalid: need 1 <= k <= n <= 64`)
  const meta = { size: st.size, name: typeof flags.name === 'string' ? flags.name : null, k: k ?? 0, m: n !== undefined && k !== undefined ? n - k : 0, allowDegraded: flags['allow-degraded'] === true }
  const bar = new ProgressBar(st.size, 'put', flags.quiet === true)
  const info = await withClient(flags, async (c) => {
    // On the node's machine the node reads the file itself: no bytes cross the socket.
    if (c.local && flags.stream !== true) return await c.putLocal(path.resolve(file), meta) as Record<string, unknown>
    return await c.put(fs.createReadStream(file, { highWaterMark: 1024 * 1024 }), meta, (b) => bar.update(b))
  })
  bar.finish()
  out(flags, info, `${String(info.id)}\n`)
}

async function get (flags: Flags): Promise<void> {
  const id = idArg(flags, 'get')
  const file = path.resolve(need(flags, 'file', 'get', '-f FILE'))
  // Into a temp file beside the output, renamed at the end: a failed get leaves no partial file.
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.ddfs-${process.pid}`)
  let output: OutputFile
  try {
    output = OutputFile.open(tmp)
  } catch (err) {
    throw DdfsError.BAD_ARGUMENT(`cannot write ${file}: ${(err as Error).message}`)
  }
  try {
    let bar: ProgressBar | null = null
    const { size } = await withClient(flags, async (c) => {
      // On the node's machine the node writes the file itself: no bytes cross the socket.
      if (c.local && flags.stream !== true) {
        output.abort()
        return await c.getLocal(id, tmp) as { size: number }
      }
      const r = await c.get(id, (piece) => output.write(piece), {}, (b) => {
        bar ??= new ProgressBar(b, 'get', flags.quiet === true)
        bar.update(b)
      })
      await output.close()
      return r
    })
    fs.renameSync(tmp, file)
    ;(bar as ProgressBar | null)?.finish()
    out(flags, { id: id.toString('hex'), file, size }, '')
  } catch (err) {
    output.abort()
    fs.rmSync(tmp, { force: true })
    throw err
  }
}

async function query (flags: Flags): Promise<void> {
  const id = idArg(flags, 'query')
  const info = await withClient(flags, (c) => c.query(id))
  printObject(info as Record<string, unknown>, flags.json === true)
}

async function del (flags: Flags): Promise<void> {
  const id = idArg(flags, 'delete')
  await withClient(flags, (c) => c.delete(id))
  out(flags, { id: id.toString('hex'), deleted: true }, '')
}

async function ls (flags: Flags): Promise<void> {
  if (flags.long === true) {
    const all = (await withClient(flags, (c) => c.catalog())).sort((a, b) => Buffer.compare(a.id, b.id)).slice(0, flags.limit as number)
    const rows = all.map((e) => ({ id: e.id.toString('hex'), size: e.size, createdAt: new Date(e.createdAt).toISOString(), name: e.name }))
    out(flags, rows, rows.map((r) => `${r.id}  ${String(r.size).padStart(12)}  ${r.createdAt}  ${r.name ?? ''}\n`).join(''))
    return
  }
  const ids = await withClient(flags, (c) => c.list(null, flags.limit as number)) as string[]
  out(flags, ids, ids.map((i) => i + '\n').join(''))
}

// ---- cluster commands ------------------------------------------------------------------------

async function clusterInit (flags: Flags): Promise<void> {
  const file = path.resolve(flags.file as string)
  createClusterSecret(file)
  out(flags, { file }, `cluster secret written to ${file} (mode 0600); copy it to every node and remote client\n`)
}

async function bootstrap (flags: Flags): Promise<void> {
  reportCrashBeforeReady()
  const { address: at, dht } = await startBootstrap(flags.server as string, flags.port as number).catch((err: Error) => {
    throw err instanceof DdfsError ? err : DdfsError.NODE_RUNNING(`cannot run a bootstrap node on ${String(flags.server)}:${String(flags.port)}: ${err.message}`)
  })
  const stop = (): void => { dht.destroy({ force: true }).finally(() => process.exit(0)) }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  reportReady()
  if (process.stdout.isTTY) process.stdout.write(`DHT bootstrap node at ${at}\n`)
  await new Promise(() => {})
}

function printNodes (flags: Flags, dir: string, nodes: NodeReport[], mountpoint: string | null = null): void {
  const lines = nodes.map((n) => `  node${n.index}  ${n.address}  pid ${n.pid}${n.started ? '' : ' (was running)'}  data ${n.dataDir}`)
  const port = nodes[0]?.address.split(':')[1] ?? DEFAULT_PORT
  out(flags, { dir, secret: secretFile(dir), nodes, mountpoint }, `local cluster in ${dir} (secret ${secretFile(dir)}):\n${lines.join('\n')}\n` +
    (mountpoint !== null ? `mounted at ${mountpoint}: try cp FILE ${mountpoint}/ && ls ${mountpoint}\n` : '') +
    `status: ddfs status -p ${port}    logs: ddfs logs --dir ${dir} (each node's: DATA/ddfs.log)` +
    (nodes[0]?.metrics != null ? `    metrics: ${nodes[0].metrics} (node i: port + i)` : '') + '\n' +
    `try: ddfs put -p ${port} -f FILE    stop: ddfs down --dir ${dir}\n`)
}

function parseSize (s: string): number {
  const m = /^(\d+)([KMGT]?)i?B?$/i.exec(s)
  if (m === null) throw DdfsError.BAD_ARGUMENT(`'${s}' is not a size (like 512M or 4G)`)
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2].toUpperCase() === '' ? ' ' : m[2].toUpperCase())
}

async function clusterUp (flags: Flags, rest: string[]): Promise<void> {
  const dir = path.resolve(flags.dir as string)
  const had = fs.existsSync(path.join(dir, 'cluster.json')) ? readConfig(dir).nodes : 6
  const nodes = (flags.nodes as number | undefined) ?? had
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 64) throw DdfsError.BAD_ARGUMENT('--nodes is 1 to 64')
  const basePort = flags['base-port'] as number
  if (!Number.isInteger(basePort) || basePort < 1 || basePort + 2000 + nodes > 65535) throw DdfsError.BAD_ARGUMENT(`--base-port ${basePort} leaves no room for ${nodes} nodes and their DHT and metrics ports (base + 1000 + i, base + 2000 + i)`)
  const mountpoint = flags['no-mount'] === true ? null : path.resolve(flags.mount as string)
  const reports = await up(dir, { basePort, nodes, deviceSize: parseSize(flags['device-size'] as string), nodeArgs: rest }, mountpoint, flags['no-wait'] !== true)
  printNodes(flags, dir, reports, mountpoint)
}

async function clusterDown (flags: Flags): Promise<void> {
  const dir = path.resolve(flags.dir as string)
  const { stopped } = await down(dir)
  out(flags, { dir, stopped }, stopped.length === 0 ? `nothing was running in ${dir}\n` : `stopped ${stopped.join(', ')}\n`)
}

async function logs (flags: Flags): Promise<void> {
  const lines = flags.lines as number
  if (!Number.isInteger(lines) || lines < 1) throw DdfsError.BAD_ARGUMENT('--lines is a positive number')
  const tail = mergedLogTail(path.resolve(flags.dir as string), lines)
  out(flags, tail, tail.map((l) => l + '\n').join(''))
}

async function nodeAdd (flags: Flags): Promise<void> {
  const dir = path.resolve(flags.dir as string)
  readConfig(dir)
  printNodes(flags, dir, [await addNode(dir)])
}

// ---- mount ---------------------------------------------------------------------------------

function mountpointArg (rest: string[], cmd: string): string {
  if (rest.length !== 1) throw DdfsError.BAD_ARGUMENT(`'ddfs ${cmd}' needs one MOUNTPOINT (see ddfs ${cmd} --help)`)
  return path.resolve(rest[0])
}

async function mount (flags: Flags, rest: string[]): Promise<void> {
  const mp = mountpointArg(rest, 'mount')
  if (flags['in-node'] === true) {
    if (flags.foreground === true) throw DdfsError.BAD_ARGUMENT('--in-node and --foreground do not go together: the node serves the mount, no process stays attached')
    const { host, port } = address(flags)
    if (!fs.existsSync(socketPath(host, port))) throw DdfsError.NODE_NOT_RUNNING(`no node at ${host}:${port} runs on this machine: --in-node needs one here (ddfs node start -s ${host} -p ${port}), or mount without --in-node`)
    const c = await Client.connect({ host, port })
    try {
      const { pid } = await c.mount(mp, flags.writeback === true) as { pid: number }
      out(flags, { mountpoint: mp, pid, node: `${host}:${port}` }, `mounted ${mp} (served by the node at ${host}:${port}, pid ${pid}); unmount with: ddfs umount ${mp}\n`)
    } finally {
      c.close()
    }
    return
  }
  if (flags.foreground !== true) {
    const args = ['mount', mp, '--foreground', '-s', String(flags.server), '-p', String(flags.port)]
    if (typeof flags.cluster === 'string') args.push('--cluster', path.resolve(flags.cluster))
    if (typeof flags.log === 'string') args.push('--log', path.resolve(flags.log))
    if (flags.writeback === true) args.push('--writeback')
    const pid = await startDetached(args)
    out(flags, { mountpoint: mp, pid }, `mounted ${mp} (pid ${pid}); unmount with: ddfs umount ${mp}\n`)
    return
  }
  reportCrashBeforeReady()
  const { host, port } = address(flags)
  const log = new Logger(typeof flags.log === 'string' ? path.resolve(flags.log) : DEFAULT_LOG, `mount:${mp}`)
  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    m.stop().then(() => log.close()).then(() => process.exit(0), () => process.exit(1))
  }
  // (unmounted from outside, the mount cleans up and this process ends as on SIGTERM)
  const m = await Mount.start({ mountpoint: mp, link: new NodeLink({ host, port, secret: secret(flags) }), log, writeback: flags.writeback === true, onEnded: stop })
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.on('uncaughtException', (err) => { log.error('uncaught-exception', { error: err.stack ?? err.message }) })
  process.on('unhandledRejection', (err) => { log.error('unhandled-rejection', { error: String(err) }) })
  reportReady()
  await new Promise(() => {})
}

async function umount (flags: Flags, rest: string[]): Promise<void> {
  const mp = mountpointArg(rest, 'umount')
  if (!await unmount(mp)) throw DdfsError.NOT_FOUND(`${mp} is not a ddfs mount`)
  out(flags, { mountpoint: mp }, `unmounted ${mp}\n`)
}

// ---- entry -----------------------------------------------------------------------------------

function helpText (): string {
  const lines = COMMANDS.map((c) => `  ${c.name.padEnd(13)} ${c.summary}`)
  return `ddfs: a distributed, decentralized, fault-tolerant file system\n\nUsage: ddfs <command> [flags]   (ddfs <command> --help for its flags)\n\nCommands:\n${lines.join('\n')}\n\n` +
    'Exit codes: 0 ok, 1 internal, 2 bad argument, 3 not found, 4 device in use or not formatted, 5 device full,\n' +
    '  6 corrupt data, 7 I/O error, 8 node not running / already running, 9 protocol, 10 permission, 11 unavailable\n'
}

export async function main (argv: string[]): Promise<number> {
  const words: string[] = []
  while (words.length < 2 && argv.length > 0 && !argv[0].startsWith('-')) words.push(argv.shift() as string)
  if (words.length === 0) {
    process.stdout.write(helpText())
    return argv.includes('--help') || argv.includes('-h') || argv.length === 0 ? 0 : 2
  }
  let cmd = COMMANDS.find((c) => c.name === words.join(' '))
  if (cmd === undefined && words.length === 2) {
    cmd = COMMANDS.find((c) => c.name === words[0])
    if (cmd !== undefined) argv.unshift(words[1])
  }
  if (cmd === undefined) {
    const near = closest(words.join(' '), COMMANDS.map((c) => c.name))
    const groups = [...new Set(COMMANDS.filter((c) => c.name.startsWith(words[0] + ' ')).map((c) => c.name))]
    let msg = `unknown command 'ddfs ${words.join(' ')}'`
    if (near !== null) msg += `; did you mean 'ddfs ${near}'?`
    else if (groups.length > 0) msg += `; try one of: ${groups.map((g) => `ddfs ${g}`).join(', ')}`
    process.stderr.write(`ddfs: ${msg} (see ddfs --help)\n`)
    return EXIT_CODES.BAD_ARGUMENT
  }
  try {
    if (argv.includes('--help') || argv.includes('-h')) {
      process.stdout.write(`ddfs ${cmd.name}${cmd.positional !== undefined ? ` ${cmd.positional}` : ''}: ${cmd.summary}\n\nFlags:\n${usage(cmd.flags)}\n\nExamples:\n${cmd.examples.map((e) => `  ${e}`).join('\n')}\n`)
      return 0
    }
    const dash = argv.indexOf('--')
    const passed = cmd.passThrough === true && dash >= 0 ? argv.splice(dash).slice(1) : []
    const { flags, rest } = parseFlags(argv, cmd.flags, cmd.name)
    if (rest.length > (cmd.positional !== undefined ? 1 : 0)) throw DdfsError.BAD_ARGUMENT(`unexpected argument '${rest[rest.length - 1]}' (see ddfs ${cmd.name} --help)`)
    await cmd.run(flags, cmd.positional !== undefined ? rest : passed)
    return 0
  } catch (err) {
    reportReady(err)  // a detached command that failed before it served tells its parent why
    const e = DdfsError.from(err)
    process.stderr.write(`ddfs ${cmd.name}: ${e.message}\n`)
    return EXIT_CODES[e.code] ?? 1
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (err) => { console.error(err); process.exitCode = 1 })
}
