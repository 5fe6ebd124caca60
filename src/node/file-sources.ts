// Objects' bytes from files on this machine, as the object store consumes them: a whole file,
// a file the mount is still writing, one buffer. Each reuses one buffer for every chunk (the
// object store uses a chunk before it asks for the next).
import type fs from 'node:fs'
import { DdfsError } from '../errors'

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
 * A file that is still being written (by the mount, on this machine): read up to what its writer
 * announced, wait for more (after `idle`, which may let the writer go on), end at the final size.
 */
export async function * followFile (fh: fs.promises.FileHandle, growth: Growth, idle: () => void = () => {}): AsyncIterable<Buffer> {
  const buf = Buffer.allocUnsafeSlow(CHUNK)
  for (let pos = 0; ;) {
    if (growth.failed !== null) throw growth.failed
    if (pos < growth.grown) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, growth.grown - pos), pos)
      if (bytesRead === 0) throw DdfsError.IO(`the file ended after ${pos} of the ${growth.grown} bytes announced`)
      pos += bytesRead
      yield buf.subarray(0, bytesRead)
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
