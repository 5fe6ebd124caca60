// Objects' bytes from files on this machine, as the object store consumes them: a whole file,
// a file the mount is still writing, one buffer. The files' chunks come in two buffers, used
// in turn (the object store is done with a chunk when it asks for the next).
import fs from 'node:fs'
import { DdfsError } from '../errors'
import { BLOCK_SIZE } from '../constants'
import { allocAligned } from '../hash'

const CHUNK = 4 * 1024 * 1024

/**
 * Copies into `dest` what the file's writer still holds in memory from `pos` on (in whole
 * blocks, up to the first byte it does not hold); returns the bytes copied. The rest is read
 * from the file.
 */
export type KeptBytes = (pos: number, dest: Buffer) => number

/**
 * Reads the next chunk into one of two buffers while the consumer still works on the chunk in
 * the other: a spool's 4 MiB O_DIRECT read took ~4 ms while the disk was busy with fragment
 * writes, and a put waited for every one of them before it could encode the next stripe.
 */
class ReadAhead {
  private readonly bufs: [Buffer, Buffer]
  private turn = 0
  private pending: Promise<Buffer> | null = null
  private pos = 0  // where the next read starts

  /** Bytes that came from `kept` instead of the file. */
  fromMemory = 0

  /** `until`: how far the file may be read now; `total`: its size as announced (for errors). */
  constructor (private readonly fh: fs.promises.FileHandle, private readonly direct: boolean,
    private readonly until: () => number, private readonly total: () => number, private readonly kept?: KeptBytes) {
    this.bufs = direct ? [allocAligned(CHUNK), allocAligned(CHUNK)] : [Buffer.allocUnsafeSlow(CHUNK), Buffer.allocUnsafeSlow(CHUNK)]
  }

  get reading (): boolean { return this.pending !== null }

  /** Starts reading the next chunk, unless a read is in flight or nothing more may be read. */
  start (): void {
    const until = this.until()
    if (this.pending !== null || this.pos >= until) return
    const buf = this.bufs[this.turn]
    this.turn ^= 1
    const want = Math.min(CHUNK, until - this.pos)
    const at = this.pos
    this.pos += want
    let copied = this.kept?.(at, buf.subarray(0, want)) ?? 0
    if (copied % BLOCK_SIZE !== 0 && copied < want) copied = 0  // the rest would start off a block
    this.fromMemory += copied
    if (copied === want) {
      this.pending = Promise.resolve(buf.subarray(0, want))
      return
    }
    const rest = want - copied
    this.pending = this.fh.read(buf, copied, this.direct ? Math.ceil(rest / BLOCK_SIZE) * BLOCK_SIZE : rest, at + copied).then(({ bytesRead }) => {
      if (bytesRead < rest) throw DdfsError.IO(`the file ended after ${at + copied + bytesRead} of the ${this.total()} bytes announced`)
      return buf.subarray(0, want)
    })
    this.pending.catch(() => {})  // a read ahead the consumer never takes stays handled
  }

  /** The chunk read last; the read must have been started. */
  async take (): Promise<Buffer> {
    const p = this.pending as Promise<Buffer>
    this.pending = null
    return await p
  }
}

/** The first `size` bytes of a file. */
export async function * readFile (fh: fs.promises.FileHandle, size: number): AsyncIterable<Buffer> {
  const ahead = new ReadAhead(fh, false, () => size, () => size)
  ahead.start()
  while (ahead.reading) {
    const chunk = await ahead.take()
    ahead.start()  // the other buffer: the consumer is done with it
    yield chunk
  }
}

/** How far a file being written has got, as its writer says. */
export interface Growth {
  grown: number            // bytes written so far
  ended: boolean           // `grown` is the final size
  failed: Error | null     // the writer gave up
  wake: (() => void) | null
  fromMemory?: number      // set by followFile: bytes its writer's memory gave (KeptBytes)
}

/**
 * Opens a file being written (a mount's spool) for followFile: with O_DIRECT where the file
 * system allows it. The mount writes a large file's spool with O_DIRECT, so none of it is in
 * the page cache, and a buffered read would have the kernel allocate pages for all of it (the
 * cost the mount avoided); a direct read of a range still in the page cache has the kernel
 * write that range out first, so it reads the same bytes.
 */
export async function openFollowed (path: string): Promise<{ fh: fs.promises.FileHandle, direct: boolean }> {
  try {
    return { fh: await fs.promises.open(path, fs.constants.O_RDONLY | fs.constants.O_DIRECT), direct: true }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err
    return { fh: await fs.promises.open(path, 'r'), direct: false }  // tmpfs
  }
}

/**
 * A file that is still being written (by the mount, on this machine): read up to what its writer
 * announced, wait for more (after `idle`, which may let the writer go on), end at the final size.
 * `direct`: fh is O_DIRECT, so reads are of whole aligned blocks (to the last whole block
 * announced until the end is known). `kept`: what the writer still holds, taken before reading.
 */
export async function * followFile (fh: fs.promises.FileHandle, growth: Growth, idle: () => void = () => {}, direct = false, kept?: KeptBytes): AsyncIterable<Buffer> {
  const until = (): number => direct && !growth.ended ? growth.grown - growth.grown % BLOCK_SIZE : growth.grown
  const ahead = new ReadAhead(fh, direct, until, () => growth.grown, kept)
  for (;;) {
    if (growth.failed !== null) throw growth.failed
    ahead.start()
    growth.fromMemory = ahead.fromMemory
    if (ahead.reading) {
      const chunk = await ahead.take()
      ahead.start()  // the other buffer: the consumer is done with it
      yield chunk
      continue
    }
    if (growth.ended) return
    idle()
    await new Promise<void>((resolve) => { growth.wake = resolve })
    growth.wake = null
  }
}

export async function * single (data: Buffer): AsyncIterable<Buffer> {
  yield data
}
