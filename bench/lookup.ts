// How many messages and how long it takes to find the holders of an object id through the DHT,
// as the DHT grows: 10, 100 and 1,000 real HyperDHT nodes (UDP on 127.0.0.1, one process), and a
// simulation of the same Kademlia lookup (k = 20 buckets, 10 requests in flight, XOR distance,
// stop when the k closest known nodes have all answered) for 10 ... 100,000 nodes.
//
//   npm run bench:lookup            BENCH_LOOKUP_SIZES=10,100,1000  BENCH_LOOKUP_TRIALS=20
//
// RESULT lookup.<N>.messages   median requests of one complete lookup (what dht-rpc sends)
// RESULT lookup.<N>.holders_messages  median requests sent (answered or in flight) until all holders were found
// RESULT lookup.<N>.ms         median time until all holders were found
// RESULT lookup.sim.<N>.messages / .rounds   the simulation (rounds = sequential hops)
import crypto from 'node:crypto'
import createTestnet from 'hyperdht/testnet'

const SIZES = (process.env.BENCH_LOOKUP_SIZES ?? '10,100,1000').split(',').map(Number)
const SIM_SIZES = [10, 100, 1000, 10_000, 100_000]
const TRIALS = Number(process.env.BENCH_LOOKUP_TRIALS ?? 20)
const HOLDERS = 3 // m + 1 manifest holders for 4+2

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

async function real (n: number): Promise<void> {
  const started = Date.now()
  const testnet = await createTestnet(n, { host: '127.0.0.1' })
  const build = Date.now() - started
  // Let the routing tables settle past the bootstrap burst.
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const full: number[] = []
  const toHolders: number[] = []
  const ms: number[] = []
  const fullMs: number[] = []
  try {
    for (let trial = 0; trial < TRIALS; trial++) {
      const id = crypto.randomBytes(32)
      const order = [...testnet.nodes.keys()].sort(() => Math.random() - 0.5)
      const holders = order.slice(0, Math.min(HOLDERS, n - 1)).map((i) => testnet.nodes[i])
      for (const h of holders) await h.announce(id, h.defaultKeyPair).finished()
      const querier = testnet.nodes[order[order.length - 1]]
      const q = querier.lookup(id)
      const want = new Set(holders.map((h) => h.defaultKeyPair.publicKey.toString('hex')))
      const t0 = process.hrtime.bigint()
      let foundAt: number | null = null
      let foundMsgs = 0
      for await (const reply of q) {
        for (const p of reply.peers) want.delete(p.publicKey.toString('hex'))
        if (foundAt === null && want.size === 0) {
          foundAt = Number(process.hrtime.bigint() - t0) / 1e6
          foundMsgs = q.successes + q.errors + q.inflight
        }
      }
      fullMs.push(Number(process.hrtime.bigint() - t0) / 1e6)
      full.push(q.successes + q.errors + q.inflight)
      if (foundAt === null) {
        console.log(`# ${n} nodes, trial ${trial}: holders not all found`)
        continue
      }
      ms.push(foundAt)
      toHolders.push(foundMsgs)
    }
  } finally {
    await testnet.destroy()
  }
  console.log(`# ${n} real DHT nodes: built in ${build} ms; ${ms.length}/${TRIALS} lookups found all ${HOLDERS} holders; full lookup median ${median(fullMs).toFixed(2)} ms`)
  console.log(`RESULT lookup.${n}.messages ${median(full)} messages`)
  console.log(`RESULT lookup.${n}.holders_messages ${median(toHolders)} messages`)
  console.log(`RESULT lookup.${n}.ms ${median(ms).toFixed(2)} ms`)
}

// ---- simulation: 64-bit ids, per-node k-buckets filled as a settled DHT's would be ----------

const K = 20
const ALPHA = 10
const BITS = 64n

function rand64 (): bigint {
  return crypto.randomBytes(8).readBigUInt64BE(0)
}

class SimDht {
  readonly ids: bigint[]
  private readonly tables = new Map<number, number[]>()
  messages = 0

  constructor (n: number) {
    const set = new Set<bigint>()
    while (set.size < n) set.add(rand64())
    this.ids = [...set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  }

  /** Index of the first id >= x. */
  private lowerBound (x: bigint): number {
    let lo = 0
    let hi = this.ids.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (this.ids[mid] < x) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** Node i's routing table: for each shared-prefix length b, up to K random nodes of that bucket. */
  table (i: number): number[] {
    let t = this.tables.get(i)
    if (t !== undefined) return t
    t = []
    const x = this.ids[i]
    for (let b = 0n; b < BITS; b++) {
      const shift = BITS - 1n - b
      const prefix = (x >> shift) ^ 1n
      const lo = this.lowerBound(prefix << shift)
      const hi = this.lowerBound((prefix + 1n) << shift) // BigInt: no overflow past 2^64
      const count = hi - lo
      if (count <= 0) continue
      if (count <= K) for (let j = lo; j < hi; j++) t.push(j)
      else {
        const picked = new Set<number>()
        while (picked.size < K) picked.add(lo + Math.floor(Math.random() * count))
        t.push(...picked)
      }
    }
    this.tables.set(i, t)
    return t
  }

  closest (candidates: Iterable<number>, target: bigint, k: number): number[] {
    return [...candidates].sort((a, b) => {
      const da = this.ids[a] ^ target
      const db = this.ids[b] ^ target
      return da < db ? -1 : da > db ? 1 : 0
    }).slice(0, k)
  }

  /** Iterative lookup from node `from`; returns [messages, rounds, found the true closest]. */
  lookup (from: number, target: bigint): { messages: number, rounds: number, exact: boolean } {
    const seen = new Set<number>(this.closest(this.table(from), target, K))
    const queried = new Set<number>()
    let messages = 0
    let rounds = 0
    for (;;) {
      const best = this.closest(seen, target, K)
      const next = best.filter((x) => !queried.has(x)).slice(0, ALPHA)
      if (next.length === 0) break
      rounds++
      for (const x of next) {
        queried.add(x)
        messages++
        for (const y of this.closest(this.table(x), target, K)) seen.add(y)
      }
    }
    const truth = this.closest(this.ids.keys(), target, 1)[0]
    return { messages, rounds, exact: seen.has(truth) }
  }
}

function simulate (n: number): void {
  const dht = new SimDht(n)
  const msgs: number[] = []
  const rounds: number[] = []
  let exact = 0
  const t0 = Date.now()
  for (let i = 0; i < TRIALS * 5; i++) {
    const r = dht.lookup(Math.floor(Math.random() * n), rand64())
    msgs.push(r.messages)
    rounds.push(r.rounds)
    if (r.exact) exact++
  }
  console.log(`# simulated ${n} nodes: ${exact}/${TRIALS * 5} lookups reached the closest node, ${Date.now() - t0} ms`)
  console.log(`RESULT lookup.sim.${n}.messages ${median(msgs)} messages`)
  console.log(`RESULT lookup.sim.${n}.rounds ${median(rounds)} rounds`)
}

async function main (): Promise<void> {
  console.log(`# ${TRIALS} lookups per size, ${HOLDERS} holders announced per object, 127.0.0.1`)
  for (const n of SIZES) await real(n)
  for (const n of SIM_SIZES) simulate(n)
}

main().catch((err) => { console.error(err); process.exitCode = 1 })
