import test, { type Test } from 'brittle'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { formatDevice, openDevice, type NativeBlockStore } from '../src/store/native-store'
import { LocalObjectStore, FRAGMENT_DATA, defaultSchema } from '../src/object/local-object-store'
import { EntryKind } from '../src/store/types'
import type { Schema } from '../src/object/types'
import { MemoryStore } from '../src/store/memory-store'
import { tmpDir, deviceFile } from './helpers/env'
import { DeviceSite } from '../src/object/device-site'
import { decodeManifest, keyOf, TRAILER_BYTES } from '../src/object/records'
import { rebuildFragments } from '../src/object/repair'

const MiB = 1024 * 1024

class Pool {
  list: NativeBlockStore[] = []
  stores (): NativeBlockStore[] { return this.list }
}

async function devices (t: Test, count: number, size = 64 * MiB): Promise<{ pool: Pool, files: string[], dir: string }> {
  const dir = tmpDir(t)
  const pool = new Pool()
  const files: string[] = []
  for (let i = 0; i < count; i++) {
    const file = deviceFile(dir, `dev${i}.img`, size)
    await formatDevice(file)
    pool.list.push(await openDevice(file))
    files.push(file)
  }
  t.teardown(async () => { for (const s of pool.list) await s.close() })
  return { pool, files, dir }
}

async function * chunks (data: Buffer, size = 300_000): AsyncIterable<Buffer> {
  for (let off = 0; off < data.length; off += size) yield data.subarray(off, off + size)
}

async function readAll (objects: LocalObjectStore, id: Buffer, offset?: number, length?: number): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const p of objects.get(id, { offset, length })) parts.push(Buffer.from(p))
  return Buffer.concat(parts)
}

async function put (objects: LocalObjectStore, data: Buffer, schema?: Schema): Promise<Buffer> {
  const info = await objects.put(chunks(data), { size: data.length, schema })
  return Buffer.from(info.id, 'hex')
}

test('the default schema follows the failure domains: 4+2 from 6 devices, the widest below', (t) => {
  t.alike([1, 2, 3, 4, 5, 6, 9].map((d) => { const s = defaultSchema(d); return `${s.k}+${s.m}` }), ['1+0', '1+1', '2+1', '2+2', '3+2', '4+2', '4+2'])
})

test('over in-memory stores: random schemas and sizes round-trip, ranged reads match', async (t) => {
  const stores = Array.from({ length: 10 }, (_, i) => new MemoryStore(`mem${i}`))
  const objects = new LocalObjectStore({ stores: () => stores })
  for (let round = 0; round < 20; round++) {
    const k = 1 + (round % 7)
    const m = round % 4
    const data = crypto.randomBytes((round * 123_457) % (2 * k * FRAGMENT_DATA + 7))
    const id = await put(objects, data, { k, m })
    t.ok((await readAll(objects, id)).equals(data), `${k}+${m}, ${data.length} bytes`)
    const off = Math.floor(data.length / 4)
    t.ok((await readAll(objects, id, off, Math.floor(data.length / 2))).equals(data.subarray(off, off + Math.floor(data.length / 2))))
  }
})

test('sizes around the stripe boundary round-trip with 4+2 on 6 devices, and ranged reads match', async (t) => {
  const { pool } = await devices(t, 6)
  const objects = new LocalObjectStore(pool)
  const stripe = 4 * FRAGMENT_DATA
  for (const size of [0, 1, 4095, stripe - 1, stripe, stripe + 1, 3 * stripe + 12345]) {
    const data = crypto.randomBytes(size)
    const id = await put(objects, data)
    const info = await objects.query(id)
    t.alike(info.schema, { k: 4, m: 2 }, `size ${size}: default 4+2`)
    t.is(info.fragments.length, Math.ceil(size / stripe) * 6, `size ${size}: 6 fragments per stripe`)
    t.ok((await readAll(objects, id)).equals(data), `size ${size} reads back`)
    if (size > 10) {
      const off = Math.floor(size / 3)
      const len = Math.floor(size / 2)
      t.ok((await readAll(objects, id, off, len)).equals(data.subarray(off, off + len)), `size ${size}: range ${off}+${len}`)
    }
  }
})

test('each stripe puts its fragments on different devices', async (t) => {
  const { pool } = await devices(t, 6)
  const objects = new LocalObjectStore(pool)
  const id = await put(objects, crypto.randomBytes(3 * 4 * FRAGMENT_DATA))
  const info = await objects.query(id)
  for (let s = 0; s < 3; s++) {
    const devs = info.fragments.filter((f) => f.stripe === s).map((f) => f.device)
    t.is(new Set(devs).size, 6, `stripe ${s} on 6 devices`)
  }
})

test('random schemas with random lost fragments still read back byte for byte', async (t) => {
  const { pool } = await devices(t, 8, 96 * MiB)
  const objects = new LocalObjectStore(pool)
  const rnd = crypto.createHash('sha256').update('seed 7').digest()
  for (let round = 0; round < 12; round++) {
    const k = 1 + (rnd[round] % 5)
    const m = rnd[round + 12] % Math.min(4, 9 - k)
    const data = crypto.randomBytes(1 + (rnd.readUInt16LE(round) * 97) % (3 * MiB))
    const id = await put(objects, data, { k, m })
    // Remove m random fragments of every stripe.
    const stripes = Math.ceil(data.length / (k * FRAGMENT_DATA))
    for (let s = 0; s < stripes; s++) {
      const victims = [...Array(k + m).keys()].sort(() => Math.random() - 0.5).slice(0, m)
      for (const i of victims) for (const st of pool.list) await st.remove({ id, kind: EntryKind.Fragment, stripe: s, index: i })
    }
    t.ok((await readAll(objects, id)).equals(data), `${k}+${m}, ${data.length} bytes, ${m} lost per stripe`)
  }
})

test('one node, 6 devices, 4+2: wipe any 2 devices and every object still reads with the right md5', async (t) => {
  const { pool, files, dir } = await devices(t, 6)
  const objects = new LocalObjectStore(pool)
  const written = new Map<string, string>()
  for (const size of [1, 5000, 4 * FRAGMENT_DATA + 1, 9 * MiB]) {
    const data = crypto.randomBytes(size)
    written.set((await put(objects, data)).toString('hex'), crypto.createHash('md5').update(data).digest('hex'))
  }
  // Keep intact copies, so each pair is wiped from the same healthy state.
  for (const s of pool.list) await s.close()
  for (const f of files) fs.copyFileSync(f, path.join(dir, `${path.basename(f)}.intact`))
  for (const [a, b] of [[0, 1], [2, 5], [3, 4], [1, 4]]) {
    for (let i = 0; i < files.length; i++) fs.copyFileSync(path.join(dir, `${path.basename(files[i])}.intact`), files[i])
    // Wipe the two device files (zeros over everything) and attach them as blank stores.
    for (const i of [a, b]) {
      fs.writeFileSync(files[i], Buffer.alloc(0))
      fs.truncateSync(files[i], 64 * MiB)
      await formatDevice(files[i])
    }
    for (let i = 0; i < files.length; i++) pool.list[i] = await openDevice(files[i])
    for (const [hex, sum] of written) {
      const got = await readAll(objects, Buffer.from(hex, 'hex'))
      t.is(crypto.createHash('md5').update(got).digest('hex'), sum, `devices ${a} and ${b} wiped: ${hex} reads back`)
    }
    for (const s of pool.list) await s.close()
  }
  // Three devices lost is more than m = 2: a clear UNAVAILABLE that says how many were there.
  for (let i = 0; i < files.length; i++) fs.copyFileSync(path.join(dir, `${path.basename(files[i])}.intact`), files[i])
  for (const i of [0, 2, 4]) { fs.truncateSync(files[i], 0); fs.truncateSync(files[i], 64 * MiB); await formatDevice(files[i]) }
  for (let i = 0; i < files.length; i++) pool.list[i] = await openDevice(files[i])
  const big = [...written.keys()][3]
  await t.exception(readAll(objects, Buffer.from(big, 'hex')), /UNAVAILABLE: stripe \d+ of object .*: 3 of 6 fragments reachable and intact, 4 needed/)
})

test('a corrupted fragment is detected and the object still reads from the others', async (t) => {
  const { pool, files } = await devices(t, 6)
  const objects = new LocalObjectStore(pool)
  const data = crypto.randomBytes(2 * MiB)
  const id = await put(objects, data)
  const info = await objects.query(id)
  const victim = info.fragments[0]
  const file = files[pool.list.findIndex((s) => s.path === victim.device)]
  const fd = fs.openSync(file, 'r+')
  fs.writeSync(fd, Buffer.from('flipped'), 0, 7, victim.block * 4096 + 100)
  fs.closeSync(fd)
  t.ok((await readAll(objects, id)).equals(data), 'reads back from k good fragments')
  // Corrupt three fragments of one stripe (more than m = 2): an error, never wrong bytes.
  for (const f of info.fragments.filter((x) => x.stripe === 0).slice(1, 3)) {
    const fd2 = fs.openSync(files[pool.list.findIndex((s) => s.path === f.device)], 'r+')
    fs.writeSync(fd2, Buffer.from('flipped'), 0, 7, f.block * 4096 + 100)
    fs.closeSync(fd2)
  }
  await t.exception(readAll(objects, id), /CORRUPT: stripe 0 .* 3 of 6 fragments reachable and intact, 4 needed/)
})

test('a fragment of another object or another stripe is rejected', async (t) => {
  const { pool } = await devices(t, 6)
  const objects = new LocalObjectStore(pool)
  const a = crypto.randomBytes(2 * 4 * FRAGMENT_DATA)
  const b = crypto.randomBytes(2 * 4 * FRAGMENT_DATA)
  const idA = await put(objects, a)
  const idB = await put(objects, b)
  const find = (id: Buffer, stripe: number, index: number): NativeBlockStore => pool.list.find((s) => s.stat({ id, kind: EntryKind.Fragment, stripe, index }) !== null) as NativeBlockStore
  // B's fragment 0/0 replaced by A's 0/0 (another object), B's 1/1 by B's 0/1 (another stripe).
  const fromA = await find(idA, 0, 0).read({ id: idA, kind: EntryKind.Fragment, stripe: 0, index: 0 })
  await find(idB, 0, 0).put({ id: idB, kind: EntryKind.Fragment, stripe: 0, index: 0 }, Buffer.from(fromA))
  const other = await find(idB, 0, 1).read({ id: idB, kind: EntryKind.Fragment, stripe: 0, index: 1 })
  await find(idB, 1, 1).put({ id: idB, kind: EntryKind.Fragment, stripe: 1, index: 1 }, Buffer.from(other))
  t.ok((await readAll(objects, idB)).equals(b), 'the foreign fragments are skipped and rebuilt from parity')
  t.ok((await readAll(objects, idA)).equals(a))
})

test('an explicit schema wider than the devices fails clearly unless degraded placement is allowed', async (t) => {
  const { pool } = await devices(t, 3)
  const objects = new LocalObjectStore(pool)
  const data = crypto.randomBytes(100_000)
  await t.exception(objects.put(chunks(data), { size: data.length, schema: { k: 4, m: 2 } }), /needs 6 failure domains, this node has 3 devices/)
  const info = await objects.put(chunks(data), { size: data.length, schema: { k: 4, m: 2 }, allowDegraded: true })
  t.ok((await readAll(objects, Buffer.from(info.id, 'hex'))).equals(data))
  const id = await put(objects, data)
  t.alike((await objects.query(id)).schema, { k: 2, m: 1 }, 'three devices default to 2+1')
})

test('delete leaves a tombstone: the id never comes back, and the blocks are free again', async (t) => {
  const { pool } = await devices(t, 6)
  const objects = new LocalObjectStore(pool)
  const before = pool.list.map((s) => s.info().usedBlocks)
  const id = await put(objects, crypto.randomBytes(3 * MiB))
  await objects.delete(id)
  t.alike(pool.list.map((s) => s.info().usedBlocks), before)
  await t.exception(objects.query(id), /NOT_FOUND/)
  await t.exception(objects.delete(id), /NOT_FOUND/)
  t.alike(await objects.list(null, 10), [])
})

test('repair rebuilds a lost fragment even when an input\'s data does not match its trailer: it decodes again from inputs checked one by one', async (t) => {
  const stores = Array.from({ length: 6 }, (_, i) => new MemoryStore(`mem${i}`))
  const objects = new LocalObjectStore({ stores: () => stores })
  const id = await put(objects, crypto.randomBytes(4 * FRAGMENT_DATA * 2 + 1000), { k: 4, m: 2 })
  const here = new DeviceSite({ stores: () => stores }, 'here')
  const manifest = decodeManifest((await here.getEntry(keyOf(id, EntryKind.Manifest))).entry)
  const lost = Buffer.from((await here.getEntry(keyOf(id, EntryKind.Fragment, 0, 5))).entry)
  // Fragment 0 of stripe 0 rewritten with one data bit flipped and its trailer kept: every
  // store-level check passes, only the manifest's hash for the slot tells.
  const bad = Buffer.from((await here.getEntry(keyOf(id, EntryKind.Fragment, 0, 0))).entry)
  bad[10] ^= 1
  await here.putEntry(keyOf(id, EntryKind.Fragment, 0, 0), bad)
  const targetStores = [new MemoryStore('target')]
  const target = new DeviceSite({ stores: () => targetStores }, 'target')
  const sources = [here, here, here, here, here, null]
  const written = await rebuildFragments(id, manifest, [{ index: 5, from: null, to: target }], sources, async () => {}, undefined, 0, 1)
  t.is(written, lost.length - TRAILER_BYTES, 'one fragment written')
  t.ok((await target.getEntry(keyOf(id, EntryKind.Fragment, 0, 5))).entry.equals(lost), 'the rebuilt fragment is the lost one, byte for byte')
})

test('a node answers manifest reads from the copies it wrote until a device copy is found damaged; a tombstone wins over both', async (t) => {
  const { pool, files } = await devices(t, 1)
  const site = new DeviceSite(pool, 'n')
  const id = crypto.randomBytes(16)
  const key = keyOf(id, EntryKind.Manifest)
  const older = crypto.randomBytes(3000)
  const newer = crypto.randomBytes(2000)
  await site.putEntry(key, older)
  await site.putEntry(key, newer)
  t.alike(await site.getManifest(id), newer, 'the newest copy')
  const at = pool.list[0].stat(key)?.block as number
  const fd = fs.openSync(files[0], 'r+')
  fs.writeSync(fd, Buffer.from('flipped'), 0, 7, at * 4096 + 100)
  fs.closeSync(fd)
  t.alike(await site.getManifest(id), newer, 'answered from memory: the bytes it wrote')
  site.damaged(key)  // what scrub says when it reads the device copy
  await t.exception(site.getManifest(id), /CORRUPT/, 'then from the device: an error, never its bytes')
  await site.putEntry(key, newer)
  t.alike(await site.getManifest(id), newer, 'a rewritten copy is answered again')
  await site.removeId(id, true)
  t.is(await site.getManifest(id), 'deleted', 'and a delete ends it')
})

test('a manifest read that a put of a newer version overtakes does not bring the older copy back into memory', async (t) => {
  const { pool } = await devices(t, 1)
  const real = pool.list[0]
  // The device's reads wait for the test to let them finish.
  let finish: (() => void) | null = null
  const slow = new Proxy(real, {
    get (target, prop) {
      if (prop === 'read') {
        return async (...args: Parameters<NativeBlockStore['read']>) => {
          const got = await target.read(...args)
          await new Promise<void>((resolve) => { finish = resolve })
          return got
        }
      }
      const v = Reflect.get(target, prop) as unknown
      return typeof v === 'function' ? v.bind(target) : v
    }
  })
  const id = crypto.randomBytes(16)
  const key = keyOf(id, EntryKind.Manifest)
  const older = crypto.randomBytes(3000)
  const newer = crypto.randomBytes(2000)
  await new DeviceSite(pool, 'n').putEntry(key, older)
  const site = new DeviceSite({ stores: () => [slow] } as unknown as Pool, 'n')  // nothing in its memory yet
  const reading = site.getManifest(id)
  while (finish === null) await new Promise((resolve) => setTimeout(resolve, 5))
  await site.putEntry(key, newer)
  ;(finish as () => void)()
  t.alike(await reading, older, 'the read returns what it read')
  t.alike(await site.getManifest(id), newer, 'and the node answers with the newer copy after it')
})
