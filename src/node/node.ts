// A ddfs node: its devices, its object store, a local admin socket and an encrypted TCP port
// (the cluster transport: only holders of the cluster secret get past its handshake). A node
// started with a cluster secret and bootstrap addresses joins that cluster and spreads objects
// over its members; without, it is a cluster of its own and spreads them over its devices.
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { DdfsError } from '../errors'
import { Logger } from '../log'
import { FrameConnection } from '../wire/connection'
import { LocalObjectStore } from '../object/local-object-store'
import { ClusterObjectStore } from '../object/cluster-object-store'
import { DeviceSite } from '../object/device-site'
import type { ObjectStore } from '../object/types'
import type { CapacityMessage } from '../wire/messages'
import { listen as listenSecure, type SecureServer } from '../cluster/transport'
import { secureStream } from '../cluster/stream'
import { createClusterSecret, loadClusterSecret } from '../cluster/secret'
import { NodeDevicePool } from './device-pool'
import { DataDir } from './data-dir'
import { ClusterLink } from './cluster-link'
import { socketPath, removeStaleSocket } from './paths'
import { Session } from './session'
import { Metrics, type Sample } from './metrics'
import { Healer } from './healer'
import { Scrubber, ClusterCopies, LocalCopies, type CopySource } from './scrubber'
import { LocalTombstones } from './local-tombstones'
import { ClientActivity } from './rate-limiter'
import { idPages } from '../store/walk'
import { enableFaultLayer, faultLayer, type FaultRules } from '../cluster/fault-layer'
import { DeviceFiller } from './device-filler'
import { EntryKind } from '../store/types'
import { Mount } from '../mount/mount'
import { InNodeLink } from '../mount/in-node-link'
import type { BlockStore, DeviceInfo } from '../store/types'

export interface NodeOptions {
  host: string
  port: number
  dataDir: string
  logFile: string | null
  /** The cluster secret file; null: the node's own, `<dataDir>/cluster.secret` (made on first start). */
  clusterFile: string | null
  /** DHT bootstrap addresses; [] runs the bootstrap node itself. null: a standalone node (no DHT). */
  bootstrap: string[] | null
  /** UDP port of the node's DHT node (default: port + 1000). */
  dhtPort: number
  /** Discovery refresh period in ms (members silent for 3 periods leave the view). */
  discoveryIntervalMs?: number
  /** Serve Prometheus metrics on this port (same host), or not at all. */
  metricsPort?: number | null
  /** Healing (cluster nodes); defaults in DEFAULT_HEALING. */
  healing?: Partial<HealingOptions>
}

export interface HealingOptions {
  /** A member out of the view this long is lost and its fragments are rebuilt elsewhere. */
  lostAfterMs: number
  /** Pause between healing scans. */
  repairIntervalMs: number
  /** Fragment bytes per second written by repair. */
  repairRate: number
  /** Bytes per second read by scrub. */
  scrubRate: number
  /** Pause between scrub passes. */
  scrubIntervalMs: number
  /** Fragments no manifest points at are removed after this long. */
  orphanGraceMs: number
  /** A tombstone is kept at least this long after this node first saw it (see Healer). */
  tombstoneTtlMs: number
}

/** How long ddfs status waits for each member's durability report. */
const HEALTH_TIMEOUT_MS = 1500

export const DEFAULT_HEALING: HealingOptions = {
  lostAfterMs: 10 * 60_000,
  repairIntervalMs: 10_000,
  repairRate: 200 * 1024 * 1024,
  scrubRate: 20 * 1024 * 1024,
  scrubIntervalMs: 6 * 3600_000,
  orphanGraceMs: 30 * 60_000,
  tombstoneTtlMs: 7 * 86400_000
}

export class Node {
  readonly devices = new NodeDevicePool()
  readonly metrics = new Metrics()
  /** Client traffic seen by this node: healing and scrub slow down while there is some. */
  readonly clients = new ClientActivity()
  readonly site: DeviceSite
  objects: ObjectStore
  readonly data: DataDir
  readonly log: Logger
  readonly socket: string
  cluster: ClusterLink | null = null
  healer: Healer | null = null
  scrubber: Scrubber | null = null
  /** A standalone node's tombstone collection (a cluster node's healer does it there). */
  private localTombstones: LocalTombstones | null = null
  private tcp: SecureServer | null = null
  private local: net.Server | null = null
  private readonly connections = new Set<FrameConnection>()
  /** Mounts this node serves itself (`ddfs mount --in-node`), by mount point. */
  private readonly mounts = new Map<string, Mount>()
  private stopping: Promise<void> | null = null
  private onFaultRules: ((rules: FaultRules) => void) | null = null
  private socketIno = -1
  private onStopped: () => void = () => {}
  /** Resolves once the node has stopped (by `node stop`, a signal, or stop()). */
  readonly stopped = new Promise<void>((resolve) => { this.onStopped = resolve })
  private readonly startedAt = Date.now()
  /** Devices in the config that could not be attached, with the reason. */
  readonly failedDevices = new Map<string, string>()

  constructor (readonly opts: NodeOptions) {
    this.data = new DataDir(opts.dataDir)
    this.log = new Logger(opts.logFile, `${opts.host}:${opts.port}`)
    this.socket = socketPath(opts.host, opts.port)
    this.site = new DeviceSite(this.devices, `${opts.host}:${opts.port}`)
    this.objects = notServing()
  }

  private clusterSecret (): Buffer {
    if (this.opts.clusterFile !== null) return loadClusterSecret(this.opts.clusterFile)
    const own = path.join(this.opts.dataDir, 'cluster.secret')
    return fs.existsSync(own) ? loadClusterSecret(own) : createClusterSecret(own)
  }

  /** Opens the devices in the config, then serves. Releases everything it took if it fails. */
  async start (): Promise<void> {
    try {
      this.data.ensure()
      const keyPair = this.data.keyPair()
      // The local socket first: it tells a second start on the same address to stop early.
      await this.listenLocal()
      // A device that fails to open (wiped, missing, corrupt) leaves the node running degraded:
      // the others still serve, and erasure coding covers what that device held.
      for (const device of this.data.readConfig().devices) {
        try {
          await this.devices.attach(device, false)
          this.log.info('device-attached', { device })
        } catch (err) {
          const e = DdfsError.from(err)
          this.failedDevices.set(device, e.message)
          this.log.error('device-failed', { device, error: e.message })
        }
      }
      const layer = enableFaultLayer(this.opts.port)
      if (layer !== null) {
        // Test runs only (DDFS_FAULT_FILE): fill or free devices as the fault rules say.
        const filler = new DeviceFiller(() => this.devices.stores(), this.log)
        this.log.warn('fault-layer-enabled', { file: layer.file })
        await filler.apply(layer.rules)
        this.onFaultRules = (rules) => { void filler.apply(rules) }
        layer.on('rules', this.onFaultRules)
      }
      const secret = this.clusterSecret()
      const address = `${this.opts.host}:${this.opts.port}`
      try {
        this.tcp = await listenSecure({ host: this.opts.host, port: this.opts.port, secret, keyPair }, (conn) => {
          this.serve(new FrameConnection(secureStream(conn)), false, conn.remoteAddress)
        })
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'EADDRINUSE') throw DdfsError.NODE_RUNNING(`${address} is already in use (another node or program listens there)`)
        throw DdfsError.IO(`cannot listen on ${address}: ${(err as Error).message}`)
      }
      // Someone without the secret (or with a different one) knocked: dropped at the handshake.
      this.tcp.on('reject', (err, remote) => this.log.warn('peer-rejected', { peer: remote, error: err.message }))
      this.tcp.on('error', (err) => this.log.error('tcp-error', { error: err.message }))
      const healing = { ...DEFAULT_HEALING, ...this.opts.healing }
      if (this.opts.bootstrap !== null) {
        this.cluster = new ClusterLink({
          secret,
          keyPair,
          host: this.opts.host,
          port: this.opts.port,
          bootstrap: this.opts.bootstrap,
          dhtPort: this.opts.dhtPort,
          intervalMs: this.opts.discoveryIntervalMs,
          lostAfterMs: healing.lostAfterMs,
          draining: this.data.readConfig().draining
        }, this.site, this.log)
        await this.cluster.start()
        const objects = new ClusterObjectStore(this.cluster)
        this.healer = new Healer(this.cluster, objects, this.site, this.log, { intervalMs: healing.repairIntervalMs, repairRate: healing.repairRate, orphanGraceMs: healing.orphanGraceMs, tombstoneTtlMs: healing.tombstoneTtlMs, settleMs: 3 * (this.opts.discoveryIntervalMs ?? 5000) }, this.clients)
        const scrubber = this.attachScrubber(new ClusterCopies(this.cluster, objects), healing)
        // One healing scan before the node reports ready: a node back from downtime applies the
        // deletes it missed before anyone lists its stale manifests (bounded: peers may be starting too).
        const healer = this.healer
        await new Promise<void>((resolve) => { const timer = setTimeout(resolve, 5000); healer.scan().finally(() => { clearTimeout(timer); resolve() }).catch(() => {}) })
        this.healer.start()
        scrubber.start()
        this.objects = objects
      } else {
        const objects = new LocalObjectStore(this.devices, this.site)
        this.attachScrubber(new LocalCopies(this.site, objects), healing).start()
        this.localTombstones = new LocalTombstones(this.site, this.log, { ttlMs: healing.tombstoneTtlMs, devicesWhole: () => this.failedDevices.size === 0 })
        this.localTombstones.start()
        this.objects = objects
      }
      if (this.opts.metricsPort !== undefined && this.opts.metricsPort !== null) {
        await this.metrics.listen(this.opts.host, this.opts.metricsPort, { gauges: () => this.gauges() })
      }
      fs.writeFileSync(this.data.pidFile, `${process.pid}\n`)
      this.log.info('node-started', { pid: process.pid, data: this.opts.dataDir, devices: this.devices.stores().length, publicKey: keyPair.publicKey.toString('hex'), cluster: this.cluster !== null })
    } catch (err) {
      this.log.error('node-start-failed', { error: DdfsError.from(err).message })
      await this.release()
      throw err
    }
  }

  /** The background scrub (not started), and the check a read that met a damaged fragment asks for. */
  private attachScrubber (copies: CopySource, healing: HealingOptions): Scrubber {
    const scrubber = new Scrubber(this.site, copies, this.log, { rate: healing.scrubRate, intervalMs: healing.scrubIntervalMs }, this.clients)
    this.site.scrubber = (id) => scrubber.checkId(id)
    this.scrubber = scrubber
    return scrubber
  }

  private async listenLocal (): Promise<void> {
    fs.mkdirSync(path.dirname(this.socket), { recursive: true, mode: 0o700 })
    // A socket file left by a node that died goes; one that answers is a running node's.
    if (!await removeStaleSocket(this.socket)) throw DdfsError.NODE_RUNNING(`a node already serves ${this.opts.host}:${this.opts.port} (socket ${this.socket})`)
    this.local = net.createServer((sock) => {
      sock.on('error', () => {})
      this.serve(new FrameConnection(sock), true, 'local')
    })
    await listen(this.local, () => this.local?.listen(this.socket), this.socket)
    fs.chmodSync(this.socket, 0o600)
    this.socketIno = fs.statSync(this.socket).ino
  }

  private ownsSocket (): boolean {
    try { return fs.statSync(this.socket).ino === this.socketIno } catch { return false }
  }

  private serve (conn: FrameConnection, admin: boolean, peer: string): void {
    if (this.stopping !== null) { conn.close(); return }
    this.connections.add(conn)
    conn.on('close', () => this.connections.delete(conn))
    // eslint-disable-next-line no-new
    new Session(this, conn, admin, peer)
  }

  async attachDevice (device: string, format: boolean): Promise<DeviceInfo> {
    const info = await this.devices.attach(device, format)
    this.site.invalidate()
    this.failedDevices.delete(path.resolve(device))
    this.data.addDevice(path.resolve(device))
    this.log.info('device-attached', { device: path.resolve(device), formatted: format, sbId: info.sbId })
    return info
  }

  /**
   * Detaches a device after moving its entries to the node's other devices. Refuses when they
   * cannot take them (no other device, or full), since that would drop objects below n
   * fragments, unless `force`: then healing rebuilds what it held elsewhere.
   */
  async detachDevice (device: string, force = false): Promise<{ moved: number, left: number }> {
    const p = path.resolve(device)
    if (this.failedDevices.delete(p)) {
      this.data.removeDevice(p)
      this.log.info('device-detached', { device: p })
      return { moved: 0, left: 0 }
    }
    const store = this.devices.get(p)
    if (store === undefined) throw DdfsError.NOT_FOUND(`${p} is not attached to this node`)
    const others = this.devices.stores().filter((s) => s !== store)
    let moved = 0
    let left = 0
    try {
      moved = await this.moveEntries(store, others)
    } catch (err) {
      const e = DdfsError.from(err)
      left = store.info().entries
      if (!force) {
        throw DdfsError.DEVICE_IN_USE(`${p} holds ${left} entries the node's other devices cannot take (${e.message}); ` +
          'add a device first, drain the node (ddfs node drain), or pass --force to detach it anyway (healing then rebuilds its fragments elsewhere)')
      }
      this.log.warn('device-forced-off', { device: p, entries: left, error: e.message })
    }
    await this.devices.detach(p)
    this.site.invalidate()
    this.data.removeDevice(p)
    this.log.info('device-detached', { device: p, moved, left })
    return { moved, left }
  }

  /** Copies every entry of `from` to the first of `to` with room; a damaged one is left to healing. */
  private async moveEntries (from: BlockStore, to: BlockStore[]): Promise<number> {
    let moved = 0
    for (const ids of idPages(from)) {
      for (const id of ids) {
        for (const e of from.list(id)) {
          if (to.length === 0) {
            // Tombstones alone may go: every other holder of the object keeps its own.
            if (e.length === 0) continue
            throw DdfsError.UNAVAILABLE('there is no other device')
          }
          let data: Buffer
          try {
            data = e.length === 0 ? Buffer.alloc(0) : await from.read(e.key)
          } catch (err) {
            this.log.warn('device-entry-unreadable', { device: from.path, id: id.toString('hex'), error: DdfsError.from(err).message })
            continue
          }
          let placed = false
          for (const target of to) {
            try {
              await this.site.putEntryOn(target, e.key, data)
              placed = true
              break
            } catch (err) {
              if (DdfsError.from(err).code !== 'DEVICE_FULL') throw err
            }
          }
          if (!placed) throw DdfsError.DEVICE_FULL('every other device is full')
          moved++
        }
      }
    }
    return moved
  }

  /** Size and free bytes of this node's devices, or summed over every member that answers. */
  async capacity (cluster: boolean): Promise<CapacityMessage> {
    const sites = cluster && this.cluster !== null ? this.cluster.members().map((m) => m.site) : [this.site]
    const parts = await Promise.allSettled(sites.map((s) => s.capacity()))
    let size = 0
    let free = 0
    let nodes = 0
    for (const p of parts) if (p.status === 'fulfilled') { size += p.value.size; free += p.value.free; nodes++ }
    return { size, free, nodes }
  }

  /**
   * This node's status; in a cluster also every member's state and the cluster's durability
   * debt, summed over the reports of every reachable member (each leads its own objects).
   */
  async status (): Promise<Record<string, unknown>> {
    return { ...this.ownStatus(), durability: this.cluster === null ? null : await this.clusterDurability() }
  }

  private ownStatus (): Record<string, unknown> {
    return {
      address: `${this.opts.host}:${this.opts.port}`,
      publicKey: this.data.keyPair().publicKey.toString('hex'),
      mode: this.cluster === null ? 'standalone' : 'cluster',
      dht: this.cluster?.dhtAddress() ?? null,
      members: this.cluster?.describe() ?? null,
      pid: process.pid,
      dataDir: this.opts.dataDir,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      devices: this.devices.stores().map((s) => s.info()),
      failedDevices: [...this.failedDevices].map(([path, error]) => ({ path, error })),
      draining: this.cluster?.draining ?? false,
      mounts: [...this.mounts.keys()],
      // A cluster's scrub and tombstones are summed over its members in durability; a standalone node's are here.
      ...(this.cluster === null ? { scrub: this.scrubber?.progress() ?? null, ...this.localTombstones?.report() } : {})
    }
  }

  /** What this node leads and scrubs, and what it still holds (for drain). */
  health (): Record<string, unknown> {
    return {
      address: `${this.opts.host}:${this.opts.port}`,
      durability: this.healer?.durability() ?? null,
      scrub: this.scrubber?.progress() ?? null,
      draining: this.cluster?.draining ?? false,
      holding: this.holding()
    }
  }

  private async clusterDurability (): Promise<Record<string, unknown>> {
    const cluster = this.cluster as ClusterLink
    const peers = cluster.describe().filter((m) => !m.self && (m.state === 'live' || m.state === 'draining'))
    const reports: Array<Record<string, any>> = [this.health()]
    // A member that does not answer at once is reported as not reporting: status must stay quick.
    const answers = await Promise.allSettled(peers.map(async (p) => await Promise.race([
      cluster.health(Buffer.from(p.publicKey, 'hex')),
      new Promise((_resolve, reject) => setTimeout(() => reject(new Error('no answer')), HEALTH_TIMEOUT_MS).unref())
    ])))
    for (const a of answers) if (a.status === 'fulfilled') reports.push(a.value as Record<string, any>)
    const sum = (key: string): number => reports.reduce((acc, r) => acc + Number(r.durability?.[key] ?? 0), 0)
    const rate = sum('rateBytesPerSec')
    const bytesToRepair = sum('bytesToRepair')
    const lost = cluster.describe().filter((m) => m.state === 'lost').length
    return {
      objects: sum('objects'),
      objectsBelowN: sum('objectsBelowN'),
      objectsBelowK1: sum('objectsBelowK1'),
      objectsUnreadable: sum('objectsUnreadable'),
      bytesToRepair,
      repairedBytes: sum('repairedBytes'),
      repairRateBytesPerSec: rate,
      etaSeconds: bytesToRepair === 0 ? 0 : rate > 0 ? Math.ceil(bytesToRepair / rate) : null,
      nodesReporting: reports.length,
      nodesUnreachable: peers.length + 1 - reports.length,
      nodesLost: lost,
      scrub: {
        damagedFound: reports.reduce((acc, r) => acc + Number(r.scrub?.damagedFound ?? 0), 0),
        repaired: reports.reduce((acc, r) => acc + Number(r.scrub?.repaired ?? 0), 0),
        bytesChecked: reports.reduce((acc, r) => acc + Number(r.scrub?.bytesChecked ?? 0), 0)
      },
      nodes: reports.map((r) => ({ address: r.address, ...r.durability, draining: r.draining, holding: r.holding }))
    }
  }

  /** Entries on this node's devices by kind (tombstones aside) and their bytes: what a drain must move off. */
  private holding (): { fragments: number, manifests: number, names: number, bytes: number } {
    const out = { fragments: 0, manifests: 0, names: 0, bytes: 0 }
    for (const st of this.devices.stores()) {
      for (const ids of idPages(st, 1024)) {
        for (const id of ids) {
          for (const e of st.list(id)) {
            if (e.key.kind === EntryKind.Fragment) out.fragments++
            else if (e.key.kind === EntryKind.Manifest) out.manifests++
            else if (e.key.kind === EntryKind.Name) out.names++
            else continue
            out.bytes += e.length
          }
        }
      }
    }
    return out
  }

  /** ddfs node drain: move everything off this node (persisted), or stop doing so. */
  async setDraining (drain: boolean): Promise<Record<string, unknown>> {
    if (this.cluster === null) throw DdfsError.BAD_ARGUMENT('a standalone node has no other nodes to drain to; start it with --cluster')
    const config = this.data.readConfig()
    this.data.writeConfig({ ...config, draining: drain })
    if (this.cluster.draining !== drain) {
      await this.cluster.setDraining(drain)
      this.log.info(drain ? 'drain-started' : 'drain-cancelled', {})
      void this.healer?.scan()
    }
    return this.health()
  }

  /** What the metrics endpoint reads at each scrape. */
  private gauges (): Sample[] {
    const g: Sample[] = []
    for (const st of this.devices.stores()) {
      const i = st.info()
      g.push({ name: 'ddfs_device_bytes', help: 'Device size and free bytes.', labels: { device: i.path, kind: 'size' }, value: i.size })
      g.push({ name: 'ddfs_device_bytes', help: 'Device size and free bytes.', labels: { device: i.path, kind: 'free' }, value: i.freeSize })
      g.push({ name: 'ddfs_device_entries', help: 'Entries (fragments, manifests, names, tombstones) on a device.', labels: { device: i.path }, value: i.entries })
    }
    g.push({ name: 'ddfs_devices_failed', help: 'Devices in the config that could not be attached.', value: this.failedDevices.size })
    g.push({ name: 'ddfs_cluster_members', help: 'Members in this node\'s view of the cluster (itself included).', value: this.cluster?.members().length ?? 1 })
    const d = this.healer?.durability()
    if (d !== undefined) {
      g.push({ name: 'ddfs_objects_led', help: 'Objects this node leads the healing of.', value: d.objects })
      g.push({ name: 'ddfs_objects_below_n', help: 'Led objects with fewer than n healthy fragments.', value: d.objectsBelowN })
      g.push({ name: 'ddfs_objects_unreadable', help: 'Led objects with fewer than k healthy fragments.', value: d.objectsUnreadable })
      g.push({ name: 'ddfs_repair_pending_bytes', help: 'Fragment bytes of led objects not where placement wants them.', value: d.bytesToRepair })
      g.push({ name: 'ddfs_repaired_bytes', help: 'Fragment bytes rebuilt or moved by this node since it started.', value: d.repairedBytes })
      g.push({ name: 'ddfs_tombstones', help: 'Tombstones (deleted ids) on this node\'s devices, as the healer last counted them.', value: d.tombstones })
      g.push({ name: 'ddfs_tombstones_collected_total', help: 'Tombstones removed by this node since it started, once every member had applied them.', value: d.tombstonesCollected, type: 'counter' })
    }
    const sc = this.scrubber?.progress()
    if (sc !== undefined) {
      g.push({ name: 'ddfs_scrub_checked_bytes', help: 'Bytes read back and verified by scrub since start.', value: sc.bytesChecked })
      g.push({ name: 'ddfs_scrub_damaged', help: 'Damaged entries scrub found since start.', value: sc.damagedFound })
      g.push({ name: 'ddfs_scrub_repaired', help: 'Damaged entries scrub rebuilt since start.', value: sc.repaired })
      g.push({ name: 'ddfs_scrub_pass_progress', help: 'Fraction of the current scrub pass done.', value: sc.passProgress })
    }
    return g
  }

  /**
   * Mounts the store at `mountpoint` in this process: the mount reads and commits through this
   * node's object store directly. It lasts until `ddfs umount` (or fusermount -u) or the node stops.
   */
  async mount (mountpoint: string, writeback: boolean): Promise<void> {
    if (this.stopping !== null) throw DdfsError.UNAVAILABLE('the node is stopping')
    const mp = path.resolve(mountpoint)
    if (this.mounts.has(mp)) throw DdfsError.BAD_ARGUMENT(`this node already serves a mount at ${mp}`)
    const m = await Mount.start({
      mountpoint: mp, link: new InNodeLink(this), log: this.log, writeback, inNode: true,
      onEnded: () => { if (this.mounts.get(mp) === m) this.mounts.delete(mp) }
    })
    this.mounts.set(mp, m)
  }

  /** Stops serving, closes the devices (each writes a checkpoint), removes socket and pid file. */
  stop (reason: string): Promise<void> {
    if (this.stopping === null) {
      this.log.info('node-stopping', { reason })
      this.stopping = this.release().then(() => {
        this.log.info('node-stopped', { pid: process.pid })
        this.onStopped()
      })
    }
    return this.stopping
  }

  private async release (): Promise<void> {
    // Mounts first: they commit what is being written while the cluster is still reachable.
    await Promise.all([...this.mounts.values()].map(async (m) => await m.stop().catch((err) => this.log.error('unmount-failed', { mountpoint: m.mountpoint, error: String(err) }))))
    this.mounts.clear()
    if (this.onFaultRules !== null) faultLayer?.off('rules', this.onFaultRules)
    const closeServer = (s: net.Server | null): Promise<void> => new Promise((resolve) => { if (s === null) resolve(); else s.close(() => resolve()) })
    const servers = Promise.all([this.tcp?.close(), closeServer(this.local)])
    for (const c of this.connections) c.close()
    await servers
    await this.metrics.close()
    await this.healer?.close()
    await this.scrubber?.close()
    await this.localTombstones?.close()
    await this.cluster?.close()
    await this.devices.closeAll()
    // Only our own socket file: a node started on this address while this one stopped made its own.
    if (this.local !== null && this.ownsSocket()) fs.rmSync(this.socket, { force: true })
    if (this.data.readPid() === process.pid) fs.rmSync(this.data.pidFile, { force: true })
  }
}

/**
 * Object requests before the node is ready. The local socket listens first (it keeps a second
 * start on the same address out), so clients can reach a node that has not decided yet whether
 * it stores across the cluster: a put served then by the node's own devices was acknowledged as
 * an object with no holders on one node, which cluster reads and healing cannot handle (found by
 * the fault schedule: the mount's puts right after its node restarted).
 */
function notServing (): ObjectStore {
  const refuse = (): DdfsError => DdfsError.UNAVAILABLE('the node is starting; try again in a moment')
  return new Proxy({} as ObjectStore, {
    get: (_target, prop) => prop === 'get'
      ? async function * (): AsyncGenerator<Buffer> { throw refuse() }
      : async () => { throw refuse() }
  })
}

function listen (server: net.Server, start: () => void, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') reject(DdfsError.NODE_RUNNING(`${what} is already in use (another node or program listens there)`))
      else reject(DdfsError.IO(`cannot listen on ${what}: ${err.message}`))
    })
    server.once('listening', () => resolve())
    start()
  })
}
