// A short fixed-seed fuzz run over every decoder of outside input (the long one: npm run fuzz).
import test from 'brittle'
import { fuzz } from './fuzz/run'

test('fuzz smoke: 60,000 inputs across every decoder, no crash, hang or unbounded memory', { timeout: 300_000 }, async (t) => {
  const lines: string[] = []
  const r = await fuzz({ inputs: 60_000, seed: 1, log: (l) => lines.push(l) })
  t.comment(lines.join('\n'))
  t.is(r.inputs, 60_000)
  t.alike(r.findings, [], 'no findings')
  t.ok(Object.values(r.perTarget).every((n) => n > 0), 'every target ran')
})
