import test from 'brittle'
import type { Test } from 'brittle'
import dgram from 'node:dgram'
import crypto from 'node:crypto'
import { Discovery, openRecord, sealRecord, type Member } from '../src/cluster/discovery'
import { randomKeyPair } from '../src/cluster/identity'
import { deriveClusterKeys } from '../src/cluster/secret'

const HOST = '127.0.0.1'
const INTERVAL = 300
// A put or lookup that meets a just-died DHT node waits for dht-rpc's timeouts (~2 s with one
// retry), so the ttl must exceed that or live members would be dropped too.
const TTL = 3000

async function freeUdpPort (): Promise<number> {
  const s = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => s.bind(0, HOST, resolve))
  const port = s.address().port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

function node (t: Test, secret: Buffer, bootstrap: string[], dataPort: number, dhtPort?: number): Discovery {
  const d = new Discovery({ secret, keyPair: randomKeyPair(), dataAddress: { host: HOST, port: dataPort }, bootstrap, host: HOST, dhtPort, interval: INTERVAL, ttl: TTL })
  t.teardown(() => d.destroy({ force: true }))
  return d
}

/** Refreshes every node until `done` holds (bounded: fails the test instead of hanging). */
async function until (nodes: Discovery[], done: () => boolean, rounds = 40): Promise<boolean> {
  for (let i = 0; i < rounds; i++) {
    await Promise.all(nodes.map((n) => n.refresh()))
    if (done()) return true
    await new Promise((resolve) => setTimeout(resolve, INTERVAL / 2))
  }
  return false
}

const ports = (ms: Member[]): number[] => ms.map((m) => m.port).sort((a, b) => a - b)

test('four nodes bootstrapped from the first find each other with their data addresses, on loopback only', async (t) => {
  const secret = crypto.randomBytes(32)
  const dhtPort = await freeUdpPort()
  const first = node(t, secret, [], 9100, dhtPort)
  await first.ready()
  const boot = [`${HOST}:${dhtPort}`]
  const others = [node(t, secret, boot, 9101), node(t, secret, boot, 9102), node(t, secret, boot, 9103)]
  const added: number[] = []
  first.on('member-add', (m) => added.push(m.port))
  await Promise.all(others.map((n) => n.ready()))
  const all = [first, ...others]
  t.ok(await until(all, () => all.every((n) => n.members().length === 4)), 'every node sees four members')
  for (const n of all) t.alike(ports(n.members()), [9100, 9101, 9102, 9103], 'with the data ports they announced')
  t.alike(added.sort(), [9101, 9102, 9103], 'member-add once per other member')
  const self = first.members().filter((m) => m.self)
  t.is(self.length, 1, 'exactly one member is this node')
  for (const n of all) {
    t.ok(n.dht.bootstrapNodes.every((b) => b.host === HOST), 'bootstrap list is loopback only')
    t.is(n.dht.host === null ? HOST : n.dht.address().host, HOST, 'the DHT binds 127.0.0.1')
  }
})

test('a node with another secret on the same DHT sees no member and no member sees it', async (t) => {
  const secret = crypto.randomBytes(32)
  const dhtPort = await freeUdpPort()
  const first = node(t, secret, [], 9200, dhtPort)
  await first.ready()
  const boot = [`${HOST}:${dhtPort}`]
  const second = node(t, secret, boot, 9201)
  const outsider = node(t, crypto.randomBytes(32), boot, 9299)
  await Promise.all([second.ready(), outsider.ready()])
  t.ok(await until([first, second, outsider], () => first.members().length === 2 && second.members().length === 2), 'members find each other')
  await until([first, second, outsider], () => false, 3)
  t.alike(ports(outsider.members()), [9299], 'the outsider knows only itself')
  t.alike(ports(first.members()), [9200, 9201], 'members do not list the outsider')
  // Even with a member's public key, the record in the DHT is opaque without the secret.
  const member = first.members().find((m) => !m.self) as Member
  const rec = await outsider.dht.mutableGet(member.publicKey, { latest: true })
  t.ok(rec !== null, 'the outsider can fetch the raw record')
  t.absent(openRecord(deriveClusterKeys(crypto.randomBytes(32)).recordKey, member.publicKey, rec!.value), 'but cannot open it')
  t.is(rec!.value.indexOf(Buffer.from(HOST)), -1, 'the address is not in the clear')
  t.ok(openRecord(deriveClusterKeys(secret).recordKey, member.publicKey, rec!.value) !== null, 'a member can open it')
})

test('a record moved to another member key does not open', (t) => {
  const key = deriveClusterKeys(crypto.randomBytes(32)).recordKey
  const a = randomKeyPair().publicKey
  const rec = sealRecord(key, a, 0, { host: HOST, port: 1234 })
  t.alike(openRecord(key, a, rec)?.address, { host: HOST, port: 1234 })
  t.absent(openRecord(key, randomKeyPair().publicKey, rec))
  rec[rec.length - 1] ^= 1
  t.absent(openRecord(key, a, rec), 'a tampered record does not open')
})

test('a member that leaves cleanly is removed, and one that dies is removed once its record stops advancing', async (t) => {
  const secret = crypto.randomBytes(32)
  const dhtPort = await freeUdpPort()
  const first = node(t, secret, [], 9300, dhtPort)
  await first.ready()
  const boot = [`${HOST}:${dhtPort}`]
  const nodes = [first, node(t, secret, boot, 9301), node(t, secret, boot, 9302), node(t, secret, boot, 9303)]
  await Promise.all(nodes.slice(1).map((n) => n.ready()))
  t.ok(await until(nodes, () => nodes.every((n) => n.members().length === 4)), 'four members')
  const removed: number[] = []
  first.on('member-remove', (m) => removed.push(m.port))
  await nodes[3].destroy()
  const alive = nodes.slice(0, 3)
  t.ok(await until(alive, () => first.members().length === 3), 'a clean leave is seen')
  t.alike(removed, [9303])
  await nodes[2].destroy({ force: true })
  const survivors = nodes.slice(0, 2)
  t.ok(await until(survivors, () => survivors.every((n) => n.members().length === 2)), 'a dead member drops out after the ttl')
  t.alike(removed, [9303, 9302])
  t.alike(ports(nodes[1].members()), [9300, 9301])
})

test('the holders of an id are found through the DHT without a membership view, and only by members', async (t) => {
  const secret = crypto.randomBytes(32)
  const dhtPort = await freeUdpPort()
  const first = node(t, secret, [], 9400, dhtPort)
  await first.ready()
  const boot = [`${HOST}:${dhtPort}`]
  const nodes = [first, node(t, secret, boot, 9401), node(t, secret, boot, 9402), node(t, secret, boot, 9403)]
  const outsider = node(t, crypto.randomBytes(32), boot, 9499)
  await Promise.all([...nodes.slice(1), outsider].map((n) => n.ready()))
  const id = crypto.randomBytes(16)
  await nodes[1].announceHolding(id)
  await nodes[2].announceHolding(id)
  t.alike(ports(await nodes[3].findHolders(id)), [9401, 9402], 'a node that never refreshed its view finds both holders with addresses')
  t.alike(ports(await nodes[1].findHolders(id)), [9401, 9402], 'a holder finds itself and the other')
  t.alike(await outsider.findHolders(id), [], 'another secret gives another target: nothing')
  let raw = 0
  for await (const r of outsider.dht.lookup(Buffer.concat([id, Buffer.alloc(16)]))) raw += r.peers.length
  t.is(raw, 0, 'the raw id is not a DHT target')
  await nodes[2].unannounceHolding(id)
  t.alike(ports(await nodes[0].findHolders(id)), [9401], 'an unannounced holder is gone')
})
