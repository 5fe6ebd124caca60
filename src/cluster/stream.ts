// A SecureConnection as a byte Duplex, so code written for a stream (src/wire's FrameConnection,
// which runs over a Unix socket or secret-stream today) runs over the cluster transport as is.
// Writes issued together (cork, or one writev) become one transport frame, split at MAX_FRAME;
// each received frame is pushed as one chunk, so a wire frame sent in one corked write arrives
// whole and its parser needs no copy.
import { Duplex } from 'node:stream'
import { MAX_FRAME, type SecureConnection } from './transport'

/** Read-side buffering before the connection is paused (TCP backpressure then holds the peer). */
const READ_HIGH_WATER = 8 * 1024 * 1024

/** A secureStream: also takes a whole message as one transport frame (see writeFrame). */
export interface SecureStream extends Duplex {
  /**
   * Sends `parts` as one transport frame, at once, when nothing written before is still queued
   * and they fit one frame; returns null otherwise (write them the usual way). Else the result
   * is false when the sender should wait for 'drain'. The parts are encrypted before it returns,
   * so their memory may be reused then. A received message then never shares a transport frame
   * with another one, which lets its reader give the memory back (src/buffers.ts).
   */
  writeFrame: (parts: Buffer[], total: number) => boolean | null
}

export function secureStream (conn: SecureConnection): SecureStream {
  let waitingDrain: (() => void) | null = null
  let drainOwed = false  // writeFrame reported backpressure: 'drain' is emitted once the socket drains
  conn.on('drain', () => {
    const cb = waitingDrain
    waitingDrain = null
    cb?.()
    if (drainOwed) { drainOwed = false; stream.emit('drain') }
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

  const stream: SecureStream = Object.assign(new Duplex({
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
  }), {
    writeFrame: (parts: Buffer[], total: number): boolean | null => {
      if (conn.closed || total > MAX_FRAME || stream.writableLength > 0 || stream.writableCorked > 0 || waitingDrain !== null || stream.writableEnded) return null
      const ok = conn.send(parts)
      if (!ok) drainOwed = true
      return ok
    }
  })
  conn.on('frame', (f) => { if (!stream.push(f)) conn.pause() })
  conn.on('close', (err) => {
    if (err !== null) stream.destroy(err)
    else stream.push(null)
  })
  return stream
}
