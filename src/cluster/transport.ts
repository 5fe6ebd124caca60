// Authenticated, encrypted frames between cluster members over plain TCP.
//
// Handshake (2 round trips, initiator = the connecting side):
//   I -> R  HELLO  version(1) aead(1) ephemeral X25519 public key(32)
//   R -> I  HELLO  version(1) aead(1) ephemeral X25519 public key(32)
//   both    dh = X25519(e, E'); th = BLAKE2b_psk("th" | helloI | helloR);
//           kIR = BLAKE2b_psk("i2r" | dh | th), kRI = BLAKE2b_psk("r2i" | dh | th)
//   I -> R  frame 0 under kIR: I's ed25519 public key(32) | sign_I("ddfs-auth-i" | th)(64)
//   R -> I  frame 0 under kRI: R's ed25519 public key(32) | sign_R("ddfs-auth-r" | th)(64)
// The PSK (derived from the cluster secret) keys every derivation, so a peer without it cannot
// produce or read frame 0: the responder closes before it sends anything but its random
// ephemeral key. Ephemeral keys give forward secrecy; the signatures over the transcript bind
// each side's long-term identity to this session; identities travel encrypted.
//
// Frames after that: u32le length of the body | body = ciphertext | 16-byte tag, the header is
// associated data and the nonce is a per-direction counter, so tampering, replay and reordering
// all fail authentication and close the connection.
import net from 'node:net'
import { EventEmitter } from 'node:events'
import { DdfsError } from '../errors'
import { sodium, type KeyPair } from './sodium'
import { deriveClusterKeys } from './secret'
import { createAead, aeadById, releaseSealed, AEAD_IDS, AEAD_NAMES, HEADER_BYTES, TAG_BYTES, type Aead, type AeadName, type OpenStream } from './aead'
import { ownedAlone } from '../buffers'
import { faultLayer, partitionError, PARTITION_DIAL_MS, type FaultLink } from './fault-layer'

export type { AeadName } from './aead'

const VERSION = 1
const HELLO_BYTES = 34
const AUTH_BYTES = 32 + 64
/** Largest plaintext frame. Large frames amortise the per-frame cipher setup and syscalls. */
export const MAX_FRAME = 4 * 1024 * 1024
/** AES-256-GCM: fastest and cheapest per GiB here (see docs/cluster.md, bench/transport.ts). */
export const DEFAULT_AEAD: AeadName = 'aes-256-gcm'
const HANDSHAKE_TIMEOUT_MS = 10_000
/** The dialing side's read buffer: one read takes up to this much. */
const READ_BUFFER = 1024 * 1024
/** Decrypt frames that span reads piece by piece (DDFS_TRANSPORT_STREAM=0 turns it off, to compare). */
const STREAM_DECRYPT = process.env.DDFS_TRANSPORT_STREAM !== '0'

export interface TransportOptions {
  /** The 32-byte cluster secret (not a derived key). */
  secret: Buffer
  /** This side's ed25519 identity. */
  keyPair: KeyPair
  /** Initiator: the AEAD to propose; responder: ignored. Default aes-256-gcm. */
  aead?: AeadName
  /** Responder: the AEADs it accepts. Default all. */
  aeads?: readonly AeadName[]
  /** Handshake deadline, default 10 s. */
  handshakeTimeout?: number
}

export interface ConnectOptions extends TransportOptions {
  host: string
  port: number
  /** When set, the connection fails unless the responder proves this identity. */
  remotePublicKey?: Buffer
}

export interface ListenOptions extends TransportOptions {
  host: string
  /** 0 picks a free port; read it back from server.address(). */
  port: number
}

export interface SecureConnectionEvents {
  frame: [frame: Buffer]
  drain: []
  close: [err: Error | null]
}

/** One authenticated encrypted connection; frames arrive in order, each exactly as sent. */
export class SecureConnection extends EventEmitter<SecureConnectionEvents> {
  /** The peer's ed25519 public key, proven in the handshake. */
  readonly remotePublicKey: Buffer
  readonly publicKey: Buffer
  readonly aead: AeadName
  readonly remoteAddress: string
  closed = false
  /** Delay, loss and partitions for the fault schedule; null unless DDFS_FAULT_FILE is set. */
  private readonly link: FaultLink | null

  /** @internal built by connect()/listen() once the handshake is done. */
  constructor (private readonly socket: net.Socket, private readonly reader: FrameReader, private readonly tx: Aead, private readonly rx: Aead,
    info: { remotePublicKey: Buffer, publicKey: Buffer, aead: AeadName }) {
    super()
    this.remotePublicKey = info.remotePublicKey
    this.publicKey = info.publicKey
    this.aead = info.aead
    this.remoteAddress = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`
    reader.onError = (err) => this.close(err)
    reader.onPlain = (plain) => this.emit('frame', plain)
    socket.on('drain', () => this.emit('drain'))
    socket.on('error', (err) => this.close(err))
    socket.on('close', () => this.close())
    this.link = faultLayer === null ? null : faultLayer.attach(this, (out) => this.write(out), () => this.socket.writableLength)
  }

  /**
   * Sends one frame (the parts are concatenated on the other side). Returns false when the
   * socket's buffer is full: wait for 'drain' before sending more.
   */
  send (frame: Buffer | readonly Buffer[]): boolean {
    if (this.closed) throw DdfsError.CLOSED('the connection is closed')
    const parts = Buffer.isBuffer(frame) ? [frame] : frame
    let total = 0
    for (const p of parts) total += p.length
    if (total > MAX_FRAME) throw DdfsError.BAD_ARGUMENT(`a frame has at most ${MAX_FRAME} bytes, got ${total}`)
    const out = this.tx.seal(parts, total)
    if (this.link !== null) return this.link.send(out)
    return this.write(out)
  }

  private write (out: Buffer[]): boolean {
    if (out.length === 1) return this.socket.write(out[0], (err) => { if (err == null) releaseSealed(out[0]) })
    this.socket.cork()
    for (let i = 0; i < out.length - 1; i++) this.socket.write(out[i])
    const ok = this.socket.write(out[out.length - 1])
    this.socket.uncork()
    return ok
  }

  /**
   * Stops delivering frames until resume(), at once (even between frames of one read); the
   * socket stops reading, so TCP backpressure reaches the sender.
   */
  pause (): void {
    this.paused = true
    this.reader.onFrame = null
    this.socket.pause()
  }

  resume (): void {
    this.paused = false
    this.deliver()
  }

  private paused = false
  private started = false

  /** @internal called once the caller had the chance to attach its 'frame' listener. */
  start (): void {
    this.started = true
    this.deliver()
  }

  private deliver (): void {
    if (this.closed || !this.started || this.paused) return
    this.reader.onFrame = this.frameHandler
    const stash = this.reader.stash
    this.reader.stash = null
    if (stash !== null) this.reader.push(stash)
    if (!this.paused && !this.closed) this.socket.resume()
  }

  private readonly frameHandler = (header: Buffer, body: Buffer): void => this.onFrame(header, body)

  /** Bytes queued in the socket, not yet handed to the kernel. */
  get bufferedAmount (): number { return this.socket.writableLength + (this.link?.bytes ?? 0) }

  /** Closes the connection; with an error, at once, otherwise after queued frames are flushed. */
  close (err?: Error | null): void {
    if (this.closed) return
    if (this.link !== null) {
      if (err == null) this.link.flushAll()
      this.link.drop()
    }
    this.closed = true
    this.reader.onFrame = null
    this.reader.failed = true // drop whatever still arrives
    if (err != null) {
      this.socket.destroy()
    } else {
      // A peer that never closes its side must not hold the socket forever.
      this.socket.end()
      setTimeout(() => this.socket.destroy(), HANDSHAKE_TIMEOUT_MS).unref()
    }
    this.emit('close', err ?? null)
  }

  private onFrame (header: Buffer, body: Buffer): void {
    const plain = this.rx.open(header, body)
    if (plain === null) {
      this.close(DdfsError.PROTOCOL(`a frame from ${this.remoteAddress} failed authentication (tampered, replayed or reordered); connection closed`))
      return
    }
    this.emit('frame', plain)
  }
}

export interface SecureServerEvents {
  /** A peer that failed the handshake: wrong secret, bad identity, timeout, garbage. */
  reject: [err: DdfsError, remoteAddress: string]
  error: [err: Error]
}

export class SecureServer extends EventEmitter<SecureServerEvents> {
  private readonly sockets = new Set<net.Socket>()

  constructor (private readonly server: net.Server) {
    super()
  }

  /** @internal */
  track (socket: net.Socket): void {
    this.sockets.add(socket)
    socket.on('close', () => this.sockets.delete(socket))
  }

  address (): { host: string, port: number } {
    const a = this.server.address() as net.AddressInfo
    return { host: a.address, port: a.port }
  }

  /** Stops accepting and destroys every connection it accepted. */
  close (): Promise<void> {
    for (const s of this.sockets) s.destroy()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }
}

/** Opens a connection and runs the handshake as the initiator. */
export function connect (opts: ConnectOptions): Promise<SecureConnection> {
  const aead = opts.aead ?? DEFAULT_AEAD
  checkOptions(opts)
  if (faultLayer !== null && opts.remotePublicKey !== undefined && faultLayer.cuts(opts.remotePublicKey)) {
    // A dial into a partition gets no answer: it fails once the connect would time out.
    return new Promise((_resolve, reject) => setTimeout(() => reject(DdfsError.NODE_NOT_RUNNING(`cannot reach ${opts.host}:${opts.port}: ${partitionError().message}`)), PARTITION_DIAL_MS))
  }
  return new Promise((resolve, reject) => {
    // The dialing side reads into one buffer of its own (a node's replies, fragments among them,
    // come back on the connections it dialed): Node would otherwise make a new buffer per read,
    // and every new buffer adds to V8's external-memory pressure (full mark-compacts).
    const reader = new FrameReader(true)
    const socket = net.connect({
      host: opts.host,
      port: opts.port,
      noDelay: true,
      onread: { buffer: Buffer.allocUnsafeSlow(READ_BUFFER), callback: (n: number, buf: Uint8Array) => { reader.push(Buffer.from(buf.buffer, buf.byteOffset, n)); return true } }
    })
    const hs = new Handshake(socket, true, opts, aead, [aead], reader)
    hs.run().then((conn) => {
      if (opts.remotePublicKey !== undefined && !conn.remotePublicKey.equals(opts.remotePublicKey)) {
        conn.close(DdfsError.PERMISSION('wrong peer identity'))
        reject(DdfsError.PERMISSION(`${opts.host}:${opts.port} proved identity ${conn.remotePublicKey.toString('hex').slice(0, 16)}…, not the expected ${opts.remotePublicKey.toString('hex').slice(0, 16)}…`))
        return
      }
      resolve(conn)
    }, (err: Error) => {
      reject(DdfsError.from(err).code === 'INTERNAL' ? DdfsError.NODE_NOT_RUNNING(`cannot reach ${opts.host}:${opts.port}: ${err.message}`) : err)
    })
  })
}

/** Accepts connections; `onConnection` gets each one after its handshake succeeded. */
export async function listen (opts: ListenOptions, onConnection: (conn: SecureConnection) => void): Promise<SecureServer> {
  checkOptions(opts)
  const accepted = opts.aeads ?? AEAD_NAMES
  const server = net.createServer({ noDelay: true })
  const secure = new SecureServer(server)
  server.on('connection', (socket) => {
    secure.track(socket)
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`
    new Handshake(socket, false, opts, DEFAULT_AEAD, accepted, new FrameReader(false)).run().then(onConnection, (err: Error) => {
      secure.emit('reject', DdfsError.from(err), remote)
    })
  })
  server.on('error', (err) => secure.emit('error', err))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, opts.host, () => { server.off('error', reject); resolve() })
  })
  return secure
}

function checkOptions (opts: TransportOptions): void {
  if (!Buffer.isBuffer(opts.secret) || opts.secret.length !== 32) throw DdfsError.BAD_ARGUMENT('a transport needs the 32-byte cluster secret')
  if (opts.keyPair?.publicKey?.length !== 32 || opts.keyPair?.secretKey?.length !== 64) throw DdfsError.BAD_ARGUMENT('a transport needs an ed25519 key pair')
}

/**
 * Splits the byte stream into the initial hello and then length-prefixed frames. A frame that
 * arrives in one read is handed out as a view of that read; one spread over several reads is
 * gathered into one buffer of its exact size (one copy). With `transient` reads (one buffer
 * reused for every read), nothing handed out is a view of a read.
 */
class FrameReader {
  constructor (readonly transient: boolean) {}

  onFrame: ((header: Buffer, body: Buffer) => void) | null = null
  onHello: ((hello: Buffer) => void) | null = null
  onError: ((err: Error) => void) = () => {}
  stash: Buffer | null = null
  /** Set once the AEAD is known: whether the body buffer may be reused after open(). */
  reuse = false
  /** Set after the handshake when the AEAD can decrypt piece by piece (see streamPiece). */
  streamer: Aead | null = null
  onPlain: ((plain: Buffer) => void) | null = null
  private dec: OpenStream | null = null
  private plain: Buffer | null = null
  private plainFill = 0
  private readonly tag = Buffer.alloc(TAG_BYTES)
  private tagFill = 0
  private spare: Buffer | null = null
  private readonly header = Buffer.alloc(HEADER_BYTES)
  private headerFill = 0
  private body: Buffer | null = null
  private bodyFill = 0
  private hello: Buffer | null = Buffer.alloc(HELLO_BYTES)
  private helloFill = 0

  push (chunk: Buffer): void {
    let off = 0
    while (off < chunk.length) {
      if (this.hello !== null) {
        const n = chunk.copy(this.hello, this.helloFill, off)
        this.helloFill += n
        off += n
        if (this.helloFill === HELLO_BYTES) {
          const h = this.hello
          this.hello = null
          this.onHello?.(h)
        }
        continue
      }
      if (this.failed) return
      if (this.onFrame === null) {
        // Paused, or between the handshake and the caller's listener: keep the bytes for later.
        const rest = chunk.subarray(off)
        this.stash = this.stash === null ? Buffer.from(rest) : Buffer.concat([this.stash, rest])
        return
      }
      if (this.dec !== null) {
        off = this.streamPiece(chunk, off)
        continue
      }
      if (this.body === null) {
        // Fast path: a whole frame inside this read needs no copy at all.
        if (!this.transient && this.headerFill === 0 && chunk.length - off >= HEADER_BYTES) {
          const len = chunk.readUInt32LE(off)
          if (!this.checkLength(len)) return
          if (chunk.length - off - HEADER_BYTES >= len) {
            this.onFrame(chunk.subarray(off, off + HEADER_BYTES), chunk.subarray(off + HEADER_BYTES, off + HEADER_BYTES + len))
            off += HEADER_BYTES + len
            continue
          }
        }
        const n = Math.min(HEADER_BYTES - this.headerFill, chunk.length - off)
        chunk.copy(this.header, this.headerFill, off, off + n)
        this.headerFill += n
        off += n
        if (this.headerFill < HEADER_BYTES) return
        const len = this.header.readUInt32LE(0)
        if (!this.checkLength(len)) return
        if (this.streamer?.openStream !== undefined) {
          this.dec = this.streamer.openStream(Buffer.from(this.header))
          this.plain = Buffer.allocUnsafeSlow(len - TAG_BYTES)
          ownedAlone(this.plain)
          this.plainFill = 0
          this.tagFill = 0
          continue
        }
        // A cipher that decrypts into a new buffer leaves the ciphertext buffer free for the next
        // frame: one buffer per connection instead of a fresh (page-faulting) one per frame.
        if (this.reuse && len <= MAX_FRAME + TAG_BYTES) {
          if (this.spare === null) this.spare = Buffer.allocUnsafeSlow(MAX_FRAME + TAG_BYTES)
          this.body = this.spare.subarray(0, len)
        } else {
          this.body = Buffer.allocUnsafeSlow(len)
        }
        this.bodyFill = 0
      }
      const n = chunk.copy(this.body, this.bodyFill, off)
      this.bodyFill += n
      off += n
      if (this.bodyFill === this.body.length) {
        const body = this.body
        this.body = null
        this.headerFill = 0
        // The header buffer is reused, so hand out a copy of these 4 bytes, not the buffer.
        this.onFrame(Buffer.from(this.header), body)
      }
    }
  }

  /**
   * Streaming decryption of a frame that spans reads: each piece is decrypted into the frame's
   * plaintext buffer as it arrives, and the frame is delivered only once the tag verified.
   * Measured against gathering the ciphertext first and decrypting it whole: see docs/cluster.md.
   */
  private streamPiece (chunk: Buffer, off: number): number {
    const dec = this.dec as OpenStream
    const plain = this.plain as Buffer
    const avail = chunk.length - off
    if (this.plainFill < plain.length) {
      const n = Math.min(plain.length - this.plainFill, avail)
      dec.update(chunk.subarray(off, off + n), plain.subarray(this.plainFill, this.plainFill + n))
      this.plainFill += n
      return off + n
    }
    const n = Math.min(TAG_BYTES - this.tagFill, avail)
    chunk.copy(this.tag, this.tagFill, off, off + n)
    this.tagFill += n
    if (this.tagFill === TAG_BYTES) {
      const ok = dec.final(this.tag) && this.plainFill === plain.length
      this.dec = null
      this.plain = null
      this.headerFill = 0
      if (!ok) {
        this.failed = true
        this.onError(DdfsError.PROTOCOL('a frame failed authentication (tampered, replayed or reordered); connection closed'))
      } else {
        this.onPlain?.(plain)
      }
    }
    return off + n
  }

  /** Largest body accepted: only the auth frame's size until the handshake is done, so an
   * unauthenticated peer cannot make the node allocate a large buffer. */
  maxBody = AUTH_BYTES + TAG_BYTES

  private checkLength (len: number): boolean {
    if (len >= TAG_BYTES && len <= this.maxBody) return true
    this.onError(DdfsError.PROTOCOL(`frame length ${len} out of range`))
    this.onFrame = null
    this.failed = true
    return false
  }

  failed = false
}

class Handshake {
  private readonly eSecret = Buffer.alloc(32)
  private readonly eHello = Buffer.alloc(HELLO_BYTES)
  private readonly psk: Buffer

  constructor (private readonly socket: net.Socket, private readonly initiator: boolean, private readonly opts: TransportOptions,
    private aead: AeadName, private readonly accepted: readonly AeadName[], private readonly reader: FrameReader) {
    this.psk = deriveClusterKeys(opts.secret).psk
    sodium.randombytes_buf(this.eSecret)
    this.eHello[0] = VERSION
    this.eHello[1] = AEAD_IDS[aead]
    sodium.crypto_scalarmult_base(this.eHello.subarray(2), this.eSecret)
  }

  run (): Promise<SecureConnection> {
    const { socket, reader } = this
    return new Promise((resolve, reject) => {
      let done = false
      const fail = (err: Error): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        socket.destroy()
        reject(err)
      }
      const timer = setTimeout(() => fail(DdfsError.PERMISSION('handshake timed out')), this.opts.handshakeTimeout ?? HANDSHAKE_TIMEOUT_MS)
      timer.unref()
      const onData = (chunk: Buffer): void => reader.push(chunk)
      const onClose = (): void => fail(DdfsError.PERMISSION(this.initiator
        ? 'the node closed the connection during the handshake: wrong cluster secret, or not a ddfs node'
        : 'the peer closed the connection during the handshake'))
      const onError = (err: Error): void => fail(err)
      if (!reader.transient) socket.on('data', onData)  // (transient: reads come through onread)
      socket.on('close', onClose)
      socket.on('error', onError)
      reader.onError = fail

      let tx: Aead | null = null
      let rx: Aead | null = null
      let th: Buffer | null = null

      if (this.initiator) socket.write(this.eHello)

      reader.onHello = (peerHello) => {
        try {
          if (peerHello[0] !== VERSION) throw DdfsError.PROTOCOL(`unsupported transport version ${peerHello[0]}`)
          const peerAead = aeadById(peerHello[1])
          if (peerAead === null || !this.accepted.includes(peerAead)) throw DdfsError.PROTOCOL(`unsupported AEAD ${peerHello[1]}`)
          if (!this.initiator) {
            this.aead = peerAead
            this.eHello[1] = peerHello[1]
          }
          const helloI = this.initiator ? this.eHello : peerHello
          const helloR = this.initiator ? peerHello : this.eHello
          const dh = Buffer.alloc(32)
          sodium.crypto_scalarmult(dh, this.eSecret, peerHello.subarray(2))
          sodium.sodium_memzero(this.eSecret)
          if (dh.every((b) => b === 0)) throw DdfsError.PROTOCOL('degenerate ephemeral key')
          th = kdf(this.psk, 'th', helloI, helloR)
          const kIR = kdf(this.psk, 'i2r', dh, th)
          const kRI = kdf(this.psk, 'r2i', dh, th)
          tx = createAead(this.aead, this.initiator ? kIR : kRI)
          rx = createAead(this.aead, this.initiator ? kRI : kIR)
          this.reader.reuse = !rx.inPlace
          if (this.initiator) {
            this.sendAuth(tx, th)
          } else {
            socket.write(this.eHello)
          }
        } catch (err) {
          fail(err as Error)
        }
      }

      reader.onFrame = (header, body) => {
        if (rx === null || tx === null || th === null) return fail(DdfsError.PROTOCOL('frame before hello'))
        const plain = rx.open(header, body)
        if (plain === null || plain.length !== AUTH_BYTES) {
          return fail(DdfsError.PERMISSION('the peer could not prove it holds the cluster secret'))
        }
        const remotePublicKey = Buffer.from(plain.subarray(0, 32))
        const sig = plain.subarray(32)
        if (!sodium.crypto_sign_verify_detached(sig, authMessage(!this.initiator, th), remotePublicKey)) {
          return fail(DdfsError.PERMISSION('the peer\'s identity signature is invalid'))
        }
        if (!this.initiator) this.sendAuth(tx, th)
        done = true
        clearTimeout(timer)
        socket.off('close', onClose)
        socket.off('error', onError)
        // Frames that arrive with or after the auth frame wait in the reader until the caller has
        // attached its listener: the promise resolves (microtask) before start() (next turn).
        reader.onFrame = null
        reader.maxBody = MAX_FRAME + TAG_BYTES
        if (STREAM_DECRYPT && rx.openStream !== undefined) reader.streamer = rx
        socket.pause()
        const conn = new SecureConnection(socket, reader, tx, rx, { remotePublicKey, publicKey: this.opts.keyPair.publicKey, aead: this.aead })
        resolve(conn)
        setImmediate(() => conn.start())
      }
    })
  }

  private sendAuth (tx: Aead, th: Buffer): void {
    const sig = Buffer.alloc(64)
    sodium.crypto_sign_detached(sig, authMessage(this.initiator, th), this.opts.keyPair.secretKey)
    for (const b of tx.seal([this.opts.keyPair.publicKey, sig], AUTH_BYTES)) this.socket.write(b)
  }
}

function authMessage (initiator: boolean, th: Buffer): Buffer {
  return Buffer.concat([Buffer.from(initiator ? 'ddfs-auth-i' : 'ddfs-auth-r'), th])
}

function kdf (key: Buffer, label: string, a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(32)
  sodium.crypto_generichash(out, Buffer.concat([Buffer.from(label), a, b]), key)
  return out
}
