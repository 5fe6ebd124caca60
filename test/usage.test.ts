// The seed's Usage section as ddfs commands, end to end, on real node processes.
import test from 'brittle'
import crypto from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { Client, connectFrames } from '../src/client/client'
import { RpcConnection } from '../src/wire/rpc'
import { MessageType, capacityRequest } from '../src/wire/messages'
import { socketPath } from '../src/node/paths'
import { tmpDir, deviceFile, loopDevice, isRoot, ddfs, startNode, stopNode, md5, testPort, readPid } from './helpers/env'

const MiB = 1024 * 1024

function kv (text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const m = /^(\w+)\s*:\s*(.*)$/.exec(line)
    if (m !== null && !(m[1] in out)) out[m[1]] = m[2].trim()
  }
  return out
}

test('the seed walk-through: dev add, node start, put, query, dev query, get, delete, dev rem, node stop', async (t) => {
  const dir = tmpDir(t)
  const dev = isRoot ? loopDevice(t, dir, 100 * MiB) : deviceFile(dir, 'dev.img', 100 * MiB)
  const port = testPort()
  const data = path.join(dir, 'node')
  const log = path.join(dir, 'ddfs.log')
  const addr = ['-s', '127.0.0.1', '-p', String(port)]
  t.is((await ddfs(['dev', 'add', '-d', dev, '-f', ...addr, '--data', data])).code, 0, 'dev add -f')
  const started = await ddfs(['node', 'start', ...addr, '--data', data, '--log', log])
  t.is(started.code, 0, `node start ${started.stderr}`)
  t.teardown(() => stopNode({ host: '127.0.0.1', port, data, log, args: [] }), { order: 0 })

  const file = path.join(dir, 'myfile.txt')
  fs.writeFileSync(file, 'hello world\n')
  const put = await ddfs(['put', ...addr, '-f', file])
  const id = put.stdout.trim().split('\n').pop() as string
  t.ok(/^[0-9a-f]{32}$/.test(id), `put prints a 32-hex id (${id})`)

  const q = kv((await ddfs(['query', ...addr, '-i', id])).stdout)
  t.is(q.obj_id, id)
  t.is(q.size, '12')
  t.is(q.bsize, '4096')
  t.is(q.device, dev)
  t.ok(/^[0-9a-f]{32}$/.test(q.sb_id))
  t.ok(Number(q.block) > 0)

  const d = kv((await ddfs(['dev', 'query', '-d', dev, ...addr])).stdout)
  for (const f of ['dev_name', 'major', 'minor', 'sb_id', 'size', 'used_size', 'free_size', 'bsize', 'blocks', 'used_blocks', 'inodes_tree_block', 'bm_block', 'bm_blocks']) t.ok(f in d, `dev query shows ${f}`)
  t.is(d.sb_id, q.sb_id, 'the fragment lives on that device')
  t.is(d.blocks, '25600')
  if (isRoot) t.is(d.major, '7')
  const usedAfterPut = Number(d.used_blocks)

  const out = path.join(dir, 'output.txt')
  t.is((await ddfs(['get', ...addr, '-i', id, '-f', out])).code, 0)
  t.is(md5(out), md5(file), 'md5 sums match')

  t.is((await ddfs(['delete', ...addr, '-i', id])).code, 0)
  const again = await ddfs(['get', ...addr, '-i', id, '-f', path.join(dir, 'again.txt')])
  t.is(again.code, 3, 'get after delete fails with NOT_FOUND')
  t.ok(/NOT_FOUND/.test(again.stderr))
  t.absent(fs.existsSync(path.join(dir, 'again.txt')), 'a failed get leaves no output file')
  const d2 = kv((await ddfs(['dev', 'query', '-d', dev, ...addr])).stdout)
  t.ok(Number(d2.used_blocks) < usedAfterPut, 'delete frees blocks')

  t.is((await ddfs(['dev', 'rem', '-d', dev, ...addr])).code, 0, 'dev rem')
  t.is((await ddfs(['node', 'stop', ...addr])).code, 0, 'node stop')
  t.ok(fs.readFileSync(log, 'utf8').includes('node-started'), 'the log has the node start')
  t.absent(fs.existsSync(socketPath('127.0.0.1', port)), 'the socket is gone')
})

test('files of 0, 1, 4095, 4096, 4097 bytes and 3 MiB + 1 round-trip; delete returns used_blocks; a restart keeps everything', async (t) => {
  const dir = tmpDir(t)
  const dev = deviceFile(dir, 'dev.img', 256 * MiB)
  const node = await startNode(t, dir, [dev])
  const addr = ['-s', node.host, '-p', String(node.port)]
  const usedBefore = Number(kv((await ddfs(['dev', 'query', '-d', dev, ...addr])).stdout).used_blocks)
  const ids = new Map<string, string>()
  for (const size of [0, 1, 4095, 4096, 4097, 3 * MiB + 1]) {
    const file = path.join(dir, `in-${size}`)
    fs.writeFileSync(file, crypto.randomBytes(size))
    // Odd sizes go through the socket (--stream), even ones by the node reading the file itself.
    const r = await ddfs(['put', ...addr, '-f', file, ...(size % 2 === 1 ? ['--stream'] : [])])
    t.is(r.code, 0, `put ${size}: ${r.stderr}`)
    ids.set(r.stdout.trim(), file)
  }
  await stopNode(node)
  t.is((await ddfs(['node', 'start', ...node.args, '--log', node.log])).code, 0, 'restart')
  let n = 0
  for (const [id, file] of ids) {
    const out = `${file}.out`
    const r = await ddfs(['get', ...addr, '-i', id, '-f', out, ...(n++ % 2 === 0 ? ['--stream'] : [])])
    t.is(r.code, 0, r.stderr)
    t.is(md5(out), md5(file), `${path.basename(file)} after restart`)
  }
  for (const id of ids.keys()) t.is((await ddfs(['delete', ...addr, '-i', id])).code, 0)
  t.is(Number(kv((await ddfs(['dev', 'query', '-d', dev, ...addr])).stdout).used_blocks), usedBefore, 'used_blocks back to its earlier value')
})

test('10,000 small objects through the protocol', { timeout: 300_000 }, async (t) => {
  const dir = tmpDir(t)
  const node = await startNode(t, dir, [deviceFile(dir, 'dev.img', 256 * MiB)])
  const client = await Client.connect({ host: node.host, port: node.port })
  t.teardown(() => client.close())
  const ids: string[] = []
  for (let i = 0; i < 10_000; i++) {
    const body = Buffer.from(`object number ${i}\n`)
    const info = await client.put((async function * () { yield body })(), { size: body.length, name: null, k: 0, m: 0, allowDegraded: false })
    ids.push(info.id as string)
  }
  t.is(new Set(ids).size, 10_000, 'every id is new')
  let good = 0
  for (let i = 0; i < 10_000; i += 37) {
    const chunks: Buffer[] = []
    await client.get(Buffer.from(ids[i], 'hex'), (p) => { chunks.push(Buffer.from(p)) })
    if (Buffer.concat(chunks).toString() === `object number ${i}\n`) good++
  }
  t.is(good, Math.ceil(10_000 / 37))
  const listed = await client.list(null, 20_000) as string[]
  t.is(listed.length, 10_000)
})

test('1 GiB through a node: md5 equal', { timeout: 600_000 }, async (t) => {
  const dir = tmpDir(t)
  const node = await startNode(t, dir, [deviceFile(dir, 'dev.img', 1200 * MiB)])
  const addr = ['-s', node.host, '-p', String(node.port)]
  const file = path.join(dir, 'big.bin')
  const fd = fs.openSync(file, 'w')
  const chunk = crypto.randomBytes(8 * MiB)
  for (let i = 0; i < 128; i++) { chunk.writeUInt32LE(i, 0); fs.writeSync(fd, chunk) }
  fs.closeSync(fd)
  const put = await ddfs(['put', ...addr, '-f', file])
  t.is(put.code, 0, put.stderr)
  const out = path.join(dir, 'big.out')
  const get = await ddfs(['get', ...addr, '-i', put.stdout.trim(), '-f', out])
  t.is(get.code, 0, get.stderr)
  t.is(md5(out), md5(file))
})

test('kill -9 of a node in a put loop never loses an acknowledged object', { timeout: 300_000 }, async (t) => {
  const dir = tmpDir(t)
  const dev = deviceFile(dir, 'dev.img', 128 * MiB)
  const node = await startNode(t, dir, [dev])
  const acked = new Map<string, string>()
  const kill = (): void => { const pid = readPid(node.data); if (pid !== null) process.kill(pid, 'SIGKILL') }
  for (let round = 0; round < 5; round++) {
    // The kill lands 0-300 ms into a put, once the round has two acknowledged ones and 0.7-1.5 s
    // passed (counted in puts, not time alone: a loaded machine puts slowly).
    const deadline = Date.now() + 700 + Math.random() * 800
    let killer: NodeJS.Timeout | null = null
    for (let i = 0, done = 0; ; i++) {
      const content = crypto.randomBytes(1 + Math.floor(Math.random() * 300_000))
      const file = path.join(dir, `f-${round}-${i}`)
      fs.writeFileSync(file, content)
      const put = ddfs(['put', '-s', node.host, '-p', String(node.port), '-f', file])
      if (killer === null && done >= 2 && Date.now() >= deadline) killer = setTimeout(kill, Math.random() * 300)
      const r = await put
      if (r.code !== 0) break  // the node is gone: nothing more is acknowledged
      acked.set(r.stdout.trim(), md5(file))
      done++
    }
    if (killer !== null) clearTimeout(killer)
    const r = await ddfs(['node', 'start', ...node.args, '--log', node.log])
    t.is(r.code, 0, `restart after kill -9: ${r.stderr}`)
  }
  t.ok(acked.size > 5, `${acked.size} acknowledged objects`)
  let lost = 0
  for (const [id, sum] of acked) {
    const out = path.join(dir, `check-${id}`)
    const r = await ddfs(['get', '-s', node.host, '-p', String(node.port), '-i', id, '-f', out])
    if (r.code !== 0 || md5(out) !== sum) lost++
  }
  t.is(lost, 0, 'no acknowledged object lost')
})

test('bad input gets a clear message and a non-zero exit', async (t) => {
  const dir = tmpDir(t)
  const dev = deviceFile(dir, 'dev.img', 16 * MiB)
  const node = await startNode(t, dir, [dev])
  const addr = ['-s', node.host, '-p', String(node.port)]
  const cases: Array<[string[], number, RegExp]> = [
    [['put', ...addr, '-f', path.join(dir, 'missing')], 3, /no such file/],
    [['get', ...addr, '-i', 'nothex', '-f', path.join(dir, 'o')], 2, /not an object id/],
    [['get', ...addr, '-i', '0'.repeat(32), '-f', path.join(dir, 'o')], 3, /NOT_FOUND/],
    [['query', ...addr, '-i', '0'.repeat(32)], 3, /NOT_FOUND/],
    [['delete', ...addr, '-i', '0'.repeat(32)], 3, /NOT_FOUND/],
    [['put', ...addr, '--fiel', 'x'], 2, /did you mean --file/],
    [['dev', 'ad', '-d', dev], 2, /did you mean 'ddfs dev add'/],
    [['put', '-s', '127.0.0.1', '-p', String(testPort()), '-f', dev], 8, /no ddfs node at/],
    [['node', 'start', ...node.args, '--log', node.log], 8, /already/],
    [['dev', 'add', '-d', dev, '-f', ...addr], 4, /DEVICE_IN_USE|already attached/],
    [['dev', 'query', '-d', path.join(dir, 'nope.img'), ...addr], 3, /NOT_FOUND|no such/],
    [['put', ...addr, '-f', dev, '-n', '3'], 2, /both -n N and -k K/]
  ]
  for (const [args, code, msg] of cases) {
    const r = await ddfs(args)
    t.is(r.code, code, `ddfs ${args.join(' ')} exits ${code}`)
    t.ok(msg.test(r.stderr), `says ${msg}: ${r.stderr.trim()}`)
  }
  // Device full: the put fails and leaves nothing behind.
  const used = kv((await ddfs(['dev', 'query', '-d', dev, ...addr])).stdout).used_blocks
  const big = path.join(dir, 'big')
  fs.writeFileSync(big, Buffer.alloc(20 * MiB, 1))
  const r = await ddfs(['put', ...addr, '-f', big])
  t.is(r.code, 5, 'device full exits 5')
  t.is(kv((await ddfs(['dev', 'query', '-d', dev, ...addr])).stdout).used_blocks, used, 'nothing left behind')
})

test('a corrupt block on the device makes get fail with CORRUPT and write no output', async (t) => {
  const dir = tmpDir(t)
  const dev = deviceFile(dir, 'dev.img', 32 * MiB)
  const node = await startNode(t, dir, [dev])
  const addr = ['-s', node.host, '-p', String(node.port)]
  const file = path.join(dir, 'in')
  fs.writeFileSync(file, crypto.randomBytes(200_000))
  const id = (await ddfs(['put', ...addr, '-f', file])).stdout.trim()
  const block = Number(kv((await ddfs(['query', ...addr, '-i', id])).stdout).block)
  const fd = fs.openSync(dev, 'r+')
  fs.writeSync(fd, Buffer.from('bit rot'), 0, 7, block * 4096 + 1234)
  fs.fsyncSync(fd)
  fs.closeSync(fd)
  for (const mode of [[], ['--stream']]) {
    const out = path.join(dir, `out${mode.length}`)
    const r = await ddfs(['get', ...addr, '-i', id, '-f', out, ...mode])
    t.is(r.code, 6, `get ${mode.join(' ')} exits 6`)
    t.ok(/CORRUPT/.test(r.stderr), r.stderr.trim())
    t.absent(fs.existsSync(out), 'no output file')
    t.is(fs.readdirSync(dir).filter((f) => f.includes('.ddfs-')).length, 0, 'no temp file left')
  }
})

test('TCP needs the cluster secret; admin commands over TCP are refused; malformed frames do not hurt the node', async (t) => {
  const dir = tmpDir(t)
  const node = await startNode(t, dir, [deviceFile(dir, 'dev.img', 16 * MiB)])
  // A standalone node makes its own secret; without it (or with another) TCP gets nothing.
  await t.exception(Client.connect({ host: node.host, port: node.port, tcpOnly: true }), /PERMISSION.*--cluster/)
  await t.exception(Client.connect({ host: node.host, port: node.port, tcpOnly: true, secret: crypto.randomBytes(32) }), /PERMISSION/)
  const tcp = await Client.connect({ host: node.host, port: node.port, tcpOnly: true, secret: fs.readFileSync(path.join(node.data, 'cluster.secret')) })
  t.teardown(() => tcp.close())
  t.absent(tcp.local)
  await t.exception(tcp.stopNode(), /PERMISSION/)
  await t.exception(tcp.devRem('/dev/null'), /PERMISSION/)
  // Garbage on the local socket and on the TCP port: the node closes those connections only.
  for (const target of [socketPath(node.host, node.port), null]) {
    await new Promise<void>((resolve) => {
      const s = target !== null ? net.connect(target) : net.connect(node.port, node.host)
      s.on('connect', () => { s.write(crypto.randomBytes(5000)); s.write(Buffer.from([0xff, 0xff, 0xff, 0x7f, 1, 2, 3])) })
      s.on('error', () => resolve())
      s.on('close', () => resolve())
      setTimeout(() => { s.destroy(); resolve() }, 2000)
    })
  }
  const r = await ddfs(['status', '-s', node.host, '-p', String(node.port), '--json'])
  t.is(r.code, 0, 'the node still answers')
  t.ok(fs.readFileSync(node.log, 'utf8').includes('peer-rejected'), 'the node logged the rejected handshakes')
  t.is(JSON.parse(r.stdout).devices.length, 1)
  const file = path.join(dir, 'f')
  fs.writeFileSync(file, 'still works')
  t.is((await ddfs(['put', '-s', node.host, '-p', String(node.port), '-f', file])).code, 0)
  // Data commands work over TCP (encrypted).
  const info = await tcp.put((async function * () { yield Buffer.from('over tcp') })(), { size: 8, name: null, k: 0, m: 0, allowDegraded: false })
  const chunks: Buffer[] = []
  await tcp.get(Buffer.from(info.id as string, 'hex'), (p) => { chunks.push(Buffer.from(p)) })
  t.is(Buffer.concat(chunks).toString(), 'over tcp')
  // A request of a type this version does not know (a newer node's) is answered UNSUPPORTED,
  // and the connection stays up for the requests beside it.
  const rpc = new RpcConnection((await connectFrames({ host: node.host, port: node.port })).conn, 'node')
  t.teardown(() => rpc.close())
  await t.exception(rpc.request(100 as MessageType, capacityRequest, { cluster: false }, null, 5000), /UNSUPPORTED: .*message type 100 is not known/)
  const capacity = await rpc.request(MessageType.Capacity, capacityRequest, { cluster: false }, null, 5000)
  t.is(capacity.type, MessageType.Data, 'the same connection answers the next request')
})

test('help for every command, and --json output', async (t) => {
  const top = await ddfs(['--help'])
  t.is(top.code, 0)
  for (const cmd of ['dev add', 'dev rem', 'dev query', 'node start', 'node stop', 'put', 'get', 'query', 'delete', 'status', 'ls']) {
    t.ok(top.stdout.includes(cmd), `top help lists ${cmd}`)
    const r = await ddfs([...cmd.split(' '), '--help'])
    t.is(r.code, 0)
    t.ok(r.stdout.includes('Examples:'), `ddfs ${cmd} --help has examples`)
  }
})
