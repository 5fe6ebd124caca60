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
import type { HealingView, MemberState, ViewMember } from '../object/cluster-object-store'
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
  /** A member out of the view this long is lost: its fragments are rebuilt elsewhere. */
  lostAfterMs: number
  /** Start as a draining member (the node was draining when it stopped). */
  draining?: boolean
}

export class ClusterLink implements HealingView {
  private readonly discovery: Discovery
  private readonly pool: PeerPool
  private readonly rpcs = new WeakMap<SecureConnection, RpcConnection>()
  private readonly remotes = new Map<string, RemoteSite>()
  // Members that just failed a dial or dropped a connection: left out of placement until the
  // time given (discovery would drop a dead member only after 3 heartbeats).
  private readonly suspects = new Map<string, number>()
  private readonly suspectMs: number
  // Members in the view by public key, and when each member that left the view was last in it.
  private readonly current = new Map<string, Member>()
  private readonly leftAt = new Map<string, number>()
  private readonly startedAt = Date.now()
  readonly self: ViewMember

  private readonly lostAfterMs: number

  constructor (opts: ClusterLinkOptions, selfSite: EntrySite, private readonly log: Logger) {
    this.lostAfterMs = opts.lostAfterMs
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
    this.self = { publicKey: opts.keyPair.publicKey, site: selfSite }
    if (opts.draining === true) void this.discovery.setDraining(true)
    this.discovery.on('member-add', (m) => { this.current.set(m.publicKey.toString('hex'), m); this.leftAt.delete(m.publicKey.toString('hex')) })
    // A member that drained before leaving took nothing with it: it is not missed.
    this.discovery.on('member-remove', (m) => { this.current.delete(m.publicKey.toString('hex')); if (!m.draining) this.leftAt.set(m.publicKey.toString('hex'), Date.now()) })
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
    return this.discovery.members()
      .filter((m) => !m.draining && (m.self || !this.suspect(m.publicKey.toString('hex'))))
      .map((m) => ({ publicKey: m.publicKey, site: m.self ? this.self.site : this.remote(m) }))
  }

  knownMembers (): number {
    const inView = this.discovery.members().filter((m) => !m.draining).length
    let away = 0
    for (const hex of this.leftAt.keys()) if (!this.current.has(hex) && this.stateOf(Buffer.from(hex, 'hex')) === 'down') away++
    return inView + away
  }

  siteOf (publicKey: Buffer): EntrySite | null {
    if (publicKey.equals(this.self.publicKey)) return this.self.site
    const hex = publicKey.toString('hex')
    const m = this.current.get(hex)
    return m === undefined || this.suspect(hex) ? null : this.remote(m)
  }

  stateOf (publicKey: Buffer): MemberState {
    if (publicKey.equals(this.self.publicKey)) return this.draining ? 'draining' : 'live'
    const hex = publicKey.toString('hex')
    const m = this.current.get(hex)
    if (m !== undefined) return this.suspect(hex) ? 'down' : m.draining ? 'draining' : 'live'
    // Never seen since this node started: down since then, as far as this node can tell.
    const since = this.leftAt.get(hex) ?? this.startedAt
    return Date.now() - since > this.lostAfterMs ? 'lost' : 'down'
  }

  get draining (): boolean {
    return this.discovery.members().some((m) => m.self && m.draining)
  }

  async setDraining (draining: boolean): Promise<void> {
    await this.discovery.setDraining(draining)
  }

  /** The membership for `ddfs status`: each member with its state as this node sees it. */
  describe (): Array<{ address: string, publicKey: string, self: boolean, state: MemberState }> {
    const seen = this.discovery.members().map((m) => ({ address: label(m), publicKey: m.publicKey.toString('hex'), self: m.self, state: this.stateOf(m.publicKey) }))
    const gone = [...this.leftAt.keys()].map((hex) => ({ address: '-', publicKey: hex, self: false, state: this.stateOf(Buffer.from(hex, 'hex')) }))
    return [...seen, ...gone]
  }

  /** A member's durability report (ddfs status sums them). */
  async health (publicKey: Buffer): Promise<unknown> {
    const m = this.current.get(publicKey.toString('hex'))
    if (m === undefined) throw DdfsError.UNAVAILABLE('not a member in view')
    return await this.remote(m).health()
  }

  private suspect (hex: string): boolean {
    const until = this.suspects.get(hex)
    return until !== undefined && until >= Date.now()
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
