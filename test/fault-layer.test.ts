// The fault layer the fault schedule drives (src/cluster/fault-layer.ts), in one process: cut
// peers, delayed frames, failing and full devices, each turned on and off through the rules
// file. And behaviours the schedule found wanting, on in-process members: removed names stay
// removed, a put keeps the cluster's parity when few members are reachable, and a delete holds
// (refused when too few members are reachable; a stray tombstone completes it).
import test from 'brittle'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import crypto from 'node:crypto'
import { connect, listen, type SecureConnection } from '../src/cluster/transport'
import { randomKeyPair } from '../src/cluster/identity'
import { enableFaultLayer, PARTITION_DIAL_MS, type FaultLayer, type FaultRules } from '../src/cluster/fault-layer'
import { formatDevice, openDevice } from '../src/store/native-store'
import { DeviceFiller } from '../src/node/device-filler'
import { DeviceSite } from '../src/object/device-site'
import { MemoryStore } from '../src/store/memory-store'
import { Names } from '../src/object/names'
import { ClusterObjectStore, type HealingView } from '../src/object/cluster-object-store'
import { Healer } from '../src/node/healer'
import { Scrubber, ClusterCopies } from '../src/node/scrubber'
import { manifestRank } from '../src/cluster/placement'
import { ENTRY_DELETED, ENTRY_VERSION_BASE } from '../src/wire/messages'
import { Logger } from '../src/log'
import { EntryKind } from '../src/store/types'
import type { BlockStore } from '../src/store/types'
import type { DevicePool } from '../src/object/types'

const HOST = '127.0.0.1'
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-fault-layer-'))
const rulesFile = path.join(dir, 'rules-{port}.json')
process.env.DDFS_FAULT_FILE = rulesFile
const layer = enableFaultLayer(1) as FaultLayer
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Writes the rules as the schedule does (temp file, rename) and waits until the layer read them. */
async function rules (r: Partial<FaultRules>): Promise<void> {
  const file = rulesFile.replace('{port}', '1')
  fs.writeFileSync(`${file}.tmp`, JSON.stringify(r))
  fs.renameSync(`${file}.tmp`, file)
  const want = JSON.stringify({ cut: [], delayMs: 0, loss: 0, failWrites: [], fill: [], ...r })
  for (let i = 0; i < 50 && JSON.stringify(layer.rules) !== want; i++) await sleep(50)
}

process.on('exit', () => {
  layer.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

test('a cut peer cannot be dialled and its open connection is reset; healed, it can', async (t) => {
  const secret = crypto.randomBytes(32)
  const server = randomKeyPair()
  const accepted: SecureConnection[] = []
  const srv = await listen({ host: HOST, port: 0, secret, keyPair: server }, (c) => { accepted.push(c); c.on('frame', (f) => c.send(f)) })
  t.teardown(() => srv.close())
  const { port } = srv.address()
  const open = await connect({ host: HOST, port, secret, keyPair: randomKeyPair(), remotePublicKey: server.publicKey })
  const closed = new Promise<Error | null>((resolve) => open.once('close', resolve))
  await rules({ cut: [server.publicKey.toString('hex')] })
  t.ok((await closed)?.message.includes('partition'), 'the open connection was reset')
  const started = Date.now()
  await t.exception(connect({ host: HOST, port, secret, keyPair: randomKeyPair(), remotePublicKey: server.publicKey }), /partition/)
  t.ok(Date.now() - started >= PARTITION_DIAL_MS - 50, 'the dial failed as a connect timeout would')
  await rules({})
  const again = await connect({ host: HOST, port, secret, keyPair: randomKeyPair(), remotePublicKey: server.publicKey })
  again.close()
})

test('frames are delayed in order by delayMs', async (t) => {
  const secret = crypto.randomBytes(32)
  const server = randomKeyPair()
  const srv = await listen({ host: HOST, port: 0, secret, keyPair: server }, (c) => c.on('frame', (f) => c.send(f)))
  t.teardown(() => srv.close())
  const conn = await connect({ host: HOST, port: srv.address().port, secret, keyPair: randomKeyPair() })
  t.teardown(() => conn.close())
  await rules({ delayMs: 150 })
  const got: number[] = []
  const all = new Promise<void>((resolve) => conn.on('frame', (f) => { got.push(f.readUInt32LE(0)); if (got.length === 20) resolve() }))
  const started = Date.now()
  for (let i = 0; i < 20; i++) { const b = Buffer.alloc(4); b.writeUInt32LE(i); conn.send(b) }
  await all
  // Both ends are in this process, so each direction is delayed: about 300 ms for the echo.
  t.ok(Date.now() - started >= 290, `echo after ${Date.now() - started} ms`)
  t.alike(got, Array.from({ length: 20 }, (_, i) => i), 'in order')
  await rules({})
})

test('a device in failWrites fails writes with IO and still reads; a full device says DEVICE_FULL', async (t) => {
  const file = path.join(dir, 'dev.img')
  fs.writeFileSync(file, '')
  fs.truncateSync(file, 16 * 1024 * 1024)
  await formatDevice(file, { force: true })
  const store = await openDevice(file)
  t.teardown(() => store.close())
  const key = { id: crypto.randomBytes(16), kind: EntryKind.Fragment, stripe: 0, index: 0 }
  await store.put(key, Buffer.from('before'))
  await rules({ failWrites: [file] })
  await t.exception(store.put({ ...key, index: 1 }, Buffer.from('x')), /IO: /)
  t.alike(await store.read(key), Buffer.from('before'), 'reads still work')
  await rules({})
  await store.put({ ...key, index: 1 }, Buffer.from('after'))

  const filler = new DeviceFiller(() => [store], new Logger(null, 'test'))
  await filler.apply({ cut: [], delayMs: 0, loss: 0, failWrites: [], fill: [file] })
  t.ok(store.info().freeSize < 64 * 1024, `filled: ${store.info().freeSize} bytes free`)
  await t.exception(store.put({ ...key, index: 2 }, Buffer.alloc(256 * 1024)), /DEVICE_FULL: /)
  await filler.apply({ cut: [], delayMs: 0, loss: 0, failWrites: [], fill: [] })
  await store.put({ ...key, index: 2 }, Buffer.alloc(256 * 1024))
  t.alike(await store.read(key), Buffer.from('before'), 'entries survive a fill and its release')
})

test('a node whose device fails writes puts new entries on its other device', async (t) => {
  const a = new MemoryStore('a')
  const b = new MemoryStore('b')
  let failing = new Set<BlockStore>([a])
  for (const s of [a, b]) {
    const put = s.put.bind(s)
    s.put = async (k, d) => { if (failing.has(s)) throw new Error('IO: EIO'); return await put(k, d) }
  }
  const pool: DevicePool = { stores: () => [a, b] } as unknown as DevicePool
  const site = new DeviceSite(pool, 'n')
  for (let i = 0; i < 4; i++) await site.putEntry({ id: crypto.randomBytes(16), kind: EntryKind.Fragment, stripe: 0, index: i }, Buffer.from('x'))
  t.is(b.info().entries, 4, 'all on the device that works')
  failing = new Set([a, b])
  await t.exception(site.putEntry({ id: crypto.randomBytes(16), kind: EntryKind.Fragment, stripe: 0, index: 9 }, Buffer.from('x')), /IO: /, 'with none left it fails cleanly')
})

test('a manifest whose write was still in flight when its id got a tombstone does not stay live', async (t) => {
  // A put that failed on one holder leaves tombstones on the others while its writes there may
  // still be on their way: the mount listed such an object by id after its rm.
  const store = new MemoryStore('m')
  let release: () => void = () => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  const put = store.put.bind(store)
  store.put = async (k, d) => { if (k.kind === EntryKind.Manifest) await gate; return await put(k, d) }
  const site = new DeviceSite({ stores: () => [store] } as unknown as DevicePool, 'n')
  const id = crypto.randomBytes(16)
  const writing = site.putEntry({ id, kind: EntryKind.Manifest, stripe: 0, index: 0 }, Buffer.from('a manifest'))
  await site.removeId(id, true)
  release()
  await t.exception(writing, /NOT_FOUND: .*was deleted/, 'the late write is refused')
  t.is(store.stat({ id, kind: EntryKind.Manifest, stripe: 0, index: 0 }), null, 'and gone from the device')
  t.is(await site.getManifest(id), 'deleted', 'readers see the delete')
  t.absent((await site.listCatalog()).objects.some((o) => o.id.equals(id)), 'not listed')
})

test('a removed name stays removed when a holder that missed the removal keeps its older record', async (t) => {
  const stores = Array.from({ length: 4 }, (_, i) => new MemoryStore(`m${i}`))
  const all = stores.map((st, i) => new DeviceSite({ stores: () => [st] } as unknown as DevicePool, `s${i}`))
  let reachable = all
  const names = new Names(() => reachable, () => reachable)
  const older = crypto.randomBytes(16)
  await names.set('file', older)
  // One holder is away: it misses the newer record and the removal.
  reachable = all.filter((_s, i) => i !== 0)
  await names.set('file', crypto.randomBytes(16))
  await sleep(2)
  await names.remove('file')
  reachable = all
  t.is(await names.resolve('file'), null, 'the removal wins over the older record')
  t.ok(!(await names.catalog()).some((e) => e.name === 'file'), 'and the name is not listed')
})

test('a put keeps the cluster\'s parity when only some members are reachable', async (t) => {
  const stores = Array.from({ length: 6 }, (_, i) => new MemoryStore(`m${i}`))
  const members = stores.map((st, i) => ({ publicKey: crypto.createHash('sha256').update(`n${i}`).digest(), site: new DeviceSite({ stores: () => [st] } as unknown as DevicePool, `n${i}`) }))
  let reachable = members.length
  const store = new ClusterObjectStore({ members: () => members.slice(0, reachable), siteOf: (k) => members.find((m) => m.publicKey.equals(k))?.site ?? null, knownMembers: () => 6 })
  const put = async (): Promise<{ k: number, m: number }> => {
    const info = await store.put((async function * () { yield crypto.randomBytes(100_000) })(), { size: 100_000 })
    return { k: info.schema.k, m: info.schema.m }
  }
  t.alike(await put(), { k: 4, m: 2 })
  reachable = 5
  t.alike(await put(), { k: 3, m: 2 })
  reachable = 3
  t.alike(await put(), { k: 1, m: 2 }, 'three reachable of six: still two parity')
  reachable = 2
  await t.exception(put(), /UNAVAILABLE: /, 'two reachable: refused, not stored with less parity')
})

test('a name is acknowledged once every holder has it; a put whose name failed keeps its object', async (t) => {
  const stores = Array.from({ length: 6 }, (_, i) => new MemoryStore(`m${i}`))
  let failNames = new Set<number>()
  const members = stores.map((st, i) => {
    const site = new DeviceSite({ stores: () => [st] } as unknown as DevicePool, `n${i}`)
    const putEntry = site.putEntry.bind(site)
    // Nodes in failNames are away for name records only.
    site.putEntry = async (key, data) => {
      if (failNames.has(i) && key.kind === EntryKind.Name) throw new Error(`IO: n${i} is away`)
      return await putEntry(key, data)
    }
    return { publicKey: crypto.createHash('sha256').update(`n${i}`).digest(), site }
  })
  const names = new Names(() => [members[3].site, members[4].site, members[5].site], () => members.map((m) => m.site))
  failNames = new Set([5])
  await t.exception(names.set('file', crypto.randomBytes(16)), /UNAVAILABLE: 1 of the 3 nodes that hold the name 'file' could not store it/)
  failNames = new Set()
  const id = crypto.randomBytes(16)
  await names.set('file', id)
  for (const holder of [3, 4, 5]) {
    const alone = new Names(() => [members[holder].site], () => [members[holder].site])
    t.alike(await alone.resolve('file'), id, `holder n${holder} alone names the newest object`)
  }

  const store = new ClusterObjectStore({ members: () => members, siteOf: (k) => members.find((m) => m.publicKey.equals(k))?.site ?? null })
  failNames = new Set([0, 1, 2, 3, 4, 5])
  const data = crypto.randomBytes(100_000)
  const err = await store.put((async function * () { yield data })(), { size: data.length, name: 'doc' }).then(() => null, (e: Error) => e)
  failNames = new Set()
  const stored = /stored without its name: object ([0-9a-f]{32})/.exec(err?.message ?? '')
  if (stored === null) { t.fail(`the put did not say what it stored: ${err?.message ?? 'it succeeded'}`); return }
  const chunks: Buffer[] = []
  for await (const c of store.get(Buffer.from(stored[1], 'hex'))) chunks.push(c)
  t.alike(Buffer.concat(chunks), data, 'the object stays whole and readable: any record of the name points at an object that exists')
})

test('a new name goes out beside its (large) object; a name that stands for an object is repointed only once the new one is whole', async (t) => {
  const { members } = sixMembers()
  const events: string[] = []
  let failManifests = false
  for (const [i, m] of members.entries()) {
    const putEntry = m.site.putEntry.bind(m.site)
    m.site.putEntry = async (key, data) => {
      if (key.kind === EntryKind.Manifest) {
        await sleep(30)  // the object's write takes a while
        if (failManifests) throw new Error(`IO: n${i} failed`)
        await putEntry(key, data)
        events.push('manifest')
        return
      }
      await putEntry(key, data)
      if (key.kind === EntryKind.Name) events.push('name')
    }
  }
  const store = new ClusterObjectStore({ members: () => members, siteOf: (k) => members.find((m) => m.publicKey.equals(k))?.site ?? null })
  // Larger than INLINE_MAX: the object is fragments and manifests (a small one: see the next test).
  const put = async (name: string): Promise<{ id: string, replaced?: string | null }> => await store.put((async function * () { yield crypto.randomBytes(100_000) })(), { size: 100_000, name })
  const listed = async (name: string): Promise<string | undefined> => (await store.catalog()).find((e) => e.name === name)?.id.toString('hex')

  const first = await put('fresh')
  t.alike(events, ['name', 'name', 'name', 'manifest', 'manifest', 'manifest'], 'a new name: its three records before the object\'s manifests were done')
  t.is(first.replaced, null)
  t.is(await listed('fresh'), first.id)

  events.length = 0
  const second = await put('fresh')
  t.alike(events, ['manifest', 'manifest', 'manifest', 'name', 'name', 'name'], 'a name that stands for an object: its records only after the new object is whole')
  t.is(second.replaced, first.id, 'and the put says what it replaced')
  t.is(await listed('fresh'), second.id)

  failManifests = true
  await t.exception(put('lost'), /IO: /, 'a new name whose object could not be stored')
  failManifests = false
  t.is(await listed('lost'), undefined, 'is not listed: its records name no object')
  events.length = 0
  const retried = await put('lost')
  t.alike(events.slice(-3), ['name', 'name', 'name'], 'a retry finds the records and repoints them once its object is whole')
  t.is(await listed('lost'), retried.id)
})

test('a small create: a node that holds both its manifest and its name record takes them in one request and one commit', async (t) => {
  const { members, failing } = sixMembers()
  const calls: string[] = []
  for (const m of members) {
    for (const op of ['putCreate', 'putEntry', 'putNewName', 'putName'] as const) {
      const f = (m.site[op] as (...a: unknown[]) => Promise<unknown>).bind(m.site)
      ;(m.site as unknown as Record<string, unknown>)[op] = async (...a: unknown[]) => { calls.push(`${m.site.label} ${op}`); return await f(...a) }
    }
  }
  const store = new ClusterObjectStore({ members: () => members, siteOf: (k) => members.find((m) => m.publicKey.equals(k))?.site ?? null })
  const put = async (name: string, data: Buffer): Promise<{ id: string, replaced?: string | null }> => await store.put((async function * () { yield data })(), { size: data.length, name })
  const listed = async (name: string): Promise<string | undefined> => (await store.catalog()).find((e) => e.name === name)?.id.toString('hex')

  const data = crypto.randomBytes(4096)
  const created = await put('small', data)
  const holders = (await store.query(Buffer.from(created.id, 'hex'))).manifestHolders ?? []
  t.is(calls.filter((c) => c.endsWith(' putCreate')).length, 3, `three requests, each with both records (${calls.join(', ')})`)
  t.is(calls.length, 3, 'and nothing else')
  t.alike(calls.map((c) => c.split(' ')[0]).sort(), [...holders].sort(), 'to the object\'s manifest holders, who hold its name too')
  t.is(await listed('small'), created.id, 'listed under its name')
  const back: Buffer[] = []
  for await (const c of store.get(Buffer.from(created.id, 'hex'))) back.push(c)
  t.alike(Buffer.concat(back), data, 'and reads back')

  // A holder whose device fails: the create fails, and leaves no name in listings.
  const firstHolder = members.findIndex((m) => m.site.label === holders[0])
  failing.add(firstHolder)
  const err = await put('doomed', crypto.randomBytes(100)).then(() => null, (e: Error) => e)
  t.ok(err !== null && /IO: writing m\d failed/.test(err.message), `the create fails (${err?.message ?? 'it succeeded'})`)
  failing.clear()
  t.is(await listed('doomed'), undefined, 'not listed: no object of that name exists')
  const retried = await put('doomed', crypto.randomBytes(100))
  t.is(await listed('doomed'), retried.id, 'a retry names its own object')
})

/** Six (or `count`) in-process members, one memory device each; `failing` members' devices refuse writes (marks included). */
function sixMembers (count = 6): { members: Array<{ publicKey: Buffer, site: DeviceSite }>, failing: Set<number> } {
  const failing = new Set<number>()
  const members = Array.from({ length: count }, (_, i) => {
    const st = new MemoryStore(`m${i}`)
    const put = st.put.bind(st)
    const removeId = st.removeId.bind(st)
    const putMany = st.putMany.bind(st)
    st.put = async (k, d) => { if (failing.has(i)) throw new Error(`IO: writing m${i} failed: EIO`); return await put(k, d) }
    st.putMany = async (e) => { if (failing.has(i)) throw new Error(`IO: writing m${i} failed: EIO`); await putMany(e) }
    st.removeId = async (id, mark) => { if (failing.has(i) && mark !== undefined) throw new Error(`IO: writing m${i} failed: EIO`); return await removeId(id, mark) }
    return { publicKey: crypto.createHash('sha256').update(`n${i}`).digest(), site: new DeviceSite({ stores: () => [st] } as unknown as DevicePool, `n${i}`) }
  })
  return { members, failing }
}

/** Member `self`'s view of `members`, every one of them live. */
function liveView (members: Array<{ publicKey: Buffer, site: DeviceSite }>, self: number): HealingView {
  return {
    self: members[self],
    members: () => members,
    siteOf: (k) => members.find((m) => m.publicKey.equals(k))?.site ?? null,
    stateOf: () => 'live',
    describe: () => members.map((m, i) => ({ address: m.site.label, publicKey: m.publicKey.toString('hex'), self: i === self, state: 'live' as const }))
  }
}

test('a delete is acknowledged only once every manifest holder recorded it; a holder whose device fails keeps its manifest, never neither', async (t) => {
  const { members, failing } = sixMembers()
  const store = new ClusterObjectStore({ members: () => members, siteOf: (k) => members.find((m) => m.publicKey.equals(k))?.site ?? null })
  const data = crypto.randomBytes(100_000)
  const id = Buffer.from((await store.put((async function * () { yield data })(), { size: data.length })).id, 'hex')
  const holders = manifestRank(id, members).slice(0, 3)
  const failingHolder = members.indexOf(holders[2])
  failing.add(failingHolder)
  await t.exception(store.delete(id), /UNAVAILABLE: the delete of [0-9a-f]{32} was recorded on 2 of 3 manifest holders \(n\d: IO: writing m\d failed: EIO\)/)
  t.alike(await holders[2].site.entryStates(EntryKind.Manifest, [id]), [ENTRY_VERSION_BASE + 1], 'the holder that could not record the delete still holds its manifest')
  const notHolders = members.filter((m) => !holders.includes(m))
  const fragments = await Promise.all(notHolders.map(async (m) => (await m.site.listFragments(id)).length))
  t.ok(fragments.every((n) => n > 0), 'fragments are not removed before the delete is acknowledged')
  failing.clear()
})

test('a delete from a node that sees more than m members fewer than the cluster has is refused and deletes nothing', async (t) => {
  const { members } = sixMembers()
  let visible = members
  const store = new ClusterObjectStore({ members: () => visible, siteOf: (k) => members.find((m) => m.publicKey.equals(k))?.site ?? null, knownMembers: () => 6 })
  const data = crypto.randomBytes(100_000)
  const id = Buffer.from((await store.put((async function * () { yield data })(), { size: data.length })).id, 'hex')
  // Cut off from three of six (a 4+2 object, m = 2), the manifest holders among those it sees:
  // in another view the first m+1 holders of its view could all be nodes that the full cluster
  // does not make holders, and the delete would not hold.
  const holders = manifestRank(id, members).slice(0, 3)
  visible = holders
  await t.exception(store.delete(id), /UNAVAILABLE: only 3 of the cluster's 6 nodes are reachable from this node, and a delete needs all but 2; nothing was deleted/)
  const states = await Promise.all(members.map(async (m) => (await m.site.entryStates(EntryKind.Manifest, [id]))[0]))
  t.absent(states.includes(ENTRY_DELETED), 'no tombstone anywhere')
  t.is(states.filter((st) => st >= ENTRY_VERSION_BASE).length, 3, 'every manifest copy stays')
  visible = [...holders, members.find((m) => !holders.includes(m)) as typeof members[number]]
  await store.delete(id)
  await t.exception(store.query(id), /NOT_FOUND/, 'with m members away it is deleted')
})

/** A healer for member `self` of `members`, every one of them live. */
function healerOf (members: Array<{ publicKey: Buffer, site: DeviceSite }>, self: number): Healer {
  const view = liveView(members, self)
  return new Healer(view, new ClusterObjectStore(view), members[self].site, new Logger(null, 'test'),
    { intervalMs: 60_000, repairRate: 1e9, orphanGraceMs: 60_000, tombstoneTtlMs: 7 * 86400_000, settleMs: 0 })
}

test('a tombstone on a node that holds no copy reaches the manifest holders, and the object is deleted everywhere', async (t) => {
  const { members } = sixMembers(7)
  const store = new ClusterObjectStore(liveView(members, 0))
  const fragmentsOn = async (id: Buffer): Promise<number[]> => await Promise.all(members.map(async (m) => (await m.site.listFragments(id)).length))
  // The delete reached one node only, one that holds neither a fragment nor a manifest copy now
  // (it was a manifest holder in the deleting node's view). No holder's scan asks it. Objects
  // are put until one has such a member (placement is by id).
  let id = Buffer.alloc(0)
  let holders: typeof members = []
  let bystander = -1
  for (let i = 0; i < 50 && bystander < 0; i++) {
    const data = crypto.randomBytes(100_000)
    id = Buffer.from((await store.put((async function * () { yield data })(), { size: data.length, schema: { k: 4, m: 2 } })).id, 'hex')
    holders = manifestRank(id, members).slice(0, 3)
    bystander = (await fragmentsOn(id)).findIndex((n, j) => n === 0 && !holders.includes(members[j]))
  }
  if (bystander < 0) { t.fail('no object with a member that holds nothing of it'); return }
  await members[bystander].site.removeId(id, true)
  const leader = members.indexOf(holders[0])
  await healerOf(members, leader).scan()
  t.alike(await holders[0].site.entryStates(EntryKind.Manifest, [id]), [ENTRY_VERSION_BASE + 1], 'the leader alone does not see it')
  await healerOf(members, bystander).scan()
  for (const h of holders) t.alike(await h.site.entryStates(EntryKind.Manifest, [id]), [ENTRY_DELETED], `${h.site.label} holds the tombstone`)
  t.alike(await fragmentsOn(id), [0, 0, 0, 0, 0, 0, 0], 'and its fragments are gone')
  await t.exception(store.query(id), /NOT_FOUND/, 'the object stays deleted')
})

test('a leader whose rebuilt fragment is refused as deleted applies the delete', async (t) => {
  const { members } = sixMembers()
  const store = new ClusterObjectStore(liveView(members, 0))
  const data = crypto.randomBytes(100_000)
  const id = Buffer.from((await store.put((async function * () { yield data })(), { size: data.length })).id, 'hex')
  // A tombstone (and nothing else of the object) on a fragment holder that is no manifest holder:
  // the leader rebuilds that fragment there, and the node refuses it.
  const holders = manifestRank(id, members).slice(0, 3)
  const marked = members.find((m) => !holders.includes(m)) as typeof members[number]
  await marked.site.removeId(id, true)
  await healerOf(members, members.indexOf(holders[0])).scan()
  for (const h of holders) t.alike(await h.site.entryStates(EntryKind.Manifest, [id]), [ENTRY_DELETED], `${h.site.label} holds the tombstone`)
  const fragments = await Promise.all(members.map(async (m) => (await m.site.listFragments(id)).length))
  t.alike(fragments, [0, 0, 0, 0, 0, 0], 'no fragment left')
})

test('healing does not hand a manifest to a holder that lacks it while another member holds the tombstone', async (t) => {
  const { members } = sixMembers()
  const view = (self: number): HealingView => liveView(members, self)
  const store = new ClusterObjectStore(view(0))
  const data = crypto.randomBytes(100_000)
  const id = Buffer.from((await store.put((async function * () { yield data })(), { size: data.length })).id, 'hex')
  // A delete recorded while the first two manifest holders were away (the nodes it marked
  // ranked first in that view), and whose mark on the third did not last.
  const holders = manifestRank(id, members).slice(0, 3)
  const others = members.filter((m) => !holders.includes(m))
  await holders[2].site.removeId(id, false)
  for (const m of others) await m.site.removeId(id, true)
  const leader = members.indexOf(holders[0])
  const healer = new Healer(view(leader), new ClusterObjectStore(view(leader)), holders[0].site, new Logger(null, 'test'),
    { intervalMs: 60_000, repairRate: 1e9, orphanGraceMs: 60_000, tombstoneTtlMs: 7 * 86400_000, settleMs: 0 })
  await healer.scan()
  for (const h of holders) t.alike(await h.site.entryStates(EntryKind.Manifest, [id]), [ENTRY_DELETED], `${h.site.label} holds the tombstone`)
  await t.exception(store.query(id), /NOT_FOUND/, 'the object stays deleted')
  t.absent((await store.list(null, 100)).some((x) => x.equals(id)), 'and is not listed')
})

test('scrub applies a delete to a damaged manifest copy whose object the other holders deleted', async (t) => {
  const { members } = sixMembers()
  const view = (self: number): HealingView => liveView(members, self)
  const objects = new ClusterObjectStore(view(0))
  const data = crypto.randomBytes(100_000)
  const id = Buffer.from((await objects.put((async function * () { yield data })(), { size: data.length })).id, 'hex')
  const holders = manifestRank(id, members).slice(0, 3)
  // The first holder's copy is damaged (its block fails its hash), and it was away while the
  // object was deleted on the others: healing cannot read it, and there is no copy to restore.
  const damaged = holders[0].site.stores()[0]
  const read = damaged.read.bind(damaged)
  damaged.read = async (k, offset, length) => {
    if (k.kind === EntryKind.Manifest && k.id.equals(id)) throw new Error('CORRUPT: block hash mismatch')
    return await read(k, offset, length)
  }
  for (const h of holders.slice(1)) await h.site.removeId(id, true)
  const self = members.indexOf(holders[0])
  const scrubber = new Scrubber(holders[0].site, new ClusterCopies(view(self), new ClusterObjectStore(view(self))), new Logger(null, 'test'), { rate: 1e9, intervalMs: 60_000 })
  await scrubber.checkId(id)
  t.alike(await holders[0].site.entryStates(EntryKind.Manifest, [id]), [ENTRY_DELETED], 'the damaged copy is gone, the tombstone is here')
  t.is(damaged.list(id).filter((e) => e.key.kind === EntryKind.Manifest).length, 0, 'no manifest left on the device')
  t.is(scrubber.progress().repairFailures, 0, 'not a failed repair')
})
