// A SecureConnection as a byte Duplex, so code written for a stream (src/wire's FrameConnection,
// which runs over a Unix socket or secret-stream today) runs over the cluster transport as is.
// Writes issued together (cork, or one writev) become one transport frame, split at MAX_FRAME;
// each received frame is pushed as one chunk, so a wire frame sent in one corked write arrives
// whole and its parser needs no copy.
import { Duplex } from 'node:stream'
import { MAX_FRAME, type SecureConnection } from './transport'

/** Read-side buffering before the connection is paused (TCP backpressure then holds the peer). */
const READ_HIGH_WATER = 8 * 1024 * 1024

export function secureStream (conn: SecureConnection): Duplex {
  let waitingDrain: (() => void) | null = null
  conn.on('drain', () => {
    const cb = waitingDrain
    waitingDrain = null
    cb?.()
  })

  const sendAll = (buffers: Buffer[], cb: (err?: Error | null) => void): void => {
    if (conn.closed) { cb(new Error('CLOSED: the connection is closed')); return }
    let ok = true
    let frame: Buffer[] = []
    let size = 0
    const flush = (): void => {
      if (frame.length > 0) ok = conn.send(frame) && ok
      frame = []
      size = 0
    }
    for (let b of buffers) {
      while (b.length > 0) {
        const n = Math.min(b.length, MAX_FRAME - size)
        frame.push(n === b.length ? b : b.subarray(0, n))
        size += n
        b = b.subarray(n)
        if (size === MAX_FRAME) flush()
      }
    }
    flush()
    if (ok) cb()
    else waitingDrain = () => cb()
  }

  const stream = new Duplex({
    readableHighWaterMark: READ_HIGH_WATER,
    writableHighWaterMark: MAX_FRAME,
    write (chunk: Buffer, _enc, cb) { sendAll([chunk], cb) },
    writev (chunks, cb) { sendAll(chunks.map((c) => c.chunk as Buffer), cb) },
    read () { conn.resume() },
    final (cb) { conn.close(); cb() },
    destroy (err, cb) {
      if (!conn.closed) conn.close(err ?? undefined)
      cb(err)
    }
  })
  conn.on('frame', (f) => { if (!stream.push(f)) conn.pause() })
  conn.on('close', (err) => {
    if (err !== null) stream.destroy(err)
    else stream.push(null)
  })
  return stream
}
