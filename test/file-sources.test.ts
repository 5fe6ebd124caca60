// Reading a file while it is written (the mount's spool, followed by its node): with O_DIRECT,
// announced sizes that are not block multiples, and parts written through the page cache.
import test from 'brittle'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { followFile, openFollowed, readFile, type Growth } from '../src/node/file-sources'
import { allocAligned } from '../src/hash'
import { tmpDir } from './helpers/env'

const MiB = 1024 * 1024

test('a followed spool reads back exactly what was written: O_DIRECT, unaligned announcements, buffered and direct parts', async (t) => {
  const file = path.join(tmpDir(t), 'spool')
  const data = crypto.randomBytes(9 * MiB + 1234)
  const buffered = fs.openSync(file, 'w+')
  const direct = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_DIRECT)
  t.teardown(() => { fs.closeSync(buffered); fs.closeSync(direct) })
  const followed = await openFollowed(file)
  t.ok(followed.direct, 'opened O_DIRECT (the spool directory is not tmpfs)')
  const growth: Growth = { grown: 0, ended: false, failed: null, wake: null }
  const grow = (to: number, ended = false): void => { growth.grown = to; growth.ended = ended; growth.wake?.() }
  const chunks: Buffer[] = []
  const reading = (async () => { for await (const c of followFile(followed.fh, growth, undefined, followed.direct)) chunks.push(Buffer.from(c)) })()

  // The first 3 MiB + 100 through the page cache, announced unaligned; then aligned MiBs with
  // O_DIRECT (from an aligned buffer), each announced; the tail through the page cache again.
  fs.writeSync(buffered, data, 0, 3 * MiB + 100, 0)
  grow(3 * MiB + 100)
  await new Promise((resolve) => setTimeout(resolve, 20))
  fs.writeSync(buffered, data, 3 * MiB + 100, MiB - 100, 3 * MiB + 100)
  grow(4 * MiB)
  const aligned = allocAligned(MiB)
  for (let at = 4 * MiB; at < 9 * MiB; at += MiB) {
    data.copy(aligned, 0, at, at + MiB)
    fs.writeSync(direct, aligned, 0, MiB, at)
    grow(at + MiB)
    await new Promise((resolve) => setImmediate(resolve))
  }
  fs.writeSync(buffered, data, 9 * MiB, 1234, 9 * MiB)
  grow(data.length, true)
  await reading
  await followed.fh.close()
  t.alike(Buffer.concat(chunks), data, 'the same bytes, in order')
})

test('a chunk stays intact while the next one is read ahead, until the consumer asks for it', async (t) => {
  const file = path.join(tmpDir(t), 'whole')
  const data = crypto.randomBytes(21 * MiB + 7)
  fs.writeFileSync(file, data)
  const fh = await fs.promises.open(file, 'r')
  t.teardown(async () => await fh.close())
  let at = 0
  let intact = true
  for await (const chunk of readFile(fh, data.length)) {
    await new Promise((resolve) => setTimeout(resolve, 30))  // the read ahead lands meanwhile
    intact &&= chunk.equals(data.subarray(at, at + chunk.length))
    at += chunk.length
  }
  t.is(at, data.length, 'every byte')
  t.ok(intact, 'no chunk changed while it was held')
})

test('what the writer still holds is taken instead of read: a chunk from memory, one half from memory and half from the file', async (t) => {
  const file = path.join(tmpDir(t), 'spool')
  const data = crypto.randomBytes(8 * MiB)
  // On disk, [5 MiB, 6.5 MiB) is zeros: only the writer's memory has those bytes.
  const held = { from: 5 * MiB, to: 6.5 * MiB }
  const disk = Buffer.from(data)
  disk.fill(0, held.from, held.to)
  fs.writeFileSync(file, disk)
  const followed = await openFollowed(file)
  const asked: number[] = []
  const kept = (pos: number, dest: Buffer): number => {
    asked.push(pos)
    if (pos < held.from || pos >= held.to) return 0
    return data.copy(dest, 0, pos, Math.min(held.to, pos + dest.length))
  }
  const growth: Growth = { grown: 0, ended: false, failed: null, wake: null }
  const chunks: Buffer[] = []
  const reading = (async () => { for await (const c of followFile(followed.fh, growth, undefined, followed.direct, kept)) chunks.push(Buffer.from(c)) })()
  for (let at = MiB; at <= data.length; at += MiB) {
    growth.grown = at
    growth.ended = at === data.length
    growth.wake?.()
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  await reading
  await followed.fh.close()
  t.alike(Buffer.concat(chunks), data, 'the writer\'s bytes where it held them, the file\'s elsewhere')
  t.is(growth.fromMemory, held.to - held.from, '1.5 MiB came from memory')
  t.ok(asked.includes(5 * MiB) && asked.includes(6 * MiB), `asked at each chunk's start (${asked.map((a) => a / MiB).join(', ')} MiB)`)
})
