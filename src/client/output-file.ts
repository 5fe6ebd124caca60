// Writes a downloaded object to a file. On this kind of machine, buffered writes of new pages
// run near 400 MB/s (dd bs=1M to a new file) while O_DIRECT writes run near 2.7 GB/s, so the
// output goes through two 8 MiB aligned buffers with O_DIRECT (one fills while the other is
// written; a third if a piece straddles a flush), with buffered writes as the fallback where
// O_DIRECT is refused (tmpfs).
import fs from 'node:fs'
import { allocAligned } from '../hash'

const BUFFER = 8 * 1024 * 1024
const ALIGN = 4096

export class OutputFile {
  private front: Buffer | null = null
  private readonly spare: Buffer[] = []
  private inflight = 0
  private fill = 0
  private written = 0
  private pending: Promise<unknown> = Promise.resolve()
  private closed = false

  private constructor (private readonly fd: number, private readonly direct: boolean) {
    if (direct) this.front = allocAligned(BUFFER)
  }

  static open (path: string): OutputFile {
    const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC
    try {
      return new OutputFile(fs.openSync(path, flags | fs.constants.O_DIRECT, 0o644), true)
    } catch {
      return new OutputFile(fs.openSync(path, flags, 0o644), false)
    }
  }

  /** Takes the next piece; returns a promise when the caller should wait before the next one. */
  write (piece: Buffer): Promise<void> | undefined {
    if (!this.direct) {
      const at = this.written
      this.written += piece.length
      this.pending = this.pending.then(() => writeAll(this.fd, piece, at))
      return undefined
    }
    let off = 0
    while (off < piece.length) {
      const front = this.front as Buffer
      const n = Math.min(BUFFER - this.fill, piece.length - off)
      piece.copy(front, this.fill, off, off + n)
      this.fill += n
      off += n
      if (this.fill === BUFFER) this.flush()
    }
    // Two buffers on their way to the disk: the caller waits until one is back.
    return this.inflight >= 2 ? this.pending.then(() => undefined) : undefined
  }

  /** Writes what is left, sets the exact size, syncs and closes. */
  async close (): Promise<void> {
    try {
      if (this.direct && this.fill > 0) {
        const size = this.written + this.fill
        const padded = Math.ceil(this.fill / ALIGN) * ALIGN
        const front = this.front as Buffer
        front.fill(0, this.fill, padded)
        const buf = front.subarray(0, padded)
        const at = this.written
        this.pending = this.pending.then(() => writeAll(this.fd, buf, at))
        await this.pending
        fs.ftruncateSync(this.fd, size)
      }
      await this.pending
      fs.fsyncSync(this.fd)
    } finally {
      this.abort()
    }
  }

  /** Closes the file descriptor without finishing the file (idempotent). */
  abort (): void {
    if (this.closed) return
    this.closed = true
    fs.closeSync(this.fd)
  }

  // Hands the full front buffer to the writer and takes a free one (or a new one) in front.
  private flush (): void {
    const full = this.front as Buffer
    const at = this.written
    this.written += BUFFER
    this.fill = 0
    this.inflight++
    this.pending = this.pending.then(() => writeAll(this.fd, full, at)).then(() => {
      this.inflight--
      this.spare.push(full)
    })
    this.front = this.spare.pop() ?? allocAligned(BUFFER)
  }
}

function writeAll (fd: number, buf: Buffer, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (off: number): void => {
      fs.write(fd, buf, off, buf.length - off, position + off, (err, n) => {
        if (err !== null) reject(err)
        else if (off + n < buf.length) step(off + n)
        else resolve()
      })
    }
    step(0)
  })
}
