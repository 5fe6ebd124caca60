// Command-line flags: each command declares its flags; anything else is refused with the
// closest valid flag named.
import { DdfsError } from '../errors'

export interface FlagSpec {
  name: string            // long name, without dashes
  short?: string          // one letter
  type: 'string' | 'number' | 'boolean'
  help: string
  default?: string | number | boolean
}

export type Flags = Record<string, string | number | boolean | undefined>

export function distance (a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0][j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
  }
  return d[a.length][b.length]
}

export function closest (word: string, candidates: string[]): string | null {
  let best: string | null = null
  let bestD = Infinity
  for (const c of candidates) {
    const dd = distance(word, c)
    if (dd < bestD) { bestD = dd; best = c }
  }
  return best !== null && bestD <= Math.max(2, Math.floor(word.length / 2)) ? best : null
}

export function parseFlags (argv: string[], specs: FlagSpec[], command: string): { flags: Flags, rest: string[] } {
  const flags: Flags = {}
  const rest: string[] = []
  for (const s of specs) if (s.default !== undefined) flags[s.name] = s.default
  const byLong = new Map(specs.map((s) => [s.name, s]))
  const byShort = new Map(specs.filter((s) => s.short !== undefined).map((s) => [s.short as string, s]))
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (!arg.startsWith('-') || arg === '-') { rest.push(arg); continue }
    let name = arg
    let inline: string | undefined
    const eq = arg.indexOf('=')
    if (arg.startsWith('--') && eq > 0) { name = arg.slice(0, eq); inline = arg.slice(eq + 1) }
    let spec: FlagSpec | undefined
    let negated = false
    if (name.startsWith('--')) {
      spec = byLong.get(name.slice(2))
      if (spec === undefined && name.startsWith('--no-')) { spec = byLong.get(name.slice(5)); negated = spec?.type === 'boolean' }
    } else if (name.length === 2) {
      spec = byShort.get(name.slice(1))
    }
    if (spec === undefined || (name.startsWith('--no-') && !negated && byLong.get(name.slice(2)) === undefined)) {
      const all = specs.flatMap((s) => [`--${s.name}`, ...(s.short !== undefined ? [`-${s.short}`] : [])])
      const near = closest(name, all)
      throw DdfsError.BAD_ARGUMENT(`unknown flag ${name} for 'ddfs ${command}'${near !== null ? `; did you mean ${near}?` : ''} (see ddfs ${command} --help)`)
    }
    if (spec.type === 'boolean') {
      flags[spec.name] = !negated
      continue
    }
    const value = inline ?? argv[++i]
    if (value === undefined) throw DdfsError.BAD_ARGUMENT(`${name} needs a value (see ddfs ${command} --help)`)
    if (spec.type === 'number') {
      const n = Number(value)
      if (!Number.isInteger(n) || n < 0) throw DdfsError.BAD_ARGUMENT(`${name} needs a non-negative integer, not '${value}'`)
      flags[spec.name] = n
    } else {
      flags[spec.name] = value
    }
  }
  return { flags, rest }
}

export function usage (specs: FlagSpec[]): string {
  return specs.map((s) => {
    const names = `${s.short !== undefined ? `-${s.short}, ` : '    '}--${s.name}${s.type === 'boolean' ? '' : ` <${s.type === 'number' ? 'n' : 'value'}>`}`
    const def = s.default !== undefined && s.type !== 'boolean' ? ` (default ${String(s.default)})` : ''
    return `  ${names.padEnd(28)} ${s.help}${def}`
  }).join('\n')
}
