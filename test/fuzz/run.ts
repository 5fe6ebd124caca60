// The fuzzer: `npm run fuzz -- [--minutes M | --inputs N] [--seed S] [--target NAME] [--write-corpus]`.
// Picks a target by weight, an input (a mutated seed from fixtures/fuzz/<target>/ or the
// target's own, or plain random bytes), runs it with a deadline, and watches memory. A finding
// (an unexpected exception, a hang, memory growth) is saved to fixtures/fuzz/findings/ and makes
// the run fail. Prints inputs per target and a last line `fuzz: N inputs, N findings`.
import fs from 'node:fs'
import path from 'node:path'
import { targets, Rng, mutate, type Target } from './targets'

const FIXTURES = path.join(__dirname, '..', '..', '..', 'fixtures', 'fuzz')
const DEADLINE_MS = 5000
const RSS_LIMIT = 1536 * 1024 * 1024

export interface FuzzOptions { inputs?: number, minutes?: number, seed: number, only?: string, log?: (line: string) => void }
export interface FuzzResult { inputs: number, findings: string[], perTarget: Record<string, number> }

function corpus (t: Target): Buffer[] {
  const dir = path.join(FIXTURES, t.name)
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).map((f) => fs.readFileSync(path.join(dir, f))) : []
  return [...t.seeds(), ...files]
}

export async function fuzz (opts: FuzzOptions): Promise<FuzzResult> {
  const log = opts.log ?? ((l: string) => { process.stdout.write(l + '\n') })
  const all = targets().filter((t) => opts.only === undefined || t.name === opts.only)
  if (all.length === 0) throw new Error(`no target ${opts.only ?? ''}`)
  const seeds = new Map(all.map((t) => [t.name, corpus(t)]))
  const totalWeight = all.reduce((a, t) => a + t.weight, 0)
  const rng = new Rng(opts.seed)
  const deadline = opts.minutes !== undefined ? Date.now() + opts.minutes * 60_000 : Infinity
  const limit = opts.inputs ?? (opts.minutes !== undefined ? Infinity : 10_000)
  const result: FuzzResult = { inputs: 0, findings: [], perTarget: Object.fromEntries(all.map((t) => [t.name, 0])) }
  const finding = (t: Target, input: Buffer, what: string): void => {
    const dir = path.join(FIXTURES, 'findings')
    fs.mkdirSync(dir, { recursive: true })
    const file = path.join(dir, `${t.name}-seed${opts.seed}-${result.inputs}.bin`)
    fs.writeFileSync(file, input)
    result.findings.push(`${t.name}: ${what.split('\n')[0]} (input saved to ${file})`)
    log(`FINDING ${t.name}: ${what}`)
  }
  try {
    while (result.inputs < limit && Date.now() < deadline) {
      let pick = (rng.next() / 0x100000000) * totalWeight
      const t = all.find((x) => (pick -= x.weight) < 0) ?? all[all.length - 1]
      const pool = seeds.get(t.name) as Buffer[]
      const input = rng.int(4) === 0 ? rng.bytes(rng.int(4096)) : mutate(rng, pool[rng.int(pool.length)])
      result.inputs++
      result.perTarget[t.name]++
      try {
        const r = t.run(input)
        if (r instanceof Promise) {
          let timer: NodeJS.Timeout | undefined
          await Promise.race([r, new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`hang: no answer in ${DEADLINE_MS} ms`)), DEADLINE_MS) })])
            .finally(() => clearTimeout(timer))
        }
      } catch (err) {
        finding(t, input, err instanceof Error ? err.message : String(err))
      }
      if (result.inputs % 20_000 === 0) {
        const rss = process.memoryUsage().rss
        if (rss > RSS_LIMIT) { finding(t, input, `memory: RSS ${Math.round(rss / 1048576)} MiB`); break }
      }
    }
  } finally {
    for (const t of all) await t.close?.()
  }
  for (const [name, n] of Object.entries(result.perTarget)) log(`  ${name.padEnd(24)} ${n}`)
  log(`fuzz: ${result.inputs} inputs, ${result.findings.length} findings`)
  return result
}

function writeCorpus (): void {
  for (const t of targets()) {
    const dir = path.join(FIXTURES, t.name)
    fs.mkdirSync(dir, { recursive: true })
    t.seeds().forEach((s, i) => fs.writeFileSync(path.join(dir, `seed-${i}.bin`), s))
  }
}

if (require.main === module) {
  const argv = process.argv.slice(2)
  const arg = (name: string): string | undefined => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : undefined }
  if (argv.includes('--write-corpus')) {
    writeCorpus()
  } else {
    const minutes = arg('minutes') !== undefined ? Number(arg('minutes')) : undefined
    const inputs = arg('inputs') !== undefined ? Number(arg('inputs')) : undefined
    fuzz({ minutes, inputs, seed: Number(arg('seed') ?? Date.now() % 100000), only: arg('target') })
      .then((r) => { process.exitCode = r.findings.length === 0 ? 0 : 1 }, (err) => { console.error(err); process.exitCode = 2 })
  }
}
