// Objects' bytes from files on this machine, as the object store consumes them: a whole file,
// a file the mount is still writing, one buffer. Each reuses one buffer for every chunk (the
// object store uses a chunk before it asks for the next).
import fs from 'node:fs'
import { DdfsError } from '../errors'
import { BLOCK_SIZE } from '../constants'
import { allocAligned } from '../hash'

const CHUNK = 4 * 1024 * 1024

/** The first `size` bytes of a file. */
export async function * readFile (fh: fs.promises.FileHandle, size: number): AsyncIterable<Buffer> {
  const buf = Buffer.allocUnsafeSlow(CHUNK)
  for (let pos = 0; pos < size;) {
    const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, size - pos), pos)
    if (bytesRead === 0) throw DdfsError.IO(`the file ended after ${pos} of ${size} bytes`)
    pos += bytesRead
    yield buf.subarray(0, bytesRead)
  }
}

/** How far a file being written has got, as its writer says. */
export interface Growth {
  grown: number            // bytes written so far
  ended: boolean           // `grown` is the final size
  failed: Error | null     // the writer gave up
  wake: (() => void) | null
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
 * announced until the end is known).
 */
export async function * followFile (fh: fs.promises.FileHandle, growth: Growth, idle: () => void = () => {}, direct = false): AsyncIterable<Buffer> {
  const buf = direct ? allocAligned(CHUNK) : Buffer.allocUnsafeSlow(CHUNK)
  for (let pos = 0; ;) {
    if (growth.failed !== null) throw growth.failed
    const until = direct && !growth.ended ? growth.grown - growth.grown % BLOCK_SIZE : growth.grown
    if (pos < until) {
      const want = Math.min(CHUNK, until - pos)
      const { bytesRead } = await fh.read(buf, 0, direct ? Math.ceil(want / BLOCK_SIZE) * BLOCK_SIZE : want, pos)
      const n = Math.min(bytesRead, want)
      if (n === 0) throw DdfsError.IO(`the file ended after ${pos} of the ${growth.grown} bytes announced`)
      pos += n
      yield buf.subarray(0, n)
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
