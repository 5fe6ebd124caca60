// The client side of the protocol: talks to a node over its local Unix socket when one exists
// for that address (no cipher: the fast path on the node's own machine, guarded by file
// permissions), otherwise over TCP through the cluster transport, which needs the cluster
// secret (src/cluster/transport.ts: PSK-bound handshake, AES-256-GCM frames).
import fs from 'node:fs'
import net from 'node:net'
import { DdfsError, type ErrorCode } from '../errors'
import { connect as connectSecure } from '../cluster/transport'
import { secureStream } from '../cluster/stream'
import { randomKeyPair } from '../cluster/identity'
import { Xxh64Stream } from '../hash'
import { FrameConnection, type Frame } from '../wire/connection'
import {
  MessageType, putMessage, putEndMessage, getMessage, getHeadMessage, idMessage, deviceMessage, listMessage,
  errorMessage, emptyMessage, drainMessage, mountMessage, okMessage, decodeMeta, putLocalMessage, getLocalMessage, putGrowMessage, catalogMessage, type PutMessage
} from '../wire/messages'
import type c from 'compact-encoding'
import { socketPath } from '../node/paths'
import type { CatalogEntry } from '../object/types'

/** Payload bytes per DATA frame of a put. */
const PUT_CHUNK = 1024 * 1024

export interface ConnectOptions {
  host: string
  port: number
  /** Never use the local socket (tests of the TCP path). */
  tcpOnly?: boolean
  /** The cluster secret: needed over TCP (not on the local socket). */
  secret?: Buffer | null
  timeoutMs?: number
}

export type Progress = (bytes: number) => void

export class Client {
  private nextRequest = 1
  private waiter: ((f: Frame | Error) => void) | null = null
  private frames: Frame[] = []
  private closedError: Error | null = null

  private constructor (private readonly conn: FrameConnection, readonly local: boolean, readonly address: string) {
    conn.on('frame', (f: Frame) => {
      if (this.waiter !== null) { const w = this.waiter; this.waiter = null; w(f) } else this.frames.push(f)
    })
    conn.on('close', (err: Error | null) => {
      this.closedError = DdfsError.UNAVAILABLE(`connection to the node at ${address} closed${err !== null ? `: ${err.message}` : ''}`)
      if (this.waiter !== null) { const w = this.waiter; this.waiter = null; w(this.closedError) }
    })
  }

  static async connect (opts: ConnectOptions): Promise<Client> {
    const { conn, local } = await connectFrames(opts)
    return new Client(conn, local, `${opts.host}:${opts.port}`)
  }

  close (): void {
    this.conn.close()
  }

  private next (): Promise<Frame> {
    const f = this.frames.shift()
    if (f !== undefined) return Promise.resolve(f)
    if (this.closedError !== null) return Promise.reject(this.closedError)
    return new Promise((resolve, reject) => {
      this.waiter = (v) => v instanceof Error ? reject(v) : resolve(v)
    })
  }

  /** The next frame of a request; ERROR frames become DdfsErrors with the node's code. */
  private async reply (rid: number): Promise<Frame> {
    for (;;) {
      const f = await this.next()
      if (f.requestId !== rid) continue  // a late frame of an earlier request
      if (f.type === MessageType.Error) {
        const e = decodeMeta(errorMessage, f.meta)
        throw new DdfsError(e.code as ErrorCode, e.message)
      }
      return f
    }
  }

  private async call<T> (type: MessageType, enc: c.Encoder<T>, meta: T): Promise<unknown> {
    const rid = this.nextRequest++
    this.conn.send(type, rid, enc, meta)
    const f = await this.reply(rid)
    if (f.type !== MessageType.Ok) throw DdfsError.PROTOCOL(`unexpected reply type ${f.type}`)
    return decodeMeta(okMessage, f.meta)
  }

  query (id: Buffer): Promise<unknown> { return this.call(MessageType.Query, idMessage, { id }) }
  delete (id: Buffer): Promise<unknown> { return this.call(MessageType.Delete, idMessage, { id }) }
  list (after: Buffer | null, limit: number): Promise<unknown> { return this.call(MessageType.List, listMessage, { after, limit }) }
  status (): Promise<unknown> { return this.call(MessageType.Status, emptyMessage, null) }
  devAdd (path: string, format: boolean): Promise<unknown> { return this.call(MessageType.DevAdd, deviceMessage, { path, format }) }
  devRem (path: string, force = false): Promise<unknown> { return this.call(MessageType.DevRem, deviceMessage, { path, format: false, force }) }
  devQuery (path: string): Promise<unknown> { return this.call(MessageType.DevQuery, deviceMessage, { path, format: false }) }
  stopNode (): Promise<unknown> { return this.call(MessageType.NodeStop, emptyMessage, null) }
  /** Starts (or cancels) moving everything off the node; answers with what it still holds. */
  drain (drain: boolean): Promise<unknown> { return this.call(MessageType.NodeDrain, drainMessage, { drain }) }
  /** Local socket only: the node mounts the store at `mountpoint` in its own process. */
  mount (mountpoint: string, writeback: boolean): Promise<unknown> { return this.call(MessageType.NodeMount, mountMessage, { mountpoint, writeback }) }
  /** The node's own durability report, scrub progress and what it holds. */
  health (): Promise<unknown> { return this.call(MessageType.Health, emptyMessage, null) }
  /** Every live object with its size, time and name (what a mount lists). */
  async catalog (): Promise<CatalogEntry[]> {
    const rid = this.nextRequest++
    this.conn.send(MessageType.Catalog, rid, emptyMessage, null)
    const f = await this.reply(rid)
    if (f.type !== MessageType.Data) throw DdfsError.PROTOCOL(`unexpected reply type ${f.type}`)
    return decodeMeta(catalogMessage, f.meta)
  }

  /** Local socket only: the node reads `path` itself (the fast path on the node's machine). */
  putLocal (path: string, put: PutMessage): Promise<unknown> { return this.call(MessageType.PutLocal, putLocalMessage, { path, put }) }
  /** Local socket only: the node writes the object to `path` itself. */
  getLocal (id: Buffer, path: string): Promise<unknown> { return this.call(MessageType.GetLocal, getLocalMessage, { id, path }) }

  /**
   * Local socket only: the node reads `path` while it is still being written. `grow(n)` says the
   * first n bytes are written; `end(n)` gives the final size and resolves with the object's info.
   * Closing the client abandons the put (nothing is stored).
   */
  putLocalFollow (path: string, put: PutMessage): { grow: (size: number) => void, end: (size: number) => Promise<Record<string, unknown>> } {
    const rid = this.nextRequest++
    this.conn.send(MessageType.PutLocal, rid, putLocalMessage, { path, put: { ...put, size: 0, follow: true } })
    const reply = this.reply(rid)
    reply.catch(() => {})  // surfaced by end()
    return {
      grow: (size) => { this.conn.send(MessageType.PutGrow, rid, putGrowMessage, { size, final: false }) },
      end: async (size) => {
        this.conn.send(MessageType.PutGrow, rid, putGrowMessage, { size, final: true })
        const f = await reply
        if (f.type !== MessageType.Ok) throw DdfsError.PROTOCOL(`unexpected reply type ${f.type}`)
        return decodeMeta(okMessage, f.meta) as Record<string, unknown>
      }
    }
  }

  /** Streams `source` (exactly `opts.size` bytes) into a new object; resolves with its info. */
  async put (source: AsyncIterable<Buffer>, opts: PutMessage, progress?: Progress): Promise<Record<string, unknown>> {
    const rid = this.nextRequest++
    const hasher = new Xxh64Stream()
    this.conn.send(MessageType.Put, rid, putMessage, opts)
    // An early ERROR (bad schema, device full) must stop the upload: watch for it meanwhile.
    let early: Error | null = null
    const replyP = this.reply(rid).catch((err) => { early = err; throw err })
    replyP.catch(() => {})
    let sent = 0
    for await (const chunk of source) {
      for (let off = 0; off < chunk.length; off += PUT_CHUNK) {
        if (early !== null) throw early
        const piece = chunk.subarray(off, off + PUT_CHUNK)
        hasher.update(piece)
        sent += piece.length
        if (!this.conn.send(MessageType.Data, rid, null, null, piece)) await this.drained()
        progress?.(sent)
      }
    }
    if (early !== null) throw early
    this.conn.send(MessageType.PutEnd, rid, putEndMessage, { hash: hasher.digest() })
    const f = await replyP
    if (f.type !== MessageType.Ok) throw DdfsError.PROTOCOL(`unexpected reply type ${f.type}`)
    return decodeMeta(okMessage, f.meta) as Record<string, unknown>
  }

  /**
   * Streams an object (or a range of it) to `sink`. `sink` returns a promise when it wants the
   * next piece to wait. A whole-object read is checked against the object's XXH64.
   */
  async get (id: Buffer, sink: (piece: Buffer) => Promise<void> | void, range: { offset?: number, length?: number } = {}, progress?: Progress): Promise<{ size: number }> {
    const rid = this.nextRequest++
    const offset = range.offset ?? 0
    this.conn.send(MessageType.Get, rid, getMessage, { id, offset, length: range.length ?? 0xffffffffffff })
    const head = decodeMeta(getHeadMessage, (await this.reply(rid)).meta)
    const whole = offset === 0 && range.length === undefined
    const hasher = new Xxh64Stream()
    let received = 0
    for (;;) {
      const f = await this.reply(rid)
      if (f.type === MessageType.GetEnd) break
      if (f.type !== MessageType.Data) throw DdfsError.PROTOCOL(`unexpected frame type ${f.type} in a get`)
      received += f.payload.length
      if (received > head.size) throw DdfsError.PROTOCOL('the node sent more bytes than the object holds')
      if (whole) hasher.update(f.payload)
      const wait = sink(f.payload)
      if (wait !== undefined) {
        this.conn.pause()
        await wait
        this.conn.resume()
      }
      progress?.(received)
    }
    if (received !== head.size) throw DdfsError.UNAVAILABLE(`the node sent ${received} of ${head.size} bytes`)
    if (whole && hasher.digest() !== head.hash) throw DdfsError.CORRUPT('the object arrived with a different XXH64 than stored; the output was not kept')
    return { size: head.size }
  }

  private drained (): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => { this.conn.off('drain', done); this.conn.off('close', done); resolve() }
      this.conn.on('drain', done)
      this.conn.on('close', done)
    })
  }
}

function connectSocket (make: () => net.Socket, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = make()
    const timer = setTimeout(() => { s.destroy(); reject(new Error('timeout')) }, timeoutMs)
    s.once('connect', () => { clearTimeout(timer); s.setNoDelay?.(true); resolve(s) })
    s.once('error', (err) => { clearTimeout(timer); reject(err) })
  })
}

async function reachable (host: string, port: number, timeoutMs: number): Promise<boolean> {
  try {
    (await connectSocket(() => net.connect(port, host), timeoutMs)).destroy()
    return true
  } catch {
    return false
  }
}

/**
 * A frame connection to the node at host:port: its local socket when there is one (and it
 * answers), else TCP through the cluster transport (needs the secret).
 */
export async function connectFrames (opts: ConnectOptions): Promise<{ conn: FrameConnection, local: boolean }> {
  const address = `${opts.host}:${opts.port}`
  const sock = socketPath(opts.host, opts.port)
  const notRunning = (): DdfsError => DdfsError.NODE_NOT_RUNNING(`no ddfs node at ${address}; start one with: ddfs node start -s ${opts.host} -p ${opts.port}`)
  if (opts.tcpOnly !== true && fs.existsSync(sock)) {
    try {
      const s = await connectSocket(() => net.connect(sock), opts.timeoutMs ?? 10000)
      return { conn: new FrameConnection(s), local: true }
    } catch {
      // A stale socket file: fall through to TCP.
    }
  }
  if (opts.secret === undefined || opts.secret === null) {
    if (!await reachable(opts.host, opts.port, opts.timeoutMs ?? 10000)) throw notRunning()
    throw DdfsError.PERMISSION(`the node at ${address} is not on this machine (no local socket): reaching it over the network needs the cluster secret; pass --cluster FILE (or set DDFS_CLUSTER)`)
  }
  try {
    const secure = await connectSecure({ host: opts.host, port: opts.port, secret: opts.secret, keyPair: randomKeyPair(), handshakeTimeout: opts.timeoutMs ?? 10000 })
    return { conn: new FrameConnection(secureStream(secure)), local: false }
  } catch (err) {
    const e = DdfsError.from(err)
    if (e.code === 'NODE_NOT_RUNNING') throw notRunning()
    throw DdfsError.PERMISSION(`the node at ${address} refused the handshake (a different cluster secret?): ${e.message}`)
  }
}
