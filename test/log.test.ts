// Log lines and rotation by size, with two processes' loggers sharing one file.
import test from 'brittle'
import fs from 'node:fs'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import { tmpDir } from './helpers/env'

test('the log rotates by size (.1 .. .3) even with two writers on one file, and lines stay whole', (t) => {
  const dir = tmpDir(t)
  const file = path.join(dir, 'ddfs.log')
  const script = `
    const { Logger } = require(${JSON.stringify(path.join(__dirname, '..', 'src', 'log'))})
    const a = new Logger(${JSON.stringify(file)}, 'node-a'), b = new Logger(${JSON.stringify(file)}, 'node-b')
    ;(async () => {
      for (let i = 0; i < 20000; i++) { a.info('put', { i, id: 'x'.repeat(32) }); b.warn('peer-error', { i }); if (i % 100 === 0) await new Promise(r => setTimeout(r, 1)) }
      await Promise.all([a.close(), b.close()])
    })()`
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, DDFS_LOG_MAX_BYTES: '200000' }, encoding: 'utf8' })
  t.is(r.status, 0, r.stderr)
  const files = fs.readdirSync(dir).sort()
  t.alike(files, ['ddfs.log', 'ddfs.log.1', 'ddfs.log.2', 'ddfs.log.3'], 'three old generations kept')
  for (const f of files) {
    const size = fs.statSync(path.join(dir, f)).size
    t.ok(size < 200000 * 1.6, `${f} is near the limit (${size})`)
    const lines = fs.readFileSync(path.join(dir, f), 'utf8').split('\n').filter((l) => l !== '')
    t.ok(lines.every((l) => /^\d{4}-\d\d-\d\dT[\d:.]+Z (info|warn) node-[ab] (put|peer-error) i=\d+/.test(l)), `${f}: every line is whole`)
  }
})
