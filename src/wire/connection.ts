// Frames over any byte stream (a Unix socket, or an encrypted TCP stream). Parses and checks
// each frame's XXH64, hands out the meta and payload as views of the received bytes (a copy
// only when a frame spans several reads), and writes frames without copying the payload.
import type { Duplex } from 'node:stream'
import c from 'compact-encoding'
import { EventEmitter } from 'node:events'
import { DdfsError } from '../errors'
import { xxh64, Xxh64Stream } from '../hash'
import { shared } from '../buffers'
import { MAX_FRAME, FRAME_PREFIX, FRAME_HASH, SELF_CHECKED, MessageType, errorMessage } from './messages'

export interface Frame {
  type: MessageType
  requestId: number
  meta: Buffer
  payload: Buffer
  /** The payload is a fragment entry the frame's XXH64 did not cover: its reader checks it (SELF_CHECKED). */
  selfChecked: boolean
}

type Stream = Duplex & { cork?: () => void, uncork?: () => void, writeFrame?: (parts: Buffer[], total: number) => boolean | null }

export class FrameConnection extends EventEmitter {
  private chunks: Buffer[] = []
  private buffered = 0
  private readonly hasher = new Xxh64Stream()
  closed = false

  constructor (readonly stream: Stream) {
    super()
    stream.on('data', (chunk: Buffer) => this.onData(chunk))
    stream.on('error', (err: Error) => this.fail(err))
    stream.on('close', () => this.fail(null))
    stream.on('end', () => this.fail(null))
    stream.on('drain', () => this.emit('drain'))
  }

  /**
   * Sends one frame; returns false when the stream wants the sender to wait for 'drain'.
   * `written` is called once the payload is no longer read (the stream took or encrypted it).
   * `selfChecked`: the payload is a fragment entry, checked by its reader (SELF_CHECKED).
   */
  send<T> (type: MessageType, requestId: number, enc: c.Encoder<T> | null, meta: T | null, payload: Buffer | null = null, written?: () => void, selfChecked = false): boolean {
    if (this.closed) return false
    let metaLen = 0
    const state = c.state()
    if (enc !== null) { enc.preencode(state, meta as T); metaLen = state.end }
    const payloadLen = payload === null ? 0 : payload.length
    const bodyLen = FRAME_PREFIX - 4 + metaLen + payloadLen
    if (bodyLen > MAX_FRAME) throw DdfsError.PROTOCOL(`frame of ${bodyLen} bytes exceeds ${MAX_FRAME}`)
    const head = Buffer.allocUnsafe(FRAME_PREFIX + metaLen)
    head.writeUInt32LE(bodyLen, 0)
    head.writeUInt8(selfChecked ? type | SELF_CHECKED : type, 4)
    head.writeUInt32LE(requestId >>> 0, 5)
    head.writeUInt32LE(metaLen, 9)
    if (enc !== null) {
      state.buffer = head
      state.start = FRAME_PREFIX
      state.end = FRAME_PREFIX + metaLen
      enc.encode(state, meta as T)
    }
    const tail = Buffer.allocUnsafe(FRAME_HASH)
    const h = payload === null || selfChecked ? xxh64(head) : this.hasher.reset().update(head).update(payload).digest()
    tail.writeBigUInt64LE(h, 0)
    if (this.stream.writeFrame !== undefined) {
      const ok = this.stream.writeFrame(payload !== null && payload.length > 0 ? [head, payload, tail] : [head, tail], head.length + payloadLen + FRAME_HASH)
      if (ok !== null) {
        written?.()
        return ok
      }
    }
    this.stream.cork?.()
    this.stream.write(head)
    if (payload !== null && payload.length > 0) this.stream.write(payload)
    const ok = this.stream.write(tail, written === undefined ? undefined : (err) => { if (err == null) written() })
    this.stream.uncork?.()
    return ok
  }

  sendError (requestId: number, err: unknown): void {
    const e = DdfsError.from(err)
    const message = e.message.startsWith(`${e.code}: `) ? e.message.slice(e.code.length + 2) : e.message
    this.send(0 as MessageType, requestId, errorMessage, { code: e.code, message })
  }

  pause (): void { this.stream.pause() }
  resume (): void { this.stream.resume() }

  close (err?: Error): void {
    if (this.closed) return
    this.closed = true
    if (err !== undefined) this.stream.destroy(err)
    else this.stream.end()
    this.emit('close', err ?? null)
  }

  private fail (err: Error | null): void {
    if (this.closed) return
    this.closed = true
    this.emit('close', err)
  }

  private onData (chunk: Buffer): void {
    this.chunks.push(chunk)
    this.buffered += chunk.length
    try {
      while (!this.closed && this.buffered >= 4) {
        const bodyLen = this.peekLength()
        if (bodyLen < FRAME_PREFIX - 4 || bodyLen > MAX_FRAME) throw DdfsError.PROTOCOL(`bad frame length ${bodyLen}`)
        const total = 4 + bodyLen + FRAME_HASH
        if (this.buffered < total) break
        const frame = this.take(total)
        this.emit('frame', this.parse(frame))
      }
    } catch (err) {
      this.emit('protocol-error', err)
      this.close(err as Error)
    }
  }

  private peekLength (): number {
    const first = this.chunks[0]
    if (first.length >= 4) return first.readUInt32LE(0)
    const b = Buffer.concat(this.chunks, 4)
    return b.readUInt32LE(0)
  }

  private take (n: number): Buffer {
    const first = this.chunks[0]
    let out: Buffer
    if (first.length >= n) {
      if (first.length > n) shared(first)  // (several frames in one chunk: none may release it)
      out = first.subarray(0, n)
      if (first.length === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
    } else {
      out = Buffer.allocUnsafe(n)
      let filled = 0
      while (filled < n) {
        const head = this.chunks[0]
        const k = Math.min(head.length, n - filled)
        head.copy(out, filled, 0, k)
        filled += k
        if (k === head.length) this.chunks.shift()
        else this.chunks[0] = head.subarray(k)
      }
    }
    this.buffered -= n
    return out
  }

  private parse (frame: Buffer): Frame {
    const end = frame.length - FRAME_HASH
    const metaLen = frame.readUInt32LE(9)
    if (FRAME_PREFIX + metaLen > end) throw DdfsError.PROTOCOL('meta longer than the frame')
    const typeByte = frame.readUInt8(4)
    const selfChecked = (typeByte & SELF_CHECKED) !== 0
    if (xxh64(frame.subarray(0, selfChecked ? FRAME_PREFIX + metaLen : end)) !== frame.readBigUInt64LE(end)) throw DdfsError.PROTOCOL('frame fails its XXH64')
    const type: MessageType = typeByte & ~SELF_CHECKED  // possibly one this version does not know (see knownType)
    if (selfChecked && type !== MessageType.Data) throw DdfsError.PROTOCOL(`a frame of type ${type} marked self-checked (only DATA frames carrying a fragment may be)`)
    return {
      type,
      requestId: frame.readUInt32LE(5),
      meta: frame.subarray(FRAME_PREFIX, FRAME_PREFIX + metaLen),
      payload: frame.subarray(FRAME_PREFIX + metaLen, end),
      selfChecked
    }
  }
}
