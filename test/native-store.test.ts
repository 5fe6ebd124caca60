import test, { type Test } from 'brittle'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { spawn, execFileSync, spawnSync } from 'node:child_process'
import { formatDevice, openDevice, probeDevice } from '../src/store/native-store'
import { EntryKind, type EntryKey } from '../src/store/types'
import { keyOf, TOMBSTONE_KIND } from '../src/object/records'
import { tmpDir, deviceFile, loopDevice, isRoot } from './helpers/env'

const MiB = 1024 * 1024

function key (id: Buffer, stripe = 0, index = 0, kind = EntryKind.Fragment): EntryKey {
  return { id, kind, stripe, index }
}

async function freshStore (t: Test, size = 64 * MiB): Promise<{ file: string, dir: string }> {
  const dir = tmpDir(t)
  const file = deviceFile(dir, 'dev.img', size)
  await formatDevice(file)
  return { file, dir }
}

test('entries of every size read back byte for byte, also after a reopen', async (t) => {
  const { file } = await freshStore(t)
  const sizes = [0, 1, 4095, 4096, 4097, MiB - 1, MiB, MiB + 1, 5 * MiB + 123]
  const written = new Map<number, { id: Buffer, data: Buffer }>()
  let store = await openDevice(file)
  for (const size of sizes) {
    const id = crypto.randomBytes(16)
    const data = crypto.randomBytes(size)
    const info = await store.put(key(id), data)
    t.is(info.length, size)
    written.set(size, { id, data })
  }
  for (const [size, { id, data }] of written) t.ok((await store.read(key(id))).equals(data), `size ${size} reads back`)
  await store.close()
  store = await openDevice(file)
  for (const [size, { id, data }] of written) t.ok((await store.read(key(id))).equals(data), `size ${size} reads back after reopen`)
  await store.close()
})

test('ranged reads return exactly the bytes asked for', async (t) => {
  const { file } = await freshStore(t)
  const store = await openDevice(file)
  t.teardown(() => store.close())
  const id = crypto.randomBytes(16)
  const data = crypto.randomBytes(3 * MiB + 777)
  await store.put(key(id), data)
  for (const [off, len] of [[0, 1], [1, 4095], [MiB - 3, 10], [2 * MiB + 5, MiB + 772], [0, data.length], [data.length, 0]]) {
    t.ok((await store.read(key(id), off, len)).equals(data.subarray(off, off + len)), `range ${off}+${len}`)
  }
  await t.exception(store.read(key(id), data.length - 1, 2), /BAD_ARGUMENT/)
})

test('stat, list, ids, remove and removeId keep the index in key order', async (t) => {
  const { file } = await freshStore(t)
  const store = await openDevice(file)
  t.teardown(() => store.close())
  const a = Buffer.alloc(16, 1)
  const b = Buffer.alloc(16, 2)
  await store.put(key(b, 1), Buffer.from('b1'))
  await store.put(key(a, 2, 1), Buffer.from('a21'))
  await store.put(key(a, 0, 0), Buffer.from('a00'))
  await store.put(key(a, 2, 0), Buffer.from('a20'))
  t.alike(store.list(a).map((e) => [e.key.stripe, e.key.index]), [[0, 0], [2, 0], [2, 1]])
  t.alike(store.ids(null, 10).map((i) => i[0]), [1, 2])
  t.alike(store.ids(a, 10).map((i) => i[0]), [2])
  t.is(store.stat(key(a, 9)), null)
  t.is(await store.remove(key(a, 2, 0)), true)
  t.is(await store.remove(key(a, 2, 0)), false)
  t.is(await store.removeId(a), 2)
  t.alike(store.list(a), [])
  t.is(store.list(b).length, 1)
  await t.exception(store.read(key(a, 0)), /NOT_FOUND/)
})

test('removeId with a mark leaves only the mark, in one step that a reopen replays', async (t) => {
  const { file } = await freshStore(t)
  let store = await openDevice(file)
  const id = crypto.randomBytes(16)
  const usedBefore = store.info().usedBlocks
  await store.put(key(id, 0, 0), crypto.randomBytes(3 * MiB))
  await store.put(key(id, 0, 0, EntryKind.Manifest), Buffer.from('manifest'))
  const mark = keyOf(id, TOMBSTONE_KIND)
  t.is(await store.removeId(id, mark), 2)
  const only = (): unknown => store.list(id).map((e) => [e.key.kind, e.length])
  t.alike(only(), [[TOMBSTONE_KIND, 0]], 'the entries are gone and the mark is there')
  t.alike(await store.read(mark), Buffer.alloc(0))
  t.is(store.info().usedBlocks, usedBefore, 'the removed extents are free again')
  await store.close()
  store = await openDevice(file)
  t.teardown(() => store.close())
  t.alike(only(), [[TOMBSTONE_KIND, 0]], 'after a reopen (journal replay): the same')
})

test('an overwrite replaces the entry and frees the old extent', async (t) => {
  const { file } = await freshStore(t)
  const store = await openDevice(file)
  t.teardown(() => store.close())
  const id = crypto.randomBytes(16)
  await store.put(key(id), crypto.randomBytes(100_000))
  const used = store.info().usedBlocks
  const next = crypto.randomBytes(100_000)
  await store.put(key(id), next)
  t.is(store.info().usedBlocks, used)
  t.ok((await store.read(key(id))).equals(next))
})

test('10,000 small entries are stored durably and survive a reopen', async (t) => {
  const { file } = await freshStore(t, 128 * MiB)
  let store = await openDevice(file)
  const ids: Buffer[] = []
  const pending: Promise<unknown>[] = []
  for (let i = 0; i < 10_000; i++) {
    const id = crypto.randomBytes(16)
    ids.push(id)
    const data = Buffer.alloc(100 + (i % 50), i % 251)
    pending.push(store.put(key(id), data))
    if (pending.length >= 64) await pending.shift()
  }
  await Promise.all(pending)
  t.is(store.info().entries, 10_000)
  await store.close()
  store = await openDevice(file)
  t.is(store.info().entries, 10_000)
  let good = 0
  for (let i = 0; i < 10_000; i += 97) {
    if ((await store.read(key(ids[i]))).equals(Buffer.alloc(100 + (i % 50), i % 251))) good++
  }
  t.is(good, Math.ceil(10_000 / 97))
  await store.close()
})

test('removing entries returns used_blocks to its earlier value', async (t) => {
  const { file } = await freshStore(t)
  const store = await openDevice(file)
  t.teardown(() => store.close())
  const before = store.info().usedBlocks
  const id = crypto.randomBytes(16)
  for (let s = 0; s < 5; s++) await store.put(key(id, s), crypto.randomBytes(300_000))
  t.ok(store.info().usedBlocks > before)
  await store.removeId(id)
  t.is(store.info().usedBlocks, before)
})

test('putMany stores small entries together, durable when it resolves; a device too full for all of them stores none', async (t) => {
  const { file } = await freshStore(t, 8 * MiB)
  let store = await openDevice(file)
  const id = crypto.randomBytes(16)
  const entries = [
    { key: keyOf(id, EntryKind.Manifest), data: crypto.randomBytes(700) },
    { key: keyOf(crypto.randomBytes(16), EntryKind.Name), data: crypto.randomBytes(90) },
    { key: key(id, 3, 1), data: crypto.randomBytes(5000) }
  ]
  await store.putMany(entries)
  for (const e of entries) t.alike(await store.read(e.key), e.data, `kind ${e.key.kind} reads back`)
  await store.close()
  store = await openDevice(file)
  t.teardown(() => store.close())
  for (const e of entries) t.alike(await store.read(e.key), e.data, `kind ${e.key.kind} reads back after a reopen`)
  const before = store.info().usedBlocks
  const big = [{ key: key(crypto.randomBytes(16)), data: Buffer.alloc(MiB, 1) }, { key: key(crypto.randomBytes(16)), data: Buffer.alloc(MiB, 2) }]
  for (let i = 0; i < 10; i++) big.push({ key: key(crypto.randomBytes(16)), data: Buffer.alloc(MiB, 3) })  // 12 MiB
  await t.exception(store.putMany(big), /DEVICE_FULL/)
  t.is(store.info().usedBlocks, before, 'no block taken')
  t.absent(big.some((e) => store.stat(e.key) !== null), 'no entry stored')
})

test('a put that does not fit fails with DEVICE_FULL and leaves nothing behind', async (t) => {
  const { file } = await freshStore(t, 8 * MiB)
  const store = await openDevice(file)
  t.teardown(() => store.close())
  const before = store.info()
  const id = crypto.randomBytes(16)
  await t.exception(store.put(key(id), Buffer.alloc(16 * MiB)), /DEVICE_FULL/)
  t.is(store.info().usedBlocks, before.usedBlocks)
  t.is(store.stat(key(id)), null)
  // Filling it up with small entries also ends in DEVICE_FULL, never in a crash.
  let err: unknown = null
  for (let i = 0; i < 10_000 && err === null; i++) {
    try { await store.put(key(id, i), Buffer.alloc(256 * 1024, 7)) } catch (e) { err = e }
  }
  t.ok(err !== null && /DEVICE_FULL/.test((err as Error).message))
})

test('a device filled with small entries and removes still checkpoints, closes and reopens', async (t) => {
  const { file } = await freshStore(t, 16 * MiB)
  let store = await openDevice(file)
  let full = false
  let count = 0
  for (let i = 0; !full; i++) {
    const id = crypto.randomBytes(16)
    try {
      await store.put(key(id), Buffer.alloc(192, i % 256))
      count++
      if (i % 50 === 0) { await store.removeId(id); count-- }
    } catch (err) {
      t.ok(/DEVICE_FULL/.test((err as Error).message), 'full is DEVICE_FULL')
      full = true
    }
  }
  await store.close()
  store = await openDevice(file)
  t.is(store.info().entries, count)
  await store.close()
})

test('a corrupt data block is an error, never wrong bytes', async (t) => {
  const { file } = await freshStore(t)
  let store = await openDevice(file)
  const small = crypto.randomBytes(16)
  const large = crypto.randomBytes(16)
  const info = await store.put(key(small), crypto.randomBytes(10_000))
  const big = crypto.randomBytes(3 * MiB)
  const bigInfo = await store.put(key(large), big)
  await store.close()
  const fd = fs.openSync(file, 'r+')
  fs.writeSync(fd, Buffer.from('garbage'), 0, 7, info.block * 4096 + 5000)
  fs.writeSync(fd, Buffer.from('garbage'), 0, 7, bigInfo.block * 4096 + MiB + 10)  // second segment
  fs.closeSync(fd)
  store = await openDevice(file)
  t.teardown(() => store.close())
  await t.exception(store.read(key(small)), /CORRUPT/)
  await t.exception(store.read(key(large)), /CORRUPT/)
  t.ok((await store.read(key(large), 0, MiB)).equals(big.subarray(0, MiB)), 'an untouched segment still reads')
  await t.exception(store.read(key(large), MiB, 10), /CORRUPT/)
})

test('a corrupt index block fails the open with CORRUPT instead of serving wrong data', async (t) => {
  const { file } = await freshStore(t)
  let store = await openDevice(file)
  await store.put(key(crypto.randomBytes(16)), Buffer.from('x'))
  const root = store.info().inodesTreeBlock
  await store.close()
  store = await openDevice(file)
  const root2 = store.info().inodesTreeBlock
  await store.close()
  t.ok(root > 0 && root2 > 0)
  const fd = fs.openSync(file, 'r+')
  fs.writeSync(fd, Buffer.alloc(64, 0xee), 0, 64, (await probeDevice(file))!.inodesTreeBlock * 4096 + 40)
  fs.closeSync(fd)
  await t.exception(openDevice(file), /CORRUPT/)
})

test('a torn write of the newest superblock falls back to the other slot', async (t) => {
  const { file } = await freshStore(t)
  let store = await openDevice(file)
  const id = crypto.randomBytes(16)
  await store.put(key(id), Buffer.from('survives'))
  await store.close()
  const gen = (await probeDevice(file))!.generation
  // Garbage over the second half of the newest slot, as if the write stopped midway.
  const fd = fs.openSync(file, 'r+')
  fs.writeSync(fd, crypto.randomBytes(2048), 0, 2048, (gen % 2) * 4096 + 2048)
  fs.closeSync(fd)
  store = await openDevice(file)
  t.teardown(() => store.close())
  t.is((await store.read(key(id))).toString(), 'survives')
})

test('a device can be attached only once: same process and another process', async (t) => {
  const { file } = await freshStore(t)
  const store = await openDevice(file)
  t.teardown(() => store.close())
  await t.exception(openDevice(file), /DEVICE_IN_USE/)
  await t.exception(formatDevice(file, { force: true }), /DEVICE_IN_USE/)
  const script = `require(${JSON.stringify(path.join(__dirname, '..', 'src', 'store', 'native-store.js'))}).openDevice(${JSON.stringify(file)}).then(() => process.exit(0), (e) => { console.log(e.code); process.exit(3) })`
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' })
  t.is(r.status, 3)
  t.is(r.stdout.trim(), 'DEVICE_IN_USE')
})

test('format refuses an existing store without force, and a device that is not one', async (t) => {
  const { file, dir } = await freshStore(t)
  await t.exception(formatDevice(file), /BAD_ARGUMENT.*already holds a ddfs store/)
  const blank = deviceFile(dir, 'blank.img', 8 * MiB)
  await t.exception(openDevice(blank), /DEVICE_NOT_FORMATTED/)
  t.is(await probeDevice(blank), null)
  await t.exception(openDevice(path.join(dir, 'missing.img')), /NOT_FOUND/)
  await t.exception(formatDevice(deviceFile(dir, 'tiny.img', 100_000)), /too small/)
})

test('loop devices: major 7, and a mounted one cannot be formatted', { skip: !isRoot }, async (t) => {
  const dir = tmpDir(t)
  const loop = loopDevice(t, dir, 64 * MiB)
  const info = await formatDevice(loop)
  t.is(info.major, 7)
  t.is(info.blocks, 16384)
  const store = await openDevice(loop)
  await store.put(key(Buffer.alloc(16, 9)), Buffer.from('on a loop device'))
  await store.close()
  const mounted = loopDevice(t, dir, 64 * MiB)
  execFileSync('mkfs.ext4', ['-q', mounted])
  const mnt = path.join(dir, 'mnt')
  fs.mkdirSync(mnt)
  execFileSync('mount', [mounted, mnt])
  t.teardown(() => { spawnSync('umount', [mnt]) }, { order: 5 })
  await t.exception(formatDevice(mounted, { force: true }), /DEVICE_IN_USE/)
})

test('power loss at any write: the device reopens consistent with every acknowledged entry', { timeout: 300_000 }, async (t) => {
  const dir = tmpDir(t)
  const seeds = Number(process.env.DDFS_CRASH_SEEDS ?? 120)
  let crashes = 0
  for (let seed = 1; seed <= seeds; seed++) {
    const file = deviceFile(dir, `crash-${seed}.img`, 8 * MiB)
    await formatDevice(file)
    const mode = (['mixed', 'tear', 'drop'] as const)[seed % 3]
    const store = await openDevice(file, { fault: { seed, crashAfterWrites: 5 + (seed * 7919) % 300, mode } })
    const acked = new Map<string, Buffer>()
    const issued = new Map<string, Buffer>()  // every put asked for, acknowledged or not
    const removed = new Set<string>()
    let crashed = false
    for (let i = 0; i < 400 && !crashed; i++) {
      const batch = []
      for (let j = 0; j < 4; j++) {
        const id = crypto.createHash('sha256').update(`${seed}/${i}/${j}`).digest().subarray(0, 16)
        const data = crypto.createHash('sha512').update(`${seed}:${i}:${j}`).digest()
        const payload = Buffer.concat(Array.from({ length: 1 + ((i + j) % 40) }, () => data))
        issued.set(id.toString('hex'), payload)
        batch.push(store.put(key(id), payload).then(() => acked.set(id.toString('hex'), payload), () => { crashed = true }))
      }
      if (i % 3 === 0) {
        // Two entries in one commit (a create's manifest and name record): both acknowledged together.
        const pair = [0, 1].map((j) => ({ key: key(crypto.createHash('sha256').update(`${seed}/${i}/pair${j}`).digest().subarray(0, 16)), data: crypto.randomBytes(100 + j * 3000) }))
        for (const e of pair) issued.set(e.key.id.toString('hex'), e.data)
        batch.push(store.putMany(pair).then(() => { for (const e of pair) acked.set(e.key.id.toString('hex'), e.data) }, () => { crashed = true }))
      }
      if (i % 10 === 9 && acked.size > 0) {
        // From the moment a remove is issued the entry may or may not survive a crash.
        const victim = [...acked.keys()][0]
        acked.delete(victim)
        batch.push(store.removeId(Buffer.from(victim, 'hex')).then(() => { removed.add(victim) }, () => { crashed = true }))
      }
      await Promise.all(batch)
    }
    await store.close().catch(() => {})
    if (crashed) crashes++
    const reopened = await openDevice(file)
    let ok = true
    for (const [hex, payload] of acked) {
      const got = await reopened.read(key(Buffer.from(hex, 'hex'))).catch((e: Error) => e)
      if (!(Buffer.isBuffer(got) && got.equals(payload))) { ok = false; t.fail(`seed ${seed}: acknowledged entry ${hex} ${got instanceof Error ? got.message : 'differs'}`) }
    }
    for (const hex of removed) if (reopened.stat(key(Buffer.from(hex, 'hex'))) !== null) { ok = false; t.fail(`seed ${seed}: removed entry ${hex} came back`) }
    // Every entry that is there, acknowledged or not, reads back the bytes put: a commit whose
    // flush the crash cut short is dropped whole at replay, never kept with missing data.
    for (const id of reopened.ids(null, 100000)) {
      for (const e of reopened.list(id)) {
        const got = await reopened.read(e.key).catch((err: Error) => err)
        if (!(Buffer.isBuffer(got) && got.equals(issued.get(id.toString('hex')) ?? Buffer.alloc(0)))) { ok = false; t.fail(`seed ${seed}: entry ${id.toString('hex')} ${got instanceof Error ? got.message : 'differs from what was put'}`) }
      }
    }
    await reopened.close()
    fs.rmSync(file)
    if (!ok) break
  }
  t.ok(crashes > seeds / 2, `${crashes} of ${seeds} runs lost power mid-way`)
})

test('a million index entries: fast lookups and a reopen', { timeout: 180_000 }, async (t) => {
  const { file } = await freshStore(t, 512 * MiB)
  let store = await openDevice(file)
  const base = crypto.randomBytes(16)
  const N = Number(process.env.DDFS_INDEX_ENTRIES ?? 1_000_000)
  const started = Date.now()
  const pending: Promise<unknown>[] = []
  for (let i = 0; i < N; i++) {
    const id = Buffer.from(base)
    id.writeUInt32BE(i, 12)
    pending.push(store.put(key(id), Buffer.alloc(0)))
    if (pending.length >= 4096) await Promise.all(pending.splice(0))
  }
  await Promise.all(pending)
  t.comment(`${N} empty entries in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  t.is(store.info().entries, N)
  await store.close()
  const t0 = Date.now()
  store = await openDevice(file)
  t.comment(`reopen with ${N} entries in ${((Date.now() - t0) / 1000).toFixed(2)} s`)
  t.is(store.info().entries, N)
  const probe = Buffer.from(base)
  probe.writeUInt32BE(Math.floor(N * 0.77), 12)
  t.ok(store.stat(key(probe)) !== null)
  probe.writeUInt32BE(N + 1, 12)
  t.is(store.stat(key(probe)), null)
  await store.close()
})

test('kill -9 during a write loop never loses an acknowledged entry', { timeout: 120_000 }, async (t) => {
  const { file } = await freshStore(t, 64 * MiB)
  const storeModule = path.join(__dirname, '..', 'src', 'store', 'native-store.js')
  const writer = `
    const { openDevice } = require(${JSON.stringify(storeModule)})
    const crypto = require('crypto')
    openDevice(process.argv[1]).then(async (s) => {
      for (let i = 0; ; i++) {
        const id = crypto.randomBytes(16)
        const data = crypto.createHash('sha512').update(id).digest()
        await Promise.all([s.put({ id, kind: 0, stripe: 0, index: 0 }, Buffer.concat([data, data, data]))])
        process.stdout.write(id.toString('hex') + '\\n')
        // '?' before the remove: from then on the entry may or may not survive a kill.
        if (i % 50 === 0 && i > 0) { process.stdout.write('?' + id.toString('hex') + '\\n'); await s.removeId(id) }
      }
    })`
  const acked = new Set<string>()
  for (let round = 0; round < 10; round++) {
    const child = spawn(process.execPath, ['-e', writer, file], { stdio: ['ignore', 'pipe', 'inherit'] })
    let buf = ''
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      const lines = buf.split('\n')
      buf = lines.pop() ?? ''
      for (const l of lines) { if (l.startsWith('?')) acked.delete(l.slice(1)); else if (l.length === 32) acked.add(l) }
    })
    await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 400))
    child.kill('SIGKILL')
    await new Promise((resolve) => child.on('close', resolve))
  }
  const store = await openDevice(file)
  t.teardown(() => store.close())
  let lost = 0
  for (const hex of acked) {
    const id = Buffer.from(hex, 'hex')
    const data = crypto.createHash('sha512').update(id).digest()
    const got = await store.read(key(id)).catch(() => null)
    if (got === null || !got.equals(Buffer.concat([data, data, data]))) lost++
  }
  t.ok(acked.size > 100, `${acked.size} acknowledged entries`)
  t.is(lost, 0, 'no acknowledged entry lost')
})

test('removes racing a close either commit or fail with CLOSED; none waits forever', { timeout: 180_000 }, async (t) => {
  // A remove that passed its open check just before a close, and queued its records while the
  // close checkpointed, used to wait forever on the queue the close had cleared, spinning a
  // core. Whether a round opens that window depends on the scheduler (more removes than pool
  // threads staggers them; a noisy machine hits it within a few rounds, a quiet one may not),
  // so the count is reported, not asserted; what is asserted holds in every interleaving.
  const { file } = await freshStore(t, 256 * MiB)
  let store = await openDevice(file)
  const IDS = 8
  const ENTRIES = 10_000
  let caughtInClose = 0
  let committed = 0
  for (let round = 0; round < 10; round++) {
    const ids = Array.from({ length: IDS }, () => crypto.randomBytes(16))
    const pending: Promise<unknown>[] = []
    for (const id of ids) {
      for (let stripe = 0; stripe < ENTRIES; stripe++) {
        pending.push(store.put(key(id, stripe), Buffer.alloc(0)))
        if (pending.length >= 4096) await Promise.all(pending.splice(0))
      }
    }
    await Promise.all(pending)
    const removed = new Set<Buffer>()
    const removes = ids.map(async (id) => {
      try {
        if (await store.removeId(id) === ENTRIES) removed.add(id)
      } catch (err) {
        const message = (err as Error).message
        if (/^CLOSED: .*before the write was durable/.test(message)) caughtInClose++
        else t.fail(`a remove racing the close failed with: ${message}`)
      }
    })
    const closing = store.close()
    let timer: NodeJS.Timeout | undefined
    const settled = await Promise.race([
      Promise.all([closing, ...removes]).then(() => true),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), 30_000) })
    ])
    clearTimeout(timer)
    if (!settled) { t.fail(`round ${round}: a remove racing the close never returned`); return }
    committed += removed.size
    store = await openDevice(file)
    const wrong = ids.filter((id) => (store.list(id).length === 0) !== removed.has(id))
    t.is(wrong.length, 0, `round ${round}: after a reopen an id's entries are gone exactly when its removeId succeeded`)
  }
  t.comment(`${committed} removeIds committed, ${caughtInClose} failed with CLOSED inside the close`)
  await store.close()
})
