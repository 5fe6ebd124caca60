// The AEADs the transport can run, behind one small interface. Each instance holds one
// direction's key and frame counter: the nonce is the counter, so it never repeats under a key,
// and a replayed, dropped or reordered frame fails authentication instead of being accepted.
import crypto from 'node:crypto'
import { sodium } from './sodium'
import { addon } from '../native'
import { ownedAlone, release } from '../buffers'

export type AeadName = 'aes-256-gcm' | 'chacha20-poly1305' | 'xchacha20-poly1305' | 'sodium-chacha20-poly1305'

/** Wire ids of the AEADs; the handshake carries one byte. */
export const AEAD_IDS: Record<AeadName, number> = {
  'aes-256-gcm': 1,
  'chacha20-poly1305': 2,
  'xchacha20-poly1305': 3,
  'sodium-chacha20-poly1305': 4
}

export const AEAD_NAMES = Object.keys(AEAD_IDS) as AeadName[]

export function aeadById (id: number): AeadName | null {
  for (const name of AEAD_NAMES) if (AEAD_IDS[name] === id) return name
  return null
}

export const TAG_BYTES = 16
const SEAL_PIECE = 64 * 1024
export const HEADER_BYTES = 4

export interface Aead {
  /**
   * Encrypts one frame of `total` plaintext bytes (given as parts) and returns the buffers to
   * write, in order: the 4-byte header (ciphertext length, authenticated as associated data),
   * the ciphertext and the tag.
   */
  seal (parts: readonly Buffer[], total: number): Buffer[]
  /** Decrypts a frame body (ciphertext + tag) whose header was `header`; null if it fails. */
  open (header: Buffer, body: Buffer): Buffer | null
  /** True when open() returns a view of `body`, so the caller must not reuse body's memory. */
  readonly inPlace: boolean
  /**
   * Decrypts a frame piece by piece as its bytes arrive (while they are still in cache); the
   * plaintext must not be used unless final() returns true. Only ciphers that can stream.
   */
  openStream?: (header: Buffer) => OpenStream
}

export interface OpenStream {
  /** Decrypts `piece` into `dst` (the same length). */
  update (piece: Buffer, dst: Buffer): void
  /** Checks the tag; true means every piece was authentic. */
  final (tag: Buffer): boolean
}

export function createAead (name: AeadName, key: Buffer): Aead {
  switch (name) {
    case 'aes-256-gcm': return new NativeGcm(key)
    case 'chacha20-poly1305': return new NodeAead('chacha20-poly1305', key)
    case 'xchacha20-poly1305': return new SodiumAead(key, 24, sodium.crypto_aead_xchacha20poly1305_ietf_encrypt, sodium.crypto_aead_xchacha20poly1305_ietf_decrypt)
    case 'sodium-chacha20-poly1305': return new SodiumAead(key, 12, sodium.crypto_aead_chacha20poly1305_ietf_encrypt, sodium.crypto_aead_chacha20poly1305_ietf_decrypt)
  }
}

/** Writes the 64-bit frame counter into the first 8 bytes of the nonce (the rest stays zero). */
function setCounter (nonce: Buffer, counter: number): void {
  nonce.writeUInt32LE(counter >>> 0, 0)
  nonce.writeUInt32LE(Math.floor(counter / 0x100000000), 4)
}

// Sealed frames of bulk size come from a small pool and go back once the socket wrote them
// (releaseSealed): a node sending fragments would otherwise make a new buffer per frame, and
// new buffers are what drive V8's full mark-compacts here (see native/aead.cc).
const POOLED_MIN = 256 * 1024
const POOL_MAX = 16
const sealPool: ArrayBuffer[] = []

function sealBuffer (size: number): Buffer {
  if (size >= POOLED_MIN) {
    // A pooled buffer fits when it is at most a quarter bigger: frames of one kind (a fragment
    // with its trailer and the wire header) have nearly the same size.
    const i = sealPool.findIndex((b) => b.byteLength >= size && b.byteLength <= size * 1.25)
    if (i >= 0) return Buffer.from(sealPool.splice(i, 1)[0], 0, size)
  }
  const frame = Buffer.allocUnsafeSlow(size)
  if (size >= POOLED_MIN) ownedAlone(frame)
  return frame
}

/** Gives a sealed frame's memory back for reuse (or, with the pool full, to the system): only once nothing reads it any more. */
export function releaseSealed (frame: Buffer): void {
  if (frame.length < POOLED_MIN || frame.byteOffset !== 0) return
  if (sealPool.length < POOL_MAX) sealPool.push(frame.buffer as ArrayBuffer)
  else release(frame)
}

interface GcmContext {
  begin (nonce: Buffer, aad: Buffer): void
  update (src: Buffer, dst: Buffer): void
  sealFinal (tag: Buffer): void
  openFinal (tag: Buffer): boolean
}
const Gcm = addon.Gcm as new (key: Buffer, encrypt: boolean) => GcmContext

// AES-256-GCM through the OpenSSL in Node (AES-NI/VAES here), natively (native/aead.cc) so the
// output goes where the caller says: a sealed frame is one buffer, a received frame decrypts in
// place or straight into its plaintext buffer. The same wire format as node:crypto's.
class NativeGcm implements Aead {
  readonly inPlace = true
  private readonly nonce = Buffer.alloc(12)
  private counter = 0
  // An instance seals or opens (it is one direction), so only one of these is ever made.
  private sealerCtx: GcmContext | null = null
  private openerCtx: GcmContext | null = null

  constructor (private readonly key: Buffer) {}

  private get sealer (): GcmContext { return (this.sealerCtx ??= new Gcm(this.key, true)) }
  private get opener (): GcmContext { return (this.openerCtx ??= new Gcm(this.key, false)) }

  seal (parts: readonly Buffer[], total: number): Buffer[] {
    const frame = sealBuffer(HEADER_BYTES + total + TAG_BYTES)
    const header = frame.subarray(0, HEADER_BYTES)
    header.writeUInt32LE(total + TAG_BYTES, 0)
    setCounter(this.nonce, this.counter++)
    this.sealer.begin(this.nonce, header)
    let off = HEADER_BYTES
    for (const p of parts) {
      this.sealer.update(p, frame.subarray(off, off + p.length))
      off += p.length
    }
    this.sealer.sealFinal(frame.subarray(off))
    return [frame]
  }

  openStream = (header: Buffer): OpenStream => {
    setCounter(this.nonce, this.counter)
    this.opener.begin(this.nonce, header)
    return {
      update: (piece, dst) => { this.opener.update(piece, dst) },
      final: (tag) => {
        if (!this.opener.openFinal(tag)) return false
        this.counter++
        return true
      }
    }
  }

  open (header: Buffer, body: Buffer): Buffer | null {
    if (body.length < TAG_BYTES) return null
    setCounter(this.nonce, this.counter)
    const plain = body.subarray(0, body.length - TAG_BYTES)
    this.opener.begin(this.nonce, header)
    this.opener.update(plain, plain)
    if (!this.opener.openFinal(body.subarray(plain.length))) return null
    this.counter++
    return plain
  }
}

// node:crypto (OpenSSL): ChaCha20-Poly1305 for peers that ask for it. update() allocates its
// output, so a frame costs one ciphertext buffer per part; Node has no in-place API.
class NodeAead implements Aead {
  readonly inPlace = false
  private readonly key: crypto.KeyObject
  private readonly nonce = Buffer.alloc(12)
  private counter = 0

  constructor (private readonly alg: 'chacha20-poly1305', key: Buffer) {
    this.key = crypto.createSecretKey(key)
  }

  seal (parts: readonly Buffer[], total: number): Buffer[] {
    const header = Buffer.allocUnsafe(HEADER_BYTES)
    header.writeUInt32LE(total + TAG_BYTES, 0)
    setCounter(this.nonce, this.counter++)
    const c = crypto.createCipheriv(this.alg as 'aes-256-gcm', this.key, this.nonce, { authTagLength: TAG_BYTES })
    c.setAAD(header)
    const out: Buffer[] = [header]
    // update() allocates its output; 64 KiB pieces keep each allocation below malloc's mmap
    // threshold. Between two processes it measured the same as 1 MiB pieces (0.42-0.55 s/GiB
    // sender CPU either way, under load), so this is a guard, not a gain.
    for (const p of parts) {
      for (let off = 0; off < p.length; off += SEAL_PIECE) out.push(c.update(p.subarray(off, off + SEAL_PIECE)))
    }
    c.final()
    out.push(c.getAuthTag())
    return out
  }

  openStream = (header: Buffer): OpenStream => {
    setCounter(this.nonce, this.counter)
    const d = crypto.createDecipheriv(this.alg as 'aes-256-gcm', this.key, this.nonce, { authTagLength: TAG_BYTES })
    d.setAAD(header)
    return {
      update: (piece, dst) => { d.update(piece).copy(dst) },
      final: (tag) => {
        d.setAuthTag(tag)
        try {
          d.final()
        } catch {
          return false
        }
        this.counter++
        return true
      }
    }
  }

  open (header: Buffer, body: Buffer): Buffer | null {
    if (body.length < TAG_BYTES) return null
    setCounter(this.nonce, this.counter)
    const d = crypto.createDecipheriv(this.alg as 'aes-256-gcm', this.key, this.nonce, { authTagLength: TAG_BYTES })
    d.setAAD(header)
    d.setAuthTag(body.subarray(body.length - TAG_BYTES))
    const plain = d.update(body.subarray(0, body.length - TAG_BYTES))
    try {
      d.final()
    } catch {
      return null
    }
    this.counter++
    return plain
  }
}

type SodiumEncrypt = (c: Buffer, m: Buffer, ad: Buffer | null, nsec: null, npub: Buffer, k: Buffer) => number
type SodiumDecrypt = (m: Buffer, nsec: null, c: Buffer, ad: Buffer | null, npub: Buffer, k: Buffer) => number

// libsodium: encrypts and decrypts in place, so a frame is one buffer (header, ciphertext, tag)
// on send and a view of the received bytes on receive.
class SodiumAead implements Aead {
  readonly inPlace = true
  private readonly nonce: Buffer
  private counter = 0

  constructor (private readonly key: Buffer, nonceBytes: number, private readonly enc: SodiumEncrypt, private readonly dec: SodiumDecrypt) {
    this.nonce = Buffer.alloc(nonceBytes)
  }

  seal (parts: readonly Buffer[], total: number): Buffer[] {
    const frame = Buffer.allocUnsafe(HEADER_BYTES + total + TAG_BYTES)
    frame.writeUInt32LE(total + TAG_BYTES, 0)
    let off = HEADER_BYTES
    for (const p of parts) off += p.copy(frame, off)
    setCounter(this.nonce, this.counter++)
    const body = frame.subarray(HEADER_BYTES)
    this.enc(body, body.subarray(0, total), frame.subarray(0, HEADER_BYTES), null, this.nonce, this.key)
    return [frame]
  }

  open (header: Buffer, body: Buffer): Buffer | null {
    if (body.length < TAG_BYTES) return null
    setCounter(this.nonce, this.counter)
    const plain = body.subarray(0, body.length - TAG_BYTES)
    try {
      this.dec(plain, null, body, header, this.nonce, this.key)
    } catch {
      return null
    }
    this.counter++
    return plain
  }
}
