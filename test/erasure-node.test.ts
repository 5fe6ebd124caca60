// Erasure coding through a real node and the CLI: one node, 6 file-backed devices, 4+2.
import test from 'brittle'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { tmpDir, deviceFile, ddfs, startNode, stopNode, md5, testPort, type TestNode } from './helpers/env'

const MiB = 1024 * 1024

test('one node with 6 devices, 4+2: wipe 2 device files, restart, and every object reads back', { timeout: 300_000 }, async (t) => {
  const dir = tmpDir(t)
  const devs = Array.from({ length: 6 }, (_, i) => deviceFile(dir, `dev${i}.img`, 64 * MiB))
  const node = await startNode(t, dir, devs)
  const addr = ['-s', node.host, '-p', String(node.port)]
  const objects = new Map<string, string>()
  for (const size of [0, 1, 4097, 5 * MiB + 3, 9 * MiB]) {
    const file = path.join(dir, `in-${size}`)
    fs.writeFileSync(file, crypto.randomBytes(size))
    const r = await ddfs(['put', ...addr, '-f', file, '-n', '6', '-k', '4'])
    t.is(r.code, 0, r.stderr)
    objects.set(r.stdout.trim(), md5(file))
  }
  const q = await ddfs(['query', ...addr, '-i', [...objects.keys()][3], '--json'])
  const info = JSON.parse(q.stdout) as { schema: { k: number, m: number }, fragments: Array<{ stripe: number, device: string }> }
  t.alike(info.schema, { k: 4, m: 2 })
  t.is(new Set(info.fragments.filter((f) => f.stripe === 0).map((f) => f.device)).size, 6, 'a stripe spans 6 devices')
  const text = await ddfs(['query', ...addr, '-i', [...objects.keys()][3]])
  t.ok(/schema : n=6 k=4/.test(text.stdout), 'query shows the schema')

  // An explicit schema that cannot be placed fails clearly unless degraded placement is allowed.
  const small = path.join(dir, 'in-4097')
  const wide = await ddfs(['put', ...addr, '-f', small, '-n', '8', '-k', '4'])
  t.is(wide.code, 11)
  t.ok(/needs 8 failure domains/.test(wide.stderr), wide.stderr.trim())
  t.is((await ddfs(['put', ...addr, '-f', small, '-n', '8', '-k', '4', '--allow-degraded'])).code, 0)

  await stopNode(node)
  for (const i of [1, 4]) { fs.truncateSync(devs[i], 0); fs.truncateSync(devs[i], 64 * MiB) }
  t.is((await ddfs(['node', 'start', ...node.args, '--log', node.log])).code, 0, 'the node starts with 2 devices gone')
  const status = JSON.parse((await ddfs(['status', ...addr, '--json'])).stdout) as { devices: unknown[], failedDevices: unknown[] }
  t.is(status.devices.length, 4)
  t.is(status.failedDevices.length, 2)
  for (const [id, sum] of objects) {
    const out = path.join(dir, `out-${id}`)
    const r = await ddfs(['get', ...addr, '-i', id, '-f', out])
    t.is(r.code, 0, r.stderr)
    t.is(md5(out), sum, `${id} reads back with 2 of 6 devices wiped`)
  }
})

/**
 * A standalone node on 4 formatted 64 MiB device files, not started: `start(extra)` starts it
 * (node start with extra options), and teardown stops it.
 */
async function fourDeviceNode (t: any, dir: string): Promise<{ devs: string[], node: TestNode, addr: string[], start: (extra: string[]) => Promise<void> }> {
  const devs = Array.from({ length: 4 }, (_, i) => deviceFile(dir, `dev${i}.img`, 64 * MiB))
  const port = testPort()
  const data = path.join(dir, 'node')
  const log = path.join(dir, 'node.log')
  const args = ['-s', '127.0.0.1', '-p', String(port), '--data', data]
  for (const d of devs) t.is((await ddfs(['dev', 'add', '-d', d, '-f', ...args])).code, 0)
  const node = { host: '127.0.0.1', port, data, log, args }
  t.teardown(() => stopNode(node), { order: 0 })
  const start = async (extra: string[]): Promise<void> => {
    const r = await ddfs(['node', 'start', ...args, '--log', log, ...extra])
    t.is(r.code, 0, `node start: ${r.stderr}`)
  }
  return { devs, node, addr: args.slice(0, 4), start }
}

test('a standalone node scrubs its devices: a flipped bit in a fragment is found and the fragment rebuilt from the stripe\'s others, in the background and when a read meets it', { timeout: 300_000 }, async (t) => {
  const dir = tmpDir(t)
  const { node, addr, start } = await fourDeviceNode(t, dir)
  // A long interval first: only reads ask for a check.
  await start([])
  const file = path.join(dir, 'in')
  fs.writeFileSync(file, crypto.randomBytes(3 * MiB))
  const put = await ddfs(['put', ...addr, '-f', file, '-n', '4', '-k', '2', '-q'])
  t.is(put.code, 0, `put: ${put.stderr}`)
  const id = put.stdout.trim()
  interface Frag { stripe: number, index: number, device: string, block: number }
  const fragment = async (index: number): Promise<Frag> =>
    (JSON.parse((await ddfs(['query', ...addr, '-i', id, '--json'])).stdout).fragments as Frag[]).find((f) => f.stripe === 0 && f.index === index) as Frag
  const firstBlock = (f: Frag): Buffer => {
    const fd = fs.openSync(f.device, 'r')
    try { const b = Buffer.alloc(4096); fs.readSync(fd, b, 0, 4096, f.block * 4096); return b } finally { fs.closeSync(fd) }
  }
  const flip = (f: Frag): void => {
    const fd = fs.openSync(f.device, 'r+')
    try { const b = Buffer.alloc(1); fs.readSync(fd, b, 0, 1, f.block * 4096 + 100); b[0] ^= 0x08; fs.writeSync(fd, b, 0, 1, f.block * 4096 + 100) } finally { fs.closeSync(fd) }
  }
  const scrub = async (): Promise<{ damagedFound: number, repaired: number, passes: number }> =>
    JSON.parse((await ddfs(['status', ...addr, '--json'])).stdout).scrub
  const repairedOnce = async (): Promise<number> => {
    let s = await scrub()
    for (let i = 0; i < 60 && s.repaired < 1; i++) { await new Promise((resolve) => setTimeout(resolve, 1000)); s = await scrub() }
    return s.repaired
  }

  // A read meets a damaged data fragment: it still returns the right bytes (from the others),
  // and the node rebuilds that fragment.
  const data0 = await fragment(0)
  const intact0 = firstBlock(data0)
  flip(data0)
  const out = path.join(dir, 'out')
  const got = await ddfs(['get', ...addr, '-i', id, '-f', out, '-q'])
  t.is(got.code, 0, `get with a damaged fragment: ${got.stderr}`)
  t.is(md5(out), md5(file), 'the right bytes')
  t.is(await repairedOnce(), 1, 'the read had the fragment rebuilt')
  t.alike(firstBlock(await fragment(0)), intact0, 'its bytes on the device are the intact ones again')

  // The background pass finds a damaged parity fragment that no read touches.
  const parity = await fragment(3)
  const intact3 = firstBlock(parity)
  await stopNode(node)
  flip(parity)
  await start(['--scrub-interval', '1', '--scrub-rate', '200'])
  t.is(await repairedOnce(), 1, 'scrub rebuilt it')
  const s = await scrub()
  t.is(s.damagedFound, 1, 'one damaged entry found')
  t.alike(firstBlock(await fragment(3)), intact3, 'the parity fragment\'s bytes are the intact ones again')
  const text = await ddfs(['status', ...addr])
  t.ok(/scrub: .* checked in \d+ passes, 1 damaged found, 1 repaired/.test(text.stdout), `status says so: ${text.stdout.split('\n').find((l) => l.includes('scrub')) ?? ''}`)
})

test('a standalone node removes a delete\'s tombstone after --tombstone-ttl, with the rest of the id; never while one of its devices is failed', { timeout: 300_000 }, async (t) => {
  const dir = tmpDir(t)
  const { devs, node, addr, start: startWith } = await fourDeviceNode(t, dir)
  const start = async (): Promise<void> => await startWith(['--tombstone-ttl', '2'])
  interface Status { tombstones: number, tombstonesCollected: number, devices: Array<{ entries: number }>, failedDevices: unknown[] }
  const status = async (): Promise<Status> => JSON.parse((await ddfs(['status', ...addr, '--json'])).stdout)
  const entries = (s: Status): number => s.devices.reduce((n, d) => n + d.entries, 0)
  const until = async (what: string, ok: (s: Status) => boolean): Promise<Status> => {
    let s = await status()
    for (let i = 0; i < 60 && !ok(s); i++) { await new Promise((resolve) => setTimeout(resolve, 250)); s = await status() }
    t.ok(ok(s), `${what} (tombstones ${s.tombstones}, removed ${s.tombstonesCollected})`)
    return s
  }
  const put = async (size: number, schema: string[]): Promise<string> => {
    const file = path.join(dir, `in-${size}`)
    fs.writeFileSync(file, crypto.randomBytes(size))
    const r = await ddfs(['put', ...addr, '-f', file, ...schema, '-q'])
    t.is(r.code, 0, `put: ${r.stderr}`)
    return r.stdout.trim()
  }

  await start()
  await put(MiB, ['-n', '4', '-k', '2'])
  const before = entries(await status())
  const id = await put(3 * MiB, ['-n', '4', '-k', '2'])
  t.is((await ddfs(['delete', ...addr, '-i', id])).code, 0)
  await until('the delete left a tombstone', (s) => s.tombstones === 1)
  const after = await until('removed after the TTL', (s) => s.tombstones === 0 && s.tombstonesCollected === 1)
  t.is(entries(after), before, 'nothing of the id is left on any device')
  t.is((await ddfs(['get', ...addr, '-i', id, '-f', path.join(dir, 'out')])).code, 3, 'and it stays deleted (NOT_FOUND)')

  // One device failed (wiped while the node was stopped): a tombstone stays.
  await stopNode(node)
  fs.truncateSync(devs[3], 0)
  fs.truncateSync(devs[3], 64 * MiB)
  await start()
  t.is((await status()).failedDevices.length, 1, 'one device failed')
  const other = await put(MiB, ['-n', '3', '-k', '1'])
  t.is((await ddfs(['delete', ...addr, '-i', other])).code, 0)
  await until('its tombstone is noted', (s) => s.tombstones === 1)
  await new Promise((resolve) => setTimeout(resolve, 3000))
  const held = await status()
  t.alike([held.tombstones, held.tombstonesCollected], [1, 0], 'and kept past the TTL while the device is failed')
})
