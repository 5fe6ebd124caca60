// What an operator reads: the metrics endpoint, --json shapes, status --watch, help everywhere.
import test from 'brittle'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { ddfs, localCluster, sh, tmpDir, testPort } from './helpers/env'

function get (port: number, p: string): Promise<{ status: number, body: string, type: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers['content-type']) }))
    }).on('error', reject)
  })
}

test('metrics: Prometheus text with requests, bytes, devices and members', { timeout: 120_000 }, async (t) => {
  const metricsPort = testPort()
  const c = await localCluster(t, 1, ['--heartbeat', '1000', '--metrics-port', String(metricsPort)])
  const file = path.join(tmpDir(t), 'f')
  fs.writeFileSync(file, Buffer.alloc(123_456, 7))
  const id = (await ddfs(['put', ...c.at(0), '-f', file])).stdout.trim()
  t.is((await ddfs(['get', ...c.at(0), '-i', id, '-f', `${file}.out`])).code, 0)
  t.is((await ddfs(['get', ...c.at(0), '-i', 'f'.repeat(32), '-f', `${file}.x`])).code, 3)
  const m = await get(metricsPort, '/metrics')
  t.is(m.status, 200)
  t.ok(m.type.startsWith('text/plain'), m.type)
  const lines = m.body.trim().split('\n')
  t.ok(lines.every((l) => /^# (HELP|TYPE) ddfs_[a-z_]+ .+$/.test(l) || /^ddfs_[a-z_]+(\{[a-z]+="[^"]*"(,[a-z]+="[^"]*")*\})? -?[0-9.e+]+$/.test(l)), 'every line is a comment or a sample')
  const value = (sample: string): number => Number(lines.find((l) => l.startsWith(sample + ' '))?.split(' ').pop())
  t.is(value('ddfs_requests_total{type="put_local"}'), 1, 'the put is counted')
  t.is(value('ddfs_object_bytes_total{direction="in"}'), 123_456, 'its bytes')
  t.is(value('ddfs_object_bytes_total{direction="out"}'), 123_456, 'and the get\'s')
  t.is(value('ddfs_request_errors_total{type="get_local",code="NOT_FOUND"}'), 1, 'the failed get by code')
  t.is(value('ddfs_cluster_members'), 1)
  for (const name of ['ddfs_objects_below_n', 'ddfs_repair_pending_bytes', 'ddfs_scrub_checked_bytes', 'ddfs_scrub_damaged', 'ddfs_tombstones', 'ddfs_tombstones_collected_total']) t.ok(Number.isFinite(value(name)), `${name} is served`)
  t.ok(lines.includes('# TYPE ddfs_tombstones_collected_total counter'), 'a counter is typed as one')
  t.ok(value(`ddfs_device_bytes{device="${path.join(c.data(0), 'dev0.img')}",kind="size"}`) > 0, 'device size')
  t.is((await get(metricsPort, '/')).status, 404)
})

test('--json shapes of status, up, logs and ls; status --watch redraws; --help on every command', { timeout: 120_000 }, async (t) => {
  const c = await localCluster(t, 2)
  const s = JSON.parse((await ddfs(['status', ...c.at(1), '--json'])).stdout)
  for (const k of ['address', 'pid', 'publicKey', 'mode', 'members', 'devices', 'failedDevices', 'uptimeSeconds', 'dataDir']) t.ok(k in s, `status has ${k}`)
  t.is(s.mode, 'cluster')
  t.is(s.members.length, 2)
  t.ok(s.members.every((m: Record<string, unknown>) => typeof m.address === 'string' && /^[0-9a-f]{64}$/.test(String(m.publicKey)) && typeof m.self === 'boolean' && m.state === 'live'))
  for (const k of ['objects', 'objectsBelowN', 'objectsBelowK1', 'objectsUnreadable', 'bytesToRepair', 'repairedBytes', 'etaSeconds', 'nodesLost']) t.ok(k in s.durability, `status has durability.${k}`)
  t.is(s.durability.objectsBelowN, 0)
  const up = JSON.parse((await ddfs(['up', '--dir', c.dir, '--base-port', String(c.basePort), '--no-mount', '--json'])).stdout)
  t.is(up.nodes.length, 2)
  t.ok(up.nodes.every((n: Record<string, unknown>) => typeof n.pid === 'number' && n.started === false), 'up again: both already running')
  t.ok(up.nodes.every((n: { index: number, metrics: string }) => n.metrics === `http://127.0.0.1:${c.basePort + 2000 + n.index}/metrics`), 'ddfs up gives every node a metrics port')
  t.ok((await get(c.basePort + 2001, '/metrics')).body.includes('ddfs_cluster_members 2'), 'node 1 serves its metrics there')
  t.ok(Array.isArray(JSON.parse((await ddfs(['logs', '--dir', c.dir, '--json'])).stdout)))
  t.ok(Array.isArray(JSON.parse((await ddfs(['ls', ...c.at(0), '--json'])).stdout)))
  const healed = await ddfs(['status', ...c.at(0), '--wait', '--timeout', '30', '--json'])
  t.is(healed.code, 0, `status --wait on a healthy cluster returns at once ${healed.stderr}`)
  t.is(JSON.parse(healed.stdout).durability.objectsBelowN, 0)
  const badTimeout = await ddfs(['status', ...c.at(0), '--wait', '--timeout', '0'])
  t.is(badTimeout.code, 2, 'status --wait --timeout 0 is refused')
  const watch = await sh(`timeout 3 ${process.execPath} ${path.join(__dirname, '..', '..', 'bin', 'ddfs')} status ${c.at(0).join(' ')} --watch 1; true`)
  t.ok((watch.stdout.match(/cluster: 2 members/g) ?? []).length >= 2, 'status --watch redraws')
  const top = (await ddfs(['--help'])).stdout
  const names = [...top.matchAll(/^ {2}([a-z]+(?: [a-z]+)?) {2,}/gm)].map((m) => m[1])
  t.ok(names.length >= 20, `${names.length} commands listed`)
  for (const name of names) {
    const r = await ddfs([...name.split(' '), '--help'])
    t.ok(r.code === 0 && r.stdout.includes('Examples:'), `ddfs ${name} --help`)
  }
  const typo = await ddfs(['stauts'])
  t.is(typo.code, 2)
  t.ok(typo.stderr.includes("did you mean 'ddfs status'"), typo.stderr.trim())
})
