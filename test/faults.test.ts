// A short fixed-seed fault schedule on a real 6-node cluster (the long runs: npm run test:faults).
import test from 'brittle'
import { runFaults, schedule, verdict, FAULT_KINDS } from './faults/run'
import { clusterBasePort } from './helpers/env'

test('the same seed gives the same schedule, with every kind of fault', (t) => {
  t.alike(schedule(7, 600), schedule(7, 600))
  t.not(JSON.stringify(schedule(7, 600)), JSON.stringify(schedule(8, 600)))
  const kinds = new Set(schedule(7, 600).map((e) => e.kind))
  t.ok(FAULT_KINDS.every((k) => kinds.has(k)), 'a ten-minute schedule has every kind')
  // Issue 8 asks for at least 300 of each kind in 30 minutes: the schedule offers more, since an
  // event that would take a third node out waits for a slot.
  const half = schedule(20261202, 1800)
  for (const k of FAULT_KINDS) {
    const n = half.filter((e) => e.kind === k).length
    t.ok(n >= 330, `30 minutes schedule ${n} ${k} events`)
  }
  for (let i = 1; i < half.length; i++) if (half[i].at < half[i - 1].at) { t.fail('events in time order'); break }
})

test('fault schedule, seed 1, 90 s: nothing acknowledged is lost, no wrong bytes, no deleted object back, no debt left', { timeout: 900_000 }, async (t) => {
  const lines: string[] = []
  const s = await runFaults({ seed: 1, minutes: 1.5, basePort: clusterBasePort(), log: (l) => lines.push(l) })
  t.comment(`ops ${JSON.stringify(s.ops)}; faults ${JSON.stringify(s.faults)}; failed reads ${s.failedReads}`)
  // (A few each: on a loaded machine a 90 s run manages fewer than ten puts.)
  t.ok(s.ops.put > 3 && s.ops.get > 3 && s.ops.delete > 0, 'the CLI clients did work')
  t.ok(s.ops.fuseCreate > 0 && s.ops.fuseRead > 0, 'the client through the mount did work')
  for (const k of FAULT_KINDS) t.ok(s.faults[k] > 0, `${k} faults were injected (${s.faults[k]})`)
  t.alike(s.lost, [], 'lost 0')
  t.is(s.wrongReads, 0, 'wrong reads 0')
  t.alike(s.resurrected, [], 'resurrected 0')
  t.alike(s.debt, { objectsBelowN: 0, objectsUnreadable: 0, bytesToRepair: 0 }, 'durability debt back to 0')
  if (!verdict(s)) t.comment(lines.join('\n'))
})
