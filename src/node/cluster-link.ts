// A node's place in its cluster: membership through the private DHT (Discovery), one reused
// encrypted connection per member (PeerPool), and the members as entry sites for the cluster
// object store: this node's own devices for itself, the node-to-node protocol for the others.
import { Discovery, type Member } from '../cluster/discovery'
import { PeerPool } from '../cluster/pool'
import { secureStream } from '../cluster/stream'
import type { SecureConnection } from '../cluster/transport'
import type { KeyPair } from '../cluster/sodium'
import { RemoteSite } from '../cluster/remote-site'
import { DdfsError } from '../errors'
import { FrameConnection } from '../wire/connection'
import { RpcConnection } from '../wire/rpc'
import type { Logger } from '../log'
import type { ClusterView, ViewMember } from '../object/cluster-object-store'
import type { EntrySite } from '../object/types'

export interface ClusterLinkOptions {
  secret: Buffer
  keyPair: KeyPair
  host: string
  /** The node's transport port: what members connect to. */
  port: number
  bootstrap: string[]
  dhtPort: number
  /** Discovery refresh period; a member silent for 3 periods leaves the view. */
  intervalMs?: number
}

export class ClusterLink implements ClusterView {
  private readonly discovery: Discovery
  private readonly pool: PeerPool
  private readonly rpcs = new WeakMap<SecureConnection, RpcConnection>()
  private readonly remotes = new Map<string, RemoteSite>()
  // Members that just failed a dial or dropped a connection: left out of placement until the
  // time given (discovery would drop a dead member only after 3 heartbeats).
  private readonly suspects = new Map<string, number>()
  private readonly suspectMs: number

  constructor (opts: ClusterLinkOptions, private readonly self: EntrySite, private readonly log: Logger) {
    this.discovery = new Discovery({
      secret: opts.secret,
      keyPair: opts.keyPair,
      dataAddress: { host: opts.host, port: opts.port },
      bootstrap: opts.bootstrap,
      host: opts.host,
      dhtPort: opts.dhtPort,
      interval: opts.intervalMs
    })
    this.pool = new PeerPool({ secret: opts.secret, keyPair: opts.keyPair })
    this.suspectMs = 3 * (opts.intervalMs ?? 5000)
    this.discovery.on('member-add', (m) => log.info('member-add', { member: label(m), publicKey: m.publicKey.toString('hex') }))
    this.discovery.on('member-remove', (m) => { log.warn('member-remove', { member: label(m) }); this.pool.drop(m.publicKey) })
    this.discovery.on('bad-record', (key) => log.warn('bad-record', { publicKey: key.toString('hex') }))
    this.discovery.on('error', (err) => log.warn('discovery-error', { error: err.message }))
    this.pool.on('peer-error', (key, err) => {
      log.warn('peer-error', { publicKey: key.toString('hex').slice(0, 16), error: err.message })
      this.suspects.set(key.toString('hex'), Date.now() + this.suspectMs)
    })
    this.discovery.on('member-add', (m) => this.suspects.delete(m.publicKey.toString('hex')))
  }

  /** Joins the DHT and announces this node; resolves after the first membership refresh. */
  async start (): Promise<void> {
    await this.discovery.ready()
    this.log.info('cluster-joined', { dht: this.discovery.dhtAddress(), members: this.discovery.members().length })
  }

  members (): ViewMember[] {
    const now = Date.now()
    return this.discovery.members()
      .filter((m) => { const until = this.suspects.get(m.publicKey.toString('hex')); return m.self || until === undefined || until < now })
      .map((m) => ({ publicKey: m.publicKey, site: m.self ? this.self : this.remote(m) }))
  }

  /** The membership for `ddfs status`. */
  describe (): Array<{ address: string, publicKey: string, self: boolean }> {
    return this.discovery.members().map((m) => ({ address: label(m), publicKey: m.publicKey.toString('hex'), self: m.self }))
  }

  dhtAddress (): string {
    return this.discovery.dhtAddress()
  }

  async close (): Promise<void> {
    this.pool.close()
    await this.discovery.destroy({ force: true })
  }

  private remote (m: Member): RemoteSite {
    const hex = m.publicKey.toString('hex')
    let site = this.remotes.get(hex)
    if (site === undefined || site.label !== label(m)) {
      site = new RemoteSite(label(m), () => this.rpc(m))
      this.remotes.set(hex, site)
    }
    return site
  }

  private async rpc (m: Member): Promise<RpcConnection> {
    const conn = await this.pool.get(m)
    let rpc = this.rpcs.get(conn)
    if (rpc === undefined) {
      const frames = new FrameConnection(secureStream(conn))
      frames.on('protocol-error', (err: Error) => this.log.warn('protocol-error', { peer: label(m), error: err.message }))
      rpc = new RpcConnection(frames, label(m))
      this.rpcs.set(conn, rpc)
    }
    if (rpc.closed) throw DdfsError.UNAVAILABLE(`connection to ${label(m)} closed`)
    return rpc
  }
}

function label (m: { host: string, port: number }): string {
  return `${m.host}:${m.port}`
}
