// The cluster building blocks together, one OS process per node: identity and secret from files,
// discovery over a private DHT bootstrapped by the first node, transport connections to the
// discovered data addresses, and placement computed independently by each node.
import test from 'brittle'
import type { Test } from 'brittle'
import path from 'node:path'
import dgram from 'node:dgram'
import { spawn, type ChildProcess } from 'node:child_process'
import { createClusterSecret, loadClusterSecret } from '../src/cluster/secret'
import { loadOrCreateIdentity } from '../src/cluster/identity'
import { connect, listen } from '../src/cluster/transport'
import { Discovery } from '../src/cluster/discovery'
import { fragmentHolders } from '../src/cluster/placement'
import { sodium } from '../src/cluster/sodium'
import { xxh64, hashHex } from '../src/hash'

const HOST = '127.0.0.1'

type Event = { event: string, [k: string]: unknown }

function emit (e: Event): void {
  process.stdout.write(JSON.stringify(e) + '\n')
}

/** Child: one cluster node (or an outsider with another secret when `attack` ports are given). */
async function nodeMain (secretFile: string, dir: string, bootstrap: string, dhtPort: number, expect: number, attack: number[]): Promise<void> {
  const secret = loadClusterSecret(secretFile)
  const keyPair = loadOrCreateIdentity(dir)
  const server = await listen({ host: HOST, port: 0, secret, keyPair }, (conn) => {
    conn.on('frame', (f) => conn.send([Buffer.from('echo: '), f]))
  })
  server.on('reject', (err) => emit({ event: 'reject', code: err.code }))
  const disc = new Discovery({ secret, keyPair, dataAddress: { host: HOST, port: server.address().port }, bootstrap: bootstrap === '' ? [] : bootstrap.split(','), host: HOST, dhtPort: dhtPort === 0 ? undefined : dhtPort, interval: 300, ttl: 3000 })
  disc.on('member-remove', (m) => emit({ event: 'member-remove', port: m.port }))
  process.on('SIGTERM', () => {
    disc.destroy().then(() => server.close()).finally(() => process.exit(0))
  })
  await disc.ready()
  emit({ event: 'ready', port: server.address().port, key: keyPair.publicKey.toString('hex') })
  if (attack.length > 0) {
    for (let i = 0; i < 5; i++) { await disc.refresh(); await new Promise((resolve) => setTimeout(resolve, 200)) }
    emit({ event: 'members', count: disc.members().length })
    for (const port of attack) {
      try {
        const c = await connect({ host: HOST, port, secret, keyPair })
        c.close()
        emit({ event: 'connected', port })
      } catch (err) {
        emit({ event: 'connect-failed', port, code: (err as { code?: string }).code })
      }
    }
    emit({ event: 'done' })
    return
  }
  while (disc.members().length < expect) {
    await new Promise((resolve) => setTimeout(resolve, 100))
    await disc.refresh()
  }
  const members = disc.members()
  for (const m of members) {
    if (m.self) continue
    const conn = await connect({ host: m.host, port: m.port, secret, keyPair, remotePublicKey: m.publicKey })
    const reply = await new Promise<Buffer>((resolve) => { conn.once('frame', resolve); conn.send(Buffer.from(`ping from ${server.address().port}`)) })
    emit({ event: 'echo', to: m.port, reply: reply.toString() })
    conn.close()
  }
  // Every node computes placement alone; equal digests mean equal placement everywhere.
  const parts: Buffer[] = []
  for (let i = 0; i < 200; i++) {
    const id = Buffer.alloc(16)
    sodium.crypto_generichash(id, Buffer.from(`object ${i}`))
    for (const h of fragmentHolders(id, members, 3)) parts.push(h.publicKey)
  }
  emit({ event: 'placement', digest: hashHex(xxh64(Buffer.concat(parts))) })
  emit({ event: 'done' })
}

if (process.argv[2] === '--node') {
  const [secretFile, dir, bootstrap, dhtPort, expect, attack] = process.argv.slice(3)
  nodeMain(secretFile, dir, bootstrap, Number(dhtPort), Number(expect), attack === '' ? [] : attack.split(',').map(Number)).catch((err) => {
    console.error(err)
    process.exit(1)
  })
} else {
  tests()
}

const children: ChildProcess[] = []

async function stop (proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return
  proc.kill('SIGTERM')
  const killer = setTimeout(() => proc.kill('SIGKILL'), 3000)
  await new Promise((resolve) => proc.once('exit', resolve))
  clearTimeout(killer)
}

interface Child { proc: ChildProcess, events: Event[], wait: (name: string, pred?: (e: Event) => boolean) => Promise<Event> }

function start (t: Test, args: string[]): Child {
  const proc = spawn(process.execPath, [__filename, '--node', ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  const events: Event[] = []
  const waiters: Array<() => void> = []
  let tail = ''
  proc.stdout?.setEncoding('utf8')
  proc.stdout?.on('data', (d: string) => {
    const lines = (tail + d).split('\n')
    tail = lines.pop() ?? ''
    for (const l of lines) if (l.startsWith('{')) events.push(JSON.parse(l) as Event)
    for (const w of waiters.splice(0)) w()
  })
  // All children stop in parallel (one teardown each would wait for them one by one).
  if (children.length === 0) t.teardown(() => Promise.all(children.splice(0).map(stop)))
  children.push(proc)
  const wait = (name: string, pred: (e: Event) => boolean = () => true): Promise<Event> => new Promise((resolve, reject) => {
    const check = (): void => {
      const e = events.find((x) => x.event === name && pred(x))
      if (e !== undefined) return resolve(e)
      if (proc.exitCode !== null) return reject(new Error(`node exited ${proc.exitCode} before ${name}`))
      waiters.push(check)
    }
    proc.once('exit', () => { for (const w of waiters.splice(0)) w() })
    check()
  })
  return { proc, events, wait }
}

async function freeUdpPort (): Promise<number> {
  const s = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => s.bind(0, HOST, resolve))
  const port = s.address().port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

function tests (): void {
  test('four node processes find each other, connect with the secret, agree on placement, shut out a node without it, and drop a killed node', { timeout: 120_000 }, async (t) => {
    const dir = await t.tmp()
    const secretFile = path.join(dir, 'cluster.key')
    createClusterSecret(secretFile)
    const otherSecret = path.join(dir, 'other.key')
    createClusterSecret(otherSecret)
    const dhtPort = await freeUdpPort()
    const boot = `${HOST}:${dhtPort}`
    const first = start(t, [secretFile, path.join(dir, 'n0'), '', String(dhtPort), '4', ''])
    await first.wait('ready')
    const nodes = [first, ...[1, 2, 3].map((i) => start(t, [secretFile, path.join(dir, `n${i}`), boot, '0', '4', '']))]
    await Promise.all(nodes.map((n) => n.wait('done')))
    for (const [i, n] of nodes.entries()) {
      const echoes = n.events.filter((e) => e.event === 'echo')
      t.is(echoes.length, 3, `node ${i} reached the three others over the transport`)
      t.ok(echoes.every((e) => String(e.reply).startsWith('echo: ping from')), `node ${i} got every echo`)
    }
    const digests = new Set(nodes.map((n) => n.events.find((e) => e.event === 'placement')?.digest))
    t.is(digests.size, 1, 'all four computed the same placement')
    t.is(new Set(nodes.map((n) => n.events.find((e) => e.event === 'ready')?.key)).size, 4, 'four distinct identities')

    const ports = nodes.map((n) => Number(n.events.find((e) => e.event === 'ready')?.port))
    const outsider = start(t, [otherSecret, path.join(dir, 'x'), boot, '0', '1', ports.join(',')])
    await outsider.wait('done')
    t.is(outsider.events.find((e) => e.event === 'members')?.count, 1, 'the outsider discovers no member')
    const failed = outsider.events.filter((e) => e.event === 'connect-failed')
    t.is(failed.length, 4, 'the outsider cannot connect to any member')
    t.ok(failed.every((e) => e.code === 'PERMISSION'), 'each refusal is PERMISSION')
    await new Promise((resolve) => setTimeout(resolve, 200))
    const rejects = nodes.reduce((s, n) => s + n.events.filter((e) => e.event === 'reject').length, 0)
    t.is(rejects, 4, 'each member reported the rejected handshake')

    // A node killed outright (no leaving record) drops out of every other view once its
    // record stops advancing, and nobody else is dropped on the way.
    nodes[3].proc.kill('SIGKILL')
    await Promise.all(nodes.slice(0, 3).map((n) => n.wait('member-remove', (e) => e.port === ports[3])))
    const removals = nodes.slice(0, 3).flatMap((n) => n.events.filter((e) => e.event === 'member-remove').map((e) => e.port))
    t.alike(removals, [ports[3], ports[3], ports[3]], 'each survivor removed the killed node, and only it')
  })
}
