// Many requests in flight on one frame connection, each answered by request id in any order:
// how nodes talk to each other (a put keeps a few stripes of fragments in flight to every
// holder at once). The first reply frame settles a request; an ERROR frame becomes a DdfsError
// with the remote code.
import type c from 'compact-encoding'
import { DdfsError, type ErrorCode } from '../errors'
import type { FrameConnection, Frame } from './connection'
import { MessageType, errorMessage, decodeMeta } from './messages'

interface Pending {
  resolve: (f: Frame) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout | null
  /** The caller checks the reply's payload itself (a fragment): a SELF_CHECKED reply is fine. */
  selfChecked: boolean
}

export class RpcConnection {
  private nextRequest = 1
  private readonly pending = new Map<number, Pending>()
  private closedError: DdfsError | null = null

  constructor (private readonly conn: FrameConnection, readonly label: string) {
    conn.on('frame', (f: Frame) => {
      const p = this.pending.get(f.requestId)
      if (p === undefined) return  // the answer to a request that timed out
      this.settle(f.requestId, p)
      if (f.type === MessageType.Error) {
        try {
          const e = decodeMeta(errorMessage, f.meta)
          p.reject(new DdfsError(e.code as ErrorCode, `${label}: ${e.message}`))
        } catch (err) {
          p.reject(DdfsError.from(err))
        }
      } else if (f.selfChecked && !p.selfChecked) {
        p.reject(DdfsError.PROTOCOL(`${label} answered with a payload its frame does not check, to a request that does not check it either`))
      } else {
        p.resolve(f)
      }
    })
    conn.on('close', (err: Error | null) => {
      this.closedError = DdfsError.UNAVAILABLE(`connection to ${label} closed${err !== null ? `: ${err.message}` : ''}`)
      for (const [rid, p] of this.pending) {
        this.settle(rid, p)
        p.reject(this.closedError)
      }
    })
  }

  get closed (): boolean { return this.closedError !== null }

  /**
   * Sends one request; resolves with its first reply frame (never an ERROR frame). With
   * `selfChecked`, the caller checks the reply's payload itself, so its frame may leave it out
   * of its XXH64 (a fragment: SELF_CHECKED).
   */
  request<T> (type: MessageType, enc: c.Encoder<T> | null, meta: T | null, payload: Buffer | null = null, timeoutMs = 0, selfChecked = false): Promise<Frame> {
    if (this.closedError !== null) return Promise.reject(this.closedError)
    const rid = this.nextRequest
    this.nextRequest = (this.nextRequest % 0xfffffffe) + 1
    return new Promise<Frame>((resolve, reject) => {
      const p: Pending = { resolve, reject, timer: null, selfChecked }
      if (timeoutMs > 0) {
        p.timer = setTimeout(() => {
          this.settle(rid, p)
          reject(DdfsError.UNAVAILABLE(`${this.label} did not answer within ${timeoutMs} ms`))
        }, timeoutMs)
      }
      this.pending.set(rid, p)
      this.conn.send(type, rid, enc, meta, payload)
    })
  }

  close (): void {
    this.conn.close()
  }

  private settle (rid: number, p: Pending): void {
    this.pending.delete(rid)
    if (p.timer !== null) clearTimeout(p.timer)
  }
}
