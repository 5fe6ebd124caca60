// Membership through a private HyperDHT. Every node is a persistent DHT node (it routes for the
// others) on 127.0.0.1 or its own address, bootstrapped only from the addresses it is given:
// never the public bootstrap nodes. Each member
//   - announces its public key under the cluster topic (derived from the secret, so a DHT node
//     that sees it learns nothing and cannot find it without the secret), and
//   - keeps a mutable record under its key: its data address, encrypted with a key derived from
//     the secret and bound to its public key, re-put every interval with a higher seq.
// A refresh looks the topic up, reads each member's record, and keeps members whose record seq
// advanced within `ttl`; a member that leaves cleanly puts a "leaving" record and unannounces.
import dgram from 'node:dgram'
import { EventEmitter } from 'node:events'
import DHT from 'hyperdht'
import { DdfsError } from '../errors'
import { sodium, type KeyPair } from './sodium'
import { deriveClusterKeys, type ClusterKeys } from './secret'

export interface Address { host: string, port: number }

export interface Member {
  publicKey: Buffer
  /** The member's data (transport) address. */
  host: string
  port: number
  self: boolean
  /** The member is moving its data off before it leaves (ddfs node drain): no new placements. */
  draining: boolean
}

export interface DiscoveryOptions {
  /** The 32-byte cluster secret. */
  secret: Buffer
  /** The node's identity; it signs the DHT records. */
  keyPair: KeyPair
  /** Where this node's transport listens: what other members connect to. */
  dataAddress: Address
  /**
   * DHT bootstrap nodes as "host:port". Empty: this node runs the bootstrap node itself on
   * `dhtPort` (the first node of a cluster). Required: never defaults to the public nodes.
   */
  bootstrap: readonly string[]
  /** Address the DHT binds and advertises. Default 127.0.0.1. */
  host?: string
  /** UDP port of this node's DHT node; 0 for any. With no bootstrap, the bootstrap node's port. */
  dhtPort?: number
  /** Refresh period in ms. Default 5000. */
  interval?: number
  /**
   * A member whose record has not advanced for this long is removed. Default 3 × interval.
   * Keep it above ~3 s: a DHT query that meets a just-died DHT node waits out its timeouts.
   */
  ttl?: number
}

export interface DiscoveryEvents {
  'member-add': [member: Member]
  'member-remove': [member: Member]
  /** A record under the topic that did not decrypt: a stale member or someone without the secret. */
  'bad-record': [publicKey: Buffer]
  error: [err: Error]
}

const RECORD_VERSION = 1
const FLAG_LEAVING = 1
const FLAG_DRAINING = 2
const NONCE_BYTES = 24
const TAG_BYTES = 16

const QUERY_OPTS = { retries: 1 }
const ANNOUNCE_EVERY = 12
const LEAVE_DEADLINE_MS = 1500

function withDeadline<T> (p: Promise<T | null>, ms: number): Promise<T | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms)
    p.then((v) => { clearTimeout(timer); resolve(v) }, () => { clearTimeout(timer); resolve(null) })
  })
}

interface Known { member: Member, seq: number, seenAt: number }

export function parseAddress (s: string): Address {
  const i = s.lastIndexOf(':')
  const port = Number(s.slice(i + 1))
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw DdfsError.BAD_ARGUMENT(`"${s}" is not HOST:PORT`)
  return { host: s.slice(0, i), port }
}

/**
 * Fails when something already holds the UDP port: the DHT's sockets share ports, so a second
 * bootstrap node on one port would start and split the traffic instead of failing.
 */
export async function assertUdpPortFree (host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const sock = dgram.createSocket({ type: 'udp4', reuseAddr: false })
    sock.once('error', (err: NodeJS.ErrnoException) => {
      sock.close()
      reject(err.code === 'EADDRINUSE' ? DdfsError.NODE_RUNNING(`UDP port ${host}:${port} is already in use (another bootstrap or DHT node?)`) : err)
    })
    sock.bind(port, host, () => sock.close(() => resolve()))
  })
}

/** A DHT bootstrap node (what `ddfs up` runs first). Its address is what nodes pass as bootstrap. */
export async function startBootstrap (host: string, port: number): Promise<{ address: string, dht: DHT }> {
  if (!Number.isInteger(port) || port <= 0) throw DdfsError.BAD_ARGUMENT('a bootstrap node needs a fixed port')
  await assertUdpPortFree(host, port)
  const dht = DHT.bootstrapper(port, host, { host })
  await dht.ready()
  return { address: `${host}:${dht.address().port}`, dht }
}

export class Discovery extends EventEmitter<DiscoveryEvents> {
  readonly dht: DHT
  private readonly keys: ClusterKeys
  private readonly known = new Map<string, Known>()
  private readonly candidates = new Map<string, number>()
  private readonly selfMember: Member
  private readonly interval: number
  private readonly ttl: number
  private readonly queryTimeout: number
  private bootstrapNode: DHT | null = null
  private timer: NodeJS.Timeout | null = null
  private seq: number
  private refreshing: Promise<void> | null = null
  private destroyed = false
  private publishing = 0
  private ticks = 0
  private flags = 0

  constructor (private readonly opts: DiscoveryOptions) {
    super()
    if (!Array.isArray(opts.bootstrap)) throw DdfsError.BAD_ARGUMENT('discovery needs a bootstrap list (empty to run the bootstrap node here); it never uses the public DHT')
    this.keys = deriveClusterKeys(opts.secret)
    const host = opts.host ?? '127.0.0.1'
    this.interval = opts.interval ?? 5000
    this.ttl = opts.ttl ?? 3 * this.interval
    this.queryTimeout = Math.min(this.interval, 2000)
    this.seq = 0
    this.selfMember = { publicKey: opts.keyPair.publicKey, host: opts.dataAddress.host, port: opts.dataAddress.port, self: true, draining: false }
    let bootstrap = opts.bootstrap.map(parseAddress)
    if (bootstrap.length === 0) {
      const port = opts.dhtPort ?? 0
      if (port === 0) throw DdfsError.BAD_ARGUMENT('the first node runs the bootstrap node and needs a fixed dhtPort')
      this.bootstrapNode = DHT.bootstrapper(port, host, { host })
      bootstrap = [{ host, port }]
    }
    // Persistent (routing) nodes: members are long-lived servers with reachable addresses, and
    // without firewalled:false dht-rpc would keep them ephemeral (see hyperdht-local.md).
    this.dht = new DHT({
      bootstrap: bootstrap.map((a) => `${a.host}:${a.port}`),
      host,
      port: this.bootstrapNode === null ? opts.dhtPort : undefined,
      ephemeral: false,
      firewalled: false,
      keyPair: opts.keyPair
    })
  }

  /** The DHT address of this node (others may bootstrap from it). */
  dhtAddress (): string {
    const a = this.dht.address()
    return `${a.host}:${a.port}`
  }

  /** Joins: bootstraps, announces, publishes the record, runs a first refresh, starts the timer. */
  async ready (): Promise<void> {
    if (this.bootstrapNode !== null) await this.bootstrapNode.ready()
    // Each step gets the query deadline: with a frozen or dead node in the routing tables, the
    // bootstrap and the first announce waited out dht-rpc's retries (a restart next to a frozen
    // node took 6.4 s, 3.4 s now). Both go on behind; the timer publishes again anyway.
    await withDeadline(this.dht.fullyBootstrapped().then(() => true), this.queryTimeout)
    await withDeadline(this.publish(this.flags).then(() => true), this.queryTimeout)
    await this.refresh()
    // Publishing and refreshing run side by side: a put that waits on a dead DHT node (up to
    // two timeouts) must not hold back the next one, or live members' records would stall.
    this.timer = setInterval(() => {
      // The announcement lives for many minutes in the DHT: renewing it every ANNOUNCE_EVERY
      // ticks is plenty; the record (the liveness signal) is put every tick.
      if (this.publishing < 4) {
        this.publishing++
        this.publish(this.flags, ++this.ticks % ANNOUNCE_EVERY === 0).catch((err: Error) => { if (!this.destroyed) this.emit('error', err) }).finally(() => { this.publishing-- })
      }
      this.refresh().catch((err: Error) => { if (!this.destroyed) this.emit('error', err) })
    }, this.interval)
    this.timer.unref()
  }

  /** Every live member, this node included, sorted by public key. */
  members (): Member[] {
    const list = [this.selfMember, ...[...this.known.values()].map((k) => k.member)]
    return list.sort((a, b) => Buffer.compare(a.publicKey, b.publicKey))
  }

  /** Marks this member draining (or not) and tells the others at once. */
  async setDraining (draining: boolean): Promise<void> {
    this.flags = draining ? this.flags | FLAG_DRAINING : this.flags & ~FLAG_DRAINING
    this.selfMember.draining = draining
    if (this.timer !== null) await this.publish(this.flags, false)
  }

  /** Looks the topic up and updates the membership now (also runs every interval). */
  refresh (): Promise<void> {
    if (this.refreshing === null) {
      this.refreshing = this.doRefresh().finally(() => { this.refreshing = null })
    }
    return this.refreshing
  }

  /**
   * Announces this node as a holder of `id` (an object id, a name hash) in the DHT, under a
   * target keyed with the cluster secret, so others find the holders without a membership view
   * (findHolders) and DHT nodes learn nothing about ids. An announcement lives 20 minutes in
   * hyperdht: call again within that to keep it.
   */
  async announceHolding (id: Buffer): Promise<void> {
    await this.dht.announce(this.holderTarget(id), this.opts.keyPair, [], QUERY_OPTS).finished()
  }

  async unannounceHolding (id: Buffer): Promise<void> {
    await this.dht.unannounce(this.holderTarget(id), this.opts.keyPair)
  }

  /**
   * The members that announced holding `id`: one DHT lookup, O(log N) messages (bench/lookup.ts),
   * plus one record read for each holder not yet in the local view.
   */
  async findHolders (id: Buffer): Promise<Member[]> {
    const keys = new Map<string, Buffer>()
    const lookup = this.dht.lookup(this.holderTarget(id), QUERY_OPTS)
    await withDeadline((async () => {
      for await (const reply of lookup) for (const p of reply.peers) keys.set(p.publicKey.toString('hex'), p.publicKey)
      return true
    })(), this.queryTimeout)
    const out: Member[] = []
    await Promise.all([...keys].map(async ([hex, publicKey]) => {
      if (publicKey.equals(this.opts.keyPair.publicKey)) { out.push(this.selfMember); return }
      const known = this.known.get(hex)
      if (known !== undefined) { out.push(known.member); return }
      const rec = await withDeadline(this.dht.mutableGet(publicKey, { latest: false, ...QUERY_OPTS }), this.queryTimeout)
      const opened = rec === null ? null : openRecord(this.keys.recordKey, publicKey, rec.value)
      if (opened !== null && (opened.flags & FLAG_LEAVING) === 0) out.push({ publicKey, host: opened.address.host, port: opened.address.port, self: false, draining: (opened.flags & FLAG_DRAINING) !== 0 })
    }))
    return out.sort((a, b) => Buffer.compare(a.publicKey, b.publicKey))
  }

  private holderTarget (id: Buffer): Buffer {
    const out = Buffer.alloc(32)
    sodium.crypto_generichash(out, id, this.keys.holderKey)
    return out
  }

  /** Leaves: with `force`, just stops; otherwise tells the others first (a "leaving" record). */
  async destroy ({ force = false }: { force?: boolean } = {}): Promise<void> {
    if (this.destroyed) return
    this.destroyed = true
    if (this.timer !== null) clearInterval(this.timer)
    if (!force) {
      // Best effort within LEAVE_DEADLINE: the others drop this node after ttl anyway.
      await withDeadline(Promise.all([
        this.publish(FLAG_LEAVING, false),
        this.dht.unannounce(this.keys.topic, this.opts.keyPair)
      ]).then(() => true), LEAVE_DEADLINE_MS)
    }
    // destroy() without force hangs once the other DHT nodes are gone (hyperdht-local.md).
    await this.dht.destroy({ force: true })
    if (this.bootstrapNode !== null) await this.bootstrapNode.destroy({ force: true })
  }

  private async publish (flags: number, announce = true): Promise<void> {
    if (announce) await this.dht.announce(this.keys.topic, this.opts.keyPair, [], QUERY_OPTS).finished()
    const record = sealRecord(this.keys.recordKey, this.opts.keyPair.publicKey, flags, this.opts.dataAddress)
    // The seq is the publish time in ms (kept increasing): a restarted node out-seqs its old
    // record, and a reader can tell a fresh record from one a dead member left behind.
    this.seq = Math.max(this.seq + 1, Date.now())
    await this.dht.mutablePut(this.opts.keyPair, record, { seq: this.seq, ...QUERY_OPTS })
  }

  private async doRefresh (): Promise<void> {
    const found = new Map<string, Buffer>()
    // In a small DHT a query waits for every node it asked, and a node that just died costs
    // dht-rpc's retries (measured: 12 s), so each query gets a deadline and one retry.
    // The query is not destroyed at the deadline: left to finish, its timeouts make dht-rpc
    // drop the dead node from the routing tables, so later queries stop waiting for it.
    const lookup = this.dht.lookup(this.keys.topic, QUERY_OPTS)
    await withDeadline((async () => {
      for await (const reply of lookup) {
        // Every storing node answers with the same peers: deduplicate by key.
        for (const peer of reply.peers) found.set(peer.publicKey.toString('hex'), peer.publicKey)
      }
      return true
    })(), this.queryTimeout)
    found.delete(this.opts.keyPair.publicKey.toString('hex'))
    // Known members are read even when the lookup missed them, so a slow lookup alone never
    // drops a member; only a record that stops advancing does.
    for (const [hex, k] of this.known) if (!found.has(hex)) found.set(hex, k.member.publicKey)
    const now = Date.now()
    await Promise.all([...found].map(async ([hex, publicKey]) => {
      // Ask for any record newer than the one we hold and take the first that verifies: waiting
      // for the latest from every storing node would wait on the slowest (or dead) one.
      const held = this.known.get(hex)?.seq ?? this.candidates.get(hex) ?? -1
      const rec = await withDeadline(this.dht.mutableGet(publicKey, { seq: held + 1, latest: false, ...QUERY_OPTS }), this.queryTimeout)
      if (rec === null || this.destroyed) return
      const opened = openRecord(this.keys.recordKey, publicKey, rec.value)
      if (opened === null) {
        this.emit('bad-record', publicKey)
        return
      }
      const prev = this.known.get(hex)
      if ((opened.flags & FLAG_LEAVING) !== 0) {
        if (prev !== undefined) this.remove(hex)
        return
      }
      if (prev === undefined) {
        // A record older than ttl belongs to a member that died while announced: wait until
        // its seq advances (it came back) before adding it.
        const stale = now - rec.seq > this.ttl
        const candidate = this.candidates.get(hex)
        if (stale && (candidate === undefined || rec.seq <= candidate)) {
          this.candidates.set(hex, rec.seq)
          return
        }
        this.candidates.delete(hex)
        const member: Member = { publicKey, host: opened.address.host, port: opened.address.port, self: false, draining: (opened.flags & FLAG_DRAINING) !== 0 }
        this.known.set(hex, { member, seq: rec.seq, seenAt: now })
        this.emit('member-add', member)
      } else if (rec.seq > prev.seq) {
        prev.seq = rec.seq
        prev.seenAt = now
        prev.member.draining = (opened.flags & FLAG_DRAINING) !== 0
        if (prev.member.host !== opened.address.host || prev.member.port !== opened.address.port) {
          // Same member, new address (restarted elsewhere): report it as remove + add.
          this.remove(hex)
          const member: Member = { publicKey, host: opened.address.host, port: opened.address.port, self: false, draining: prev.member.draining }
          this.known.set(hex, { member, seq: rec.seq, seenAt: now })
          this.emit('member-add', member)
        }
      }
    }))
    for (const [hex, k] of this.known) if (now - k.seenAt > this.ttl) this.remove(hex)
  }

  private remove (hex: string): void {
    const k = this.known.get(hex)
    if (k === undefined) return
    this.known.delete(hex)
    this.emit('member-remove', k.member)
  }
}

/** version(1) flags(1) port(2) host(utf8), XChaCha20-Poly1305 under recordKey, AD = public key. */
export function sealRecord (key: Buffer, publicKey: Buffer, flags: number, address: Address): Buffer {
  const host = Buffer.from(address.host, 'utf8')
  const plain = Buffer.alloc(4 + host.length)
  plain[0] = RECORD_VERSION
  plain[1] = flags
  plain.writeUInt16LE(address.port, 2)
  host.copy(plain, 4)
  const out = Buffer.alloc(NONCE_BYTES + plain.length + TAG_BYTES)
  const nonce = out.subarray(0, NONCE_BYTES)
  sodium.randombytes_buf(nonce)
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(out.subarray(NONCE_BYTES), plain, publicKey, null, nonce, key)
  return out
}

export function openRecord (key: Buffer, publicKey: Buffer, record: Buffer): { flags: number, address: Address } | null {
  if (record.length < NONCE_BYTES + TAG_BYTES + 4) return null
  const plain = Buffer.alloc(record.length - NONCE_BYTES - TAG_BYTES)
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(plain, null, record.subarray(NONCE_BYTES), publicKey, record.subarray(0, NONCE_BYTES), key)
  } catch {
    return null
  }
  if (plain[0] !== RECORD_VERSION) return null
  return { flags: plain[1], address: { host: plain.subarray(4).toString('utf8'), port: plain.readUInt16LE(2) } }
}
