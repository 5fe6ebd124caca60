// Erasure coding through a real node and the CLI: one node, 6 file-backed devices, 4+2.
import test from 'brittle'
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { tmpDir, deviceFile, ddfs, startNode, stopNode, md5 } from './helpers/env'

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
