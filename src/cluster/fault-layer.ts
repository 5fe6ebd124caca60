// Test-controlled network and device faults, for the fault schedule (test/faults/run.ts).
//
// Why it exists: the schedule must cut, slow and disturb the links between real node processes
// and make devices fail writes, on a kernel with neither tc netem nor device-mapper (and without
// iptables). So the transport and the device I/O path consult rules the test writes to a file.
//
// Enabled only when the node process starts with DDFS_FAULT_FILE=PATH: `faultLayer` is then an
// instance, otherwise null, and production code pays one null check per frame or write. The test
// replaces PATH atomically (write a temp file, rename); the node polls it every 200 ms. Rules:
//   cut         public keys (hex) of members this node cannot reach nor be reached by: dials fail
//               (as into a partition, after a connect timeout), open connections to them are reset,
//               and connections from them are dropped after the handshake. The test writes both sides.
//   delayMs     added to every frame this node sends.
//   loss        what packet loss does to TCP: per frame, this probability of a retransmission stall
//               (200-1000 ms, the RTO), and one 25th of it of a reset connection.
//   failWrites  device paths whose entry writes fail with IO (reads still work).
//   fill        device paths the node fills with filler entries until the store itself reports
//               DEVICE_FULL (a real full device, not a simulated error); freed when dropped.
// The DHT (UDP) is not cut: a partitioned member stays in the view, its dials fail, so it is
// suspect/down for the data path, which is what partitions test here.
import fs from 'node:fs'
import { EventEmitter } from 'node:events'

export interface FaultRules {
  cut: string[]
  delayMs: number
  loss: number
  failWrites: string[]
  fill: string[]
}

export const NO_FAULTS: FaultRules = { cut: [], delayMs: 0, loss: 0, failWrites: [], fill: [] }

/** The id of filler entries (a device filled by the `fill` rule); 16 bytes no object id takes in practice. */
export const FILLER_ID = Buffer.from('ddfs-fault-fill!')
/** Their entry kind: not a fragment, manifest or name, so healing, scrub repair and catalogs pass them by. */
export const FILLER_KIND = 0xfa11

const POLL_MS = 200
/** How long a dial into a partition takes to fail: a connect that gets no answer times out. */
export const PARTITION_DIAL_MS = 1000
/** Bytes queued by a delayed link before send() reports backpressure. */
const LINK_HIGH_WATER = 16 * 1024 * 1024

/** What the fault layer needs of a connection. */
export interface FaultConnection {
  readonly remotePublicKey: Buffer
  readonly closed: boolean
  close: (err?: Error | null) => void
  emit: (event: 'drain') => boolean
}

export interface FaultLayerEvents { rules: [rules: FaultRules] }

export class FaultLayer extends EventEmitter<FaultLayerEvents> {
  rules: FaultRules = NO_FAULTS
  private cutKeys = new Set<string>()
  private failing = new Set<string>()
  private readonly conns = new Set<FaultConnection>()
  private seen = ''
  private readonly timer: NodeJS.Timeout

  constructor (readonly file: string) {
    super()
    this.poll()
    this.timer = setInterval(() => this.poll(), POLL_MS)
    this.timer.unref()
  }

  /** Whether the member with this public key is on the other side of a partition. */
  cuts (publicKey: Buffer): boolean {
    return this.cutKeys.has(publicKey.toString('hex'))
  }

  /** Whether entry writes to this device fail. */
  failsWrites (device: string): boolean {
    return this.failing.has(device)
  }

  /** Tracks an open connection: reset when its peer is cut, delayed/disturbed by the link rules. */
  attach (conn: FaultConnection, write: (bufs: Buffer[]) => boolean, buffered: () => number): FaultLink {
    const link = new FaultLink(this, conn, write, buffered)
    this.conns.add(conn)
    if (this.cuts(conn.remotePublicKey)) setImmediate(() => conn.close(partitionError()))
    return link
  }

  /** @internal */
  detach (conn: FaultConnection): void {
    this.conns.delete(conn)
  }

  close (): void {
    clearInterval(this.timer)
  }

  private poll (): void {
    let text: string
    try {
      const st = fs.statSync(this.file)
      const stamp = `${st.ino}:${st.mtimeMs}:${st.size}`
      if (stamp === this.seen) return
      this.seen = stamp
      text = fs.readFileSync(this.file, 'utf8')
    } catch {
      if (this.seen === 'absent') return
      this.seen = 'absent'
      text = '{}'
    }
    let parsed: Partial<FaultRules>
    try {
      parsed = JSON.parse(text) as Partial<FaultRules>
    } catch {
      return  // a torn file cannot happen with rename; keep the rules we have
    }
    this.rules = {
      cut: Array.isArray(parsed.cut) ? parsed.cut.map(String) : [],
      delayMs: Number(parsed.delayMs ?? 0) || 0,
      loss: Math.min(1, Math.max(0, Number(parsed.loss ?? 0) || 0)),
      failWrites: Array.isArray(parsed.failWrites) ? parsed.failWrites.map(String) : [],
      fill: Array.isArray(parsed.fill) ? parsed.fill.map(String) : []
    }
    this.cutKeys = new Set(this.rules.cut)
    this.failing = new Set(this.rules.failWrites)
    for (const c of this.conns) if (!c.closed && this.cuts(c.remotePublicKey)) c.close(partitionError())
    this.emit('rules', this.rules)
  }
}

export function partitionError (): Error {
  const err = new Error('ECONNRESET: the peer is on the other side of a partition (fault layer)') as NodeJS.ErrnoException
  err.code = 'ECONNRESET'
  return err
}

/** One connection's outgoing frames under delay and loss: held in order, written when due. */
export class FaultLink {
  private readonly queue: Array<{ due: number, bufs: Buffer[], bytes: number }> = []
  private queued = 0
  private lastDue = 0
  private timer: NodeJS.Timeout | null = null
  private wantDrain = false

  constructor (private readonly layer: FaultLayer, private readonly conn: FaultConnection,
    private readonly write: (bufs: Buffer[]) => boolean, private readonly buffered: () => number) {}

  get bytes (): number { return this.queued }

  send (bufs: Buffer[]): boolean {
    const { delayMs, loss } = this.layer.rules
    let extra = delayMs
    if (loss > 0 && Math.random() < loss) {
      extra += 200 + Math.random() * 800
      if (Math.random() < 1 / 25) {
        const err = new Error('ECONNRESET: connection reset after packet loss (fault layer)') as NodeJS.ErrnoException
        err.code = 'ECONNRESET'
        setImmediate(() => this.conn.close(err))
      }
    }
    if (extra <= 0 && this.queue.length === 0) return this.write(bufs)
    // TCP delivers in order: a frame never overtakes one sent before it.
    const due = Math.max(Date.now() + extra, this.lastDue)
    this.lastDue = due
    let bytes = 0
    for (const b of bufs) bytes += b.length
    this.queue.push({ due, bufs, bytes })
    this.queued += bytes
    this.arm()
    const ok = this.queued + this.buffered() < LINK_HIGH_WATER
    if (!ok) this.wantDrain = true
    return ok
  }

  /** Writes everything held at once (a clean close flushes queued frames first). */
  flushAll (): void {
    this.flush(Infinity)
  }

  /** Drops what is held (the connection closed with an error). */
  drop (): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.queue.length = 0
    this.queued = 0
    this.layer.detach(this.conn)
  }

  private arm (): void {
    if (this.timer !== null || this.queue.length === 0) return
    this.timer = setTimeout(() => { this.timer = null; this.flush(Date.now()) }, Math.max(0, this.queue[0].due - Date.now()))
  }

  private flush (now: number): void {
    while (this.queue.length > 0 && this.queue[0].due <= now && !this.conn.closed) {
      const item = this.queue.shift() as { bufs: Buffer[], bytes: number }
      this.queued -= item.bytes
      this.write(item.bufs)
    }
    if (this.wantDrain && this.queued + this.buffered() < LINK_HIGH_WATER) {
      this.wantDrain = false
      this.conn.emit('drain')
    }
    this.arm()
  }
}

/** The process's fault layer: null unless enableFaultLayer() found DDFS_FAULT_FILE set. */
export let faultLayer: FaultLayer | null = null

/**
 * Called once by a starting node: DDFS_FAULT_FILE (a path; `{port}` in it becomes the node's
 * port, so one environment serves every node of a local cluster) turns the fault layer on.
 */
export function enableFaultLayer (port: number): FaultLayer | null {
  const file = process.env.DDFS_FAULT_FILE
  if (faultLayer === null && file !== undefined && file !== '') faultLayer = new FaultLayer(file.replaceAll('{port}', String(port)))
  return faultLayer
}
