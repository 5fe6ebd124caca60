// A short fixed-seed fault schedule on a real 6-node cluster (the long runs: npm run test:faults).
import test from 'brittle'
import { runFaults, schedule, verdict, FAULT_KINDS } from './faults/run'
import { clusterBasePort } from './helpers/env'

test('the same seed gives the same schedule, with every kind of fault', (t) => {
  t.alike(schedule(7, 600), schedule(7, 600))
  t.not(JSON.stringify(schedule(7, 600)), JSON.stringify(schedule(8, 600)))
  const kinds = new Set(schedule(7, 600).map((e) => e.kind))
  t.ok(FAULT_KINDS.every((k) => kinds.has(k)), 'a ten-minute schedule has every kind')
})

test('fault schedule, seed 1, 90 s: nothing acknowledged is lost, no wrong bytes, no deleted object back, no debt left', { timeout: 900_000 }, async (t) => {
  const lines: string[] = []
  const s = await runFaults({ seed: 1, minutes: 1.5, basePort: clusterBasePort(), log: (l) => lines.push(l) })
  t.comment(`ops ${JSON.stringify(s.ops)}; faults ${JSON.stringify(s.faults)}; failed reads ${s.failedReads}`)
  t.ok(s.ops.put > 10 && s.ops.get > 10 && s.ops.delete > 0, 'the clients did work')
  t.ok(Object.values(s.faults).reduce((a, b) => a + b, 0) >= 15, 'faults were injected')
  t.alike(s.lost, [], 'lost 0')
  t.is(s.wrongReads, 0, 'wrong reads 0')
  t.alike(s.resurrected, [], 'resurrected 0')
  t.alike(s.debt, { objectsBelowN: 0, objectsUnreadable: 0, bytesToRepair: 0 }, 'durability debt back to 0')
  if (!verdict(s)) t.comment(lines.join('\n'))
})
