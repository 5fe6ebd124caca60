// Self-healing, decentralized: every node looks after the manifests and name records it holds.
// Each scan, for every manifest on this node, it asks the other manifest holders chosen by the
// current membership (one batched request per peer) what they hold, and then
//   - a tombstone anywhere: the delete is applied everywhere (a holder that was down missed it);
//   - this node is no longer among the holders (a node joined, or this one drains): it hands
//     its copy to the holders that lack it and drops its own;
//   - this node is the first holder that has the manifest: it leads the object. It asks the
//     fragment holders what they hold, keeps fragments where they are while their nodes are
//     live or down for less than --lost-after, and rebuilds or moves the rest onto the members
//     placement picks now (repairAssignment), objects closest to loss first, at --repair-rate.
//     Then it writes the manifest with the new holders and a higher version, and removes the
//     moved fragments' old copies.
// No coordinator: whoever holds the first copy leads, and placement is deterministic, so two
// nodes that briefly both lead write the same fragments to the same places. Name records are
// handed on the same way. Fragments that no manifest points at (a delete this node missed, a
// move it missed) are removed after --orphan-grace. A node gives its tombstones to members that
// still hold a manifest of the object (spreadTombstones), and removes them once every member has
// applied them (collectTombstones).
import { DdfsError } from '../errors'
import { EntryKind } from '../store/types'
import { manifestRank, nameRank, nameHash, repairAssignment, type PlacementMember } from '../cluster/placement'
import { decodeManifest, encodeManifest, keyOf, type Manifest } from '../object/records'
import { rebuildFragments, stripeCount, type FragmentWork } from '../object/repair'
import { stripeShape } from '../object/stripes'
import { NAME_COPIES } from '../object/names'
import { ENTRY_ABSENT, ENTRY_DELETED, ENTRY_VERSION_BASE, MAX_IDS, MAX_REBUILD_STRIPES, type RebuildMessage } from '../wire/messages'
import type { ClusterObjectStore, HealingView, ViewMember } from '../object/cluster-object-store'
import type { DeviceSite } from '../object/device-site'
import type { EntrySite } from '../object/types'
import type { Logger } from '../log'
import { RateLimiter, type ClientActivity } from './rate-limiter'
import { idPages } from '../store/walk'
import { noteTombstones } from './local-tombstones'

export interface HealerOptions {
  /** Pause between scans. */
  intervalMs: number
  /** Bytes per second of fragments written by repair (client traffic keeps the rest). */
  repairRate: number
  /** A fragment no manifest points at is removed once it has been an orphan this long. */
  orphanGraceMs: number
  /** A tombstone is kept at least this long after this process first saw it. */
  tombstoneTtlMs: number
  /**
   * After start, only deletes are applied for this long: the membership this node sees is still
   * filling in, and a partial view would make it lead (and move) objects it does not lead.
   */
  settleMs: number
}

/** What this node knows of the objects it leads: the parts of `ddfs status` durability. */
export interface DurabilityReport {
  objects: number
  objectsBelowN: number
  objectsBelowK1: number
  objectsUnreadable: number
  bytesToRepair: number
  repairedBytes: number
  repairedFragments: number
  rateBytesPerSec: number
  etaSeconds: number | null
  lastScanAt: number | null
  lastScanMs: number | null
  /** Tombstones on this node's devices at the last count (walkTombstones), and how many it removed since start. */
  tombstones: number
  tombstonesCollected: number
}

/** A member with less free space than this receives no rebuilt fragments. */
const MIN_FREE_BYTES = 64 * 1024 * 1024

/** A scan waits for clients to pause at most this many intervals after the last one started. */
const SCAN_DEFERRED_INTERVALS = 3

/** Objects repaired at once by one node (the stripes in flight are bounded per process anyway). */
const OBJECTS_IN_FLIGHT = 4

/** Tombstones checked per scan, at most: one EntryStates request per member. */
const TOMBSTONES_PER_SCAN = MAX_IDS
/**
 * Walking a device's ids for tombstones takes ~2.5 µs per id here (200,000 ids: 0.5 s), too much
 * for every scan of a full node; ages need no more precision than a tenth of --tombstone-ttl.
 */
const TOMBSTONE_WALK_MS = 60_000

/**
 * An object this node leads. `copies`: of an object inline in its manifest (no fragments), how
 * many of its m+1 manifest holders have the current copy, as last asked: its durability.
 */
interface Led { id: Buffer, manifest: Manifest, copies?: number }

interface Plan {
  id: Buffer
  manifest: Manifest
  healthy: number
  work: FragmentWork[]
  holders: Buffer[]
  /** Old copies to remove once the new manifest is out: [site, index]. */
  vacate: Array<[EntrySite, number]>
  bytes: number
}

export class Healer {
  private timer: NodeJS.Timeout | null = null
  private running: Promise<void> | null = null
  private closed = false
  private readonly limiter: RateLimiter
  private readonly manifests = new Map<string, Manifest>()  // by id hex, the newest this node has
  private readonly orphans = new Map<string, number>()      // fragment slot -> first seen orphaned
  private readonly tombstones = new Map<string, number>()   // id hex -> when this process first saw its tombstone
  private tombstoneCursor = ''                              // id hex: with many due, the next check starts after it
  private tombstonesWalkedAt = 0
  private report: DurabilityReport = {
    objects: 0, objectsBelowN: 0, objectsBelowK1: 0, objectsUnreadable: 0, bytesToRepair: 0, repairedBytes: 0, repairedFragments: 0,
    rateBytesPerSec: 0, etaSeconds: null, lastScanAt: null, lastScanMs: null, tombstones: 0, tombstonesCollected: 0
  }

  private scans = 0
  private readonly startedAt = Date.now()

  constructor (private readonly view: HealingView, private readonly objects: ClusterObjectStore, private readonly site: DeviceSite,
    private readonly log: Logger, private readonly opts: HealerOptions, private readonly clients?: ClientActivity) {
    this.limiter = new RateLimiter(opts.repairRate, clients)
  }

  start (): void {
    // The first scan soon after joining: a node back from downtime learns of deletes it missed
    // before its stale manifests linger in listings. A scan due while clients are active here
    // waits for a pause, up to SCAN_DEFERRED_INTERVALS intervals: it costs CPU in proportion to
    // what the node holds (~0.15 CPU s per 1,000 objects), which 2,000 small creates through a
    // mount paid in their latency.
    let lastScan = 0
    const tick = (ms: number): void => {
      this.timer = setTimeout(() => {
        if (lastScan !== 0 && this.clients?.active() === true && Date.now() - lastScan < SCAN_DEFERRED_INTERVALS * this.opts.intervalMs) {
          tick(Math.min(this.opts.intervalMs, 1000))
          return
        }
        lastScan = Date.now()
        this.scan().finally(() => { if (!this.closed) tick(this.opts.intervalMs) }).catch(() => {})
      }, ms)
    }
    tick(Math.min(this.opts.intervalMs, 1000))
  }

  async close (): Promise<void> {
    this.closed = true
    if (this.timer !== null) clearTimeout(this.timer)
    await this.running
  }

  durability (): DurabilityReport {
    return { ...this.report, rateBytesPerSec: Math.round(this.limiter.recentRate()) }
  }

  /** One pass over everything this node holds (runs every interval; concurrent calls share one). */
  scan (): Promise<void> {
    this.running ??= this.doScan().catch((err) => {
      this.log.warn('heal-scan-failed', { error: DdfsError.from(err).message })
    }).finally(() => { this.running = null })
    return this.running
  }

  private async doScan (): Promise<void> {
    const t0 = Date.now()
    const catalog = await this.site.listCatalog()
    const members = this.view.members()
    const settled = Date.now() - this.startedAt >= this.opts.settleMs
    const led = await this.tendManifests(catalog.objects.map((o) => o.id), members, settled)
    if (settled) {
      await this.tendNames(catalog.names.map((r) => nameHash(r.name)), members)
      await this.repair(led, members)
      await this.collectTombstones()
      if (++this.scans % 10 === 0) await this.collectOrphans()
    }
    this.report.lastScanAt = Date.now()
    this.report.lastScanMs = Date.now() - t0
  }

  // ---- manifests: deletes, hand-offs, leadership ----

  private async tendManifests (ids: Buffer[], members: ViewMember[], settled: boolean): Promise<Led[]> {
    const selfKey = this.view.self.publicKey
    const own = await this.site.entryStates(EntryKind.Manifest, ids)
    const desiredOf = new Map<string, ViewMember[]>()
    const led: Led[] = []
    for (let j = 0; j < ids.length; j++) {
      if (own[j] === ENTRY_DELETED) continue
      const manifest = await this.ownManifest(ids[j], own[j])
      if (manifest === null) continue
      desiredOf.set(ids[j].toString('hex'), manifestRank(ids[j], members).slice(0, manifest.m + 1))
    }
    const states = await this.askStates(EntryKind.Manifest, ids.filter((id) => desiredOf.has(id.toString('hex'))), (id) => desiredOf.get(id.toString('hex')) as ViewMember[])
    // Per id: what each holder has (this node: its own copy's version; absent: no answer).
    const answersOf = new Map<string, Array<number | undefined>>()
    for (const id of ids) {
      const hex = id.toString('hex')
      const desired = desiredOf.get(hex)
      const manifest = this.manifests.get(hex)
      if (desired === undefined || manifest === undefined) continue
      answersOf.set(hex, desired.map((d) => d.publicKey.equals(selfKey) ? ENTRY_VERSION_BASE + manifest.version : states.get(`${hex}/${d.publicKey.toString('hex')}`)))
    }
    const lacking = ids.filter((id) => {
      const answers = answersOf.get(id.toString('hex'))
      return answers !== undefined && answers.includes(ENTRY_ABSENT) && !answers.includes(ENTRY_DELETED)
    })
    const deletedElsewhere = await this.deletedElsewhere(lacking, desiredOf, members)
    for (const id of ids) {
      const hex = id.toString('hex')
      const desired = desiredOf.get(hex)
      const manifest = this.manifests.get(hex)
      const answers = answersOf.get(hex)
      if (desired === undefined || manifest === undefined || answers === undefined) continue
      try {
        if (answers.includes(ENTRY_DELETED) || deletedElsewhere.has(hex)) { await this.applyDelete(id, manifest, desired); continue }
        if (!settled) continue
        const newest = Math.max(...answers.map((a) => a ?? ENTRY_ABSENT))
        if (newest > ENTRY_VERSION_BASE + manifest.version) {
          // Healing elsewhere moved fragments since this copy was written: take the newer one.
          const from = desired[answers.indexOf(newest)]
          const body = await from.site.getManifest(id)
          if (body === null || body === 'deleted') continue
          await this.site.putEntry(keyOf(id, EntryKind.Manifest), body)
          this.manifests.set(hex, decodeManifest(body))
          continue
        }
        const mine = desired.findIndex((d) => d.publicKey.equals(selfKey))
        // Holders without this version get it (the leader, or a copy that is handing off).
        const firstHolder = answers.findIndex((a) => a !== undefined && a >= ENTRY_VERSION_BASE)
        if (mine < 0 || mine === firstHolder) {
          let body: Buffer | null = null  // encoded only when a holder lacks it (rare; every scan comes here)
          await Promise.all(desired.map(async (d, j) => {
            const a = answers[j]
            if (a === undefined || a >= ENTRY_VERSION_BASE + manifest.version) return
            try {
              body ??= encodeManifest(manifest)
              await d.site.putEntry(keyOf(id, EntryKind.Manifest), body)
              answers[j] = ENTRY_VERSION_BASE + manifest.version
            } catch (err) {
              // That holder cannot take it now (no room, gone, or it holds the tombstone, which
              // the next scan applies): it stays without, and a hand-off keeps its own copy
              // until every holder has one. Only the unexpected is logged (this repeats each scan).
              const e = DdfsError.from(err)
              if (!['UNAVAILABLE', 'NOT_FOUND', 'DEVICE_FULL'].includes(e.code)) this.log.warn('manifest-copy-failed', { id: hex, to: d.site.label, error: e.message })
            }
          }))
        }
        if (mine < 0) {
          if (answers.every((a) => a !== undefined && a >= ENTRY_VERSION_BASE + manifest.version)) {
            await this.site.removeSlot(id, EntryKind.Manifest, 0)
            this.manifests.delete(hex)
            this.log.info('manifest-handed-off', { id: hex })
          }
        } else if (mine === firstHolder) {
          const copies = answers.filter((a) => a !== undefined && a >= ENTRY_VERSION_BASE + manifest.version).length
          led.push(manifest.inline !== undefined ? { id, manifest, copies } : { id, manifest })
        }
      } catch (err) {
        this.log.warn('heal-object-failed', { id: hex, error: DdfsError.from(err).message })
      }
    }
    return led
  }

  /**
   * Of the ids `lacking` (a holder has no copy, and none a tombstone: it would get this node's
   * copy next), those some other member has a tombstone of. A holder without a copy may have
   * applied a delete whose tombstone did not last, or the delete may have been recorded by a
   * membership view in which these holders ranked lower: either way the copy must not spread
   * before this check.
   */
  private async deletedElsewhere (lacking: Buffer[], desiredOf: Map<string, ViewMember[]>, members: ViewMember[]): Promise<Set<string>> {
    const out = new Set<string>()
    if (lacking.length === 0) return out
    const othersOf = new Map(lacking.map((id) => {
      const desired = desiredOf.get(id.toString('hex')) as ViewMember[]
      return [id.toString('hex'), members.filter((mb) => !desired.some((d) => d.publicKey.equals(mb.publicKey)))]
    }))
    const states = await this.askStates(EntryKind.Manifest, lacking, (id) => othersOf.get(id.toString('hex')) as ViewMember[])
    for (const [hex, others] of othersOf) {
      if (others.some((mb) => states.get(`${hex}/${mb.publicKey.toString('hex')}`) === ENTRY_DELETED)) out.add(hex)
    }
    return out
  }

  /** Whether any of `members` holds a tombstone of the object. */
  private async tombstoneAmong (id: Buffer, members: ViewMember[]): Promise<boolean> {
    const states = await this.askStates(EntryKind.Manifest, [id], () => members)
    const hex = id.toString('hex')
    return members.some((mb) => states.get(`${hex}/${mb.publicKey.toString('hex')}`) === ENTRY_DELETED)
  }

  /** This node's copy of a manifest (cached by version); null when it is damaged (scrub repairs it). */
  private async ownManifest (id: Buffer, state: number): Promise<Manifest | null> {
    const hex = id.toString('hex')
    const cached = this.manifests.get(hex)
    if (cached !== undefined && ENTRY_VERSION_BASE + cached.version === state) return cached
    try {
      const body = await this.site.getManifest(id)
      if (body === null || body === 'deleted') return null
      const manifest = decodeManifest(body)
      this.manifests.set(hex, manifest)
      return manifest
    } catch {
      return null
    }
  }

  /**
   * Asks every peer in `sitesFor(id)` (this node aside) for its state of each id, one request
   * per peer and MAX_IDS ids. Map key: `${idHex}/${peerHex}`; a peer that did not answer is absent.
   */
  private async askStates (kind: number, ids: Buffer[], sitesFor: (id: Buffer) => ViewMember[]): Promise<Map<string, number>> {
    const perPeer = new Map<string, { member: ViewMember, ids: Buffer[] }>()
    for (const id of ids) {
      for (const d of sitesFor(id)) {
        if (d.publicKey.equals(this.view.self.publicKey)) continue
        const hex = d.publicKey.toString('hex')
        let p = perPeer.get(hex)
        if (p === undefined) perPeer.set(hex, p = { member: d, ids: [] })
        p.ids.push(id)
      }
    }
    const out = new Map<string, number>()
    await Promise.all([...perPeer].map(async ([peer, p]) => {
      for (let at = 0; at < p.ids.length; at += MAX_IDS) {
        const chunk = p.ids.slice(at, at + MAX_IDS)
        try {
          const states = await p.member.site.entryStates(kind, chunk)
          chunk.forEach((id, j) => out.set(`${id.toString('hex')}/${peer}`, states[j]))
        } catch (err) {
          this.log.warn('heal-peer-unanswered', { peer: p.member.site.label, error: DdfsError.from(err).message })
        }
      }
    }))
    return out
  }

  /** A holder saw a tombstone: the delete reaches this node and every holder that missed it. */
  private async applyDelete (id: Buffer, manifest: Manifest, desired: ViewMember[]): Promise<void> {
    const sites = new Set<EntrySite>([this.site, ...desired.map((d) => d.site), ...this.objects.fragmentSites(manifest).filter((s): s is EntrySite => s !== null)])
    await Promise.allSettled([...sites].map((s) => s.removeId(id, true)))
    this.manifests.delete(id.toString('hex'))
    this.log.info('delete-propagated', { id: id.toString('hex'), sites: sites.size })
  }

  // ---- fragments of the objects this node leads ----

  private async repair (led: Led[], members: ViewMember[]): Promise<void> {
    const counts = await this.fragmentCounts(led)
    // Fragments go only to members with room (a node whose last device was removed has none).
    const room = await Promise.all(members.map(async (m) => {
      try { return (await m.site.capacity()).free >= MIN_FREE_BYTES } catch { return false }
    }))
    const live = new Set(members.filter((_, i) => room[i]))
    const plans: Plan[] = []
    let belowN = 0
    let belowK1 = 0
    let unreadable = 0
    let bytes = 0
    for (const { id, manifest, copies } of led) {
      if (copies !== undefined) {
        // Inline: the manifest's copies are the object (tendManifests has just copied it to
        // the holders that lacked it; what is missing now is a holder that did not answer).
        const wanted = manifest.m + 1
        if (copies < wanted) { belowN++; bytes += (wanted - copies) * manifest.size }
        if (copies < 2) belowK1++
        continue
      }
      const plan = this.plan(id, manifest, members, live, counts)
      if (plan === null) continue
      const { k, m } = manifest
      if (plan.healthy < k + m) belowN++
      if (plan.healthy < k + 1) belowK1++
      if (plan.healthy < k) { unreadable++; continue }
      bytes += plan.bytes
      if (plan.work.length > 0) plans.push(plan)
    }
    this.report = {
      ...this.report, objects: led.length, objectsBelowN: belowN, objectsBelowK1: belowK1, objectsUnreadable: unreadable, bytesToRepair: bytes
    }
    // Closest to loss first; a few objects at once, so small objects do not wait on round trips.
    plans.sort((a, b) => (a.healthy - a.manifest.k) - (b.healthy - b.manifest.k))
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < plans.length && !this.closed) {
        const plan = plans[next++]
        try {
          await this.carryOut(plan)
          this.report.bytesToRepair = Math.max(0, this.report.bytesToRepair - plan.bytes)
          if (plan.healthy < plan.manifest.k + plan.manifest.m) this.report.objectsBelowN--
          if (plan.healthy < plan.manifest.k + 1) this.report.objectsBelowK1--
        } catch (err) {
          const e = DdfsError.from(err)
          // A target that refuses the fragment as deleted holds a tombstone this node's view of
          // the manifest holders did not show (the delete was recorded by another view).
          if (e.code === 'NOT_FOUND' && await this.tombstoneAmong(plan.id, members)) {
            await this.applyDelete(plan.id, plan.manifest, manifestRank(plan.id, members).slice(0, plan.manifest.m + 1))
            continue
          }
          this.log.warn('repair-failed', { id: plan.id.toString('hex'), error: e.message })
        }
      }
    }
    await Promise.all(Array.from({ length: OBJECTS_IN_FLIGHT }, worker))
    const rate = this.limiter.recentRate()
    this.report.etaSeconds = this.report.bytesToRepair === 0 ? 0 : rate > 0 ? Math.ceil(this.report.bytesToRepair / rate) : null
  }

  /** Per object: the fragments each holder has, as index -> count, from one request per holder. */
  private async fragmentCounts (led: Led[]): Promise<Map<string, Map<number, number>>> {
    const perHolder = new Map<string, { site: EntrySite, items: Led[] }>()
    for (const item of led) {
      for (const key of item.manifest.holders ?? []) {
        const site = this.view.siteOf(key)
        if (site === null) continue
        const hex = key.toString('hex')
        let h = perHolder.get(hex)
        if (h === undefined) perHolder.set(hex, h = { site, items: [] })
        if (h.items[h.items.length - 1] !== item) h.items.push(item)
      }
    }
    const out = new Map<string, Map<number, number>>()
    await Promise.all([...perHolder].map(async ([holder, h]) => {
      for (let at = 0; at < h.items.length; at += MAX_IDS) {
        const chunk = h.items.slice(at, at + MAX_IDS)
        try {
          const counts = await h.site.fragmentCounts(chunk.map((x) => x.id))
          chunk.forEach((x, j) => {
            const pairs = counts[j]
            const byIndex = new Map<number, number>()
            for (let p = 0; p + 1 < pairs.length; p += 2) byIndex.set(pairs[p], pairs[p + 1])
            out.set(`${x.id.toString('hex')}/${holder}`, byIndex)
          })
        } catch (err) {
          this.log.warn('heal-peer-unanswered', { peer: h.site.label, error: DdfsError.from(err).message })
        }
      }
    }))
    return out
  }

  private plan (id: Buffer, manifest: Manifest, members: ViewMember[], live: Set<ViewMember>, counts: Map<string, Map<number, number>>): Plan | null {
    const holders = manifest.holders
    if (holders === undefined) return null
    const n = manifest.k + manifest.m
    const stripes = stripeCount(manifest)
    const hex = id.toString('hex')
    const states = holders.map((key) => this.view.stateOf(key))
    const intact = holders.map((key, i) => (states[i] === 'live' || states[i] === 'draining') && counts.get(`${hex}/${key.toString('hex')}`)?.get(i) === stripes)
    const healthy = intact.filter(Boolean).length
    // A live holder that did not answer: nothing is known of its fragments this round.
    if (holders.some((key, i) => states[i] === 'live' && !counts.has(`${hex}/${key.toString('hex')}`))) return null
    // Where each fragment may stay: its holder while live or briefly down (not draining, not lost).
    const pool: ViewMember[] = [...members]
    const previous: Array<PlacementMember | null> = holders.map((key, i) => {
      if (states[i] === 'down' && !pool.some((p) => p.publicKey.equals(key))) pool.push({ publicKey: key, site: this.site })  // stays, never written to
      // A live holder that lost its copy and has no room for a new one gives the slot up.
      const keeps = states[i] === 'down' || (states[i] === 'live' && (intact[i] || members.some((m) => live.has(m) && m.publicKey.equals(key))))
      return keeps ? { publicKey: key } : null
    })
    const next = repairAssignment(id, pool, live, n, previous)
    const sources = holders.map((key, i) => intact[i] ? this.view.siteOf(key) : null)
    const work: FragmentWork[] = []
    const vacate: Array<[EntrySite, number]> = []
    const newHolders = holders.slice()
    let bytes = 0
    for (let i = 0; i < n; i++) {
      const to = next[i]
      if (to === null) continue
      const moved = !to.publicKey.equals(holders[i])
      if (!moved && (intact[i] || states[i] === 'down')) continue
      work.push({ index: i, from: moved ? sources[i] : null, to: to.site })
      newHolders[i] = to.publicKey
      const old = this.view.siteOf(holders[i])
      if (moved && old !== null) vacate.push([old, i])
      for (let s = 0; s < stripes; s++) bytes += stripeShape(manifest, s).fragLen
    }
    // Fragments whose holder is down are counted as bytes to repair, though waited for.
    for (let i = 0; i < n; i++) if (states[i] === 'down' && next[i]?.publicKey.equals(holders[i]) === true) for (let s = 0; s < stripes; s++) bytes += stripeShape(manifest, s).fragLen
    return { id, manifest, healthy, work, holders: newHolders, vacate, bytes }
  }

  private async carryOut (plan: Plan): Promise<void> {
    const { id, manifest } = plan
    const hex = id.toString('hex')
    const sources = (manifest.holders as Buffer[]).map((key) => this.view.siteOf(key))
    this.log.info('repair-started', { id: hex, fragments: plan.work.map((w) => `${w.index}->${w.to.label}`).join(' '), healthy: plan.healthy })
    const written = await this.moveFragments(plan, sources)
    // The version orders the manifest's copies: the newest wins everywhere. A time-based one,
    // so two nodes that briefly both led the object do not write two different manifests
    // under one version (the later one wins, and the other adopts it at its next scan).
    const next: Manifest = { ...manifest, version: Math.max(manifest.version + 1, Date.now()), holders: plan.holders }
    // Two leaders with different views (right after membership changes) plan different moves,
    // and each removes the copies its own plan vacated. The later manifest won even when it was
    // planned from an older one, and pointed readers at copies the other leader had removed (the
    // fault schedule lost an object that way). So: no manifest over a newer one than this plan
    // started from, and no removal of old copies unless ours is still the newest afterwards.
    if (await this.supersededSince(id, manifest.version)) {
      this.log.info('repair-superseded', { id: hex, version: manifest.version })
      return
    }
    const body = encodeManifest(next)
    await this.site.putEntry(keyOf(id, EntryKind.Manifest), body)
    // m+1 copies besides this one, down the manifest ranking past holders that cannot take one
    // (no room, unreachable): readers ask in that order and take the newest copy they meet.
    const ranked = manifestRank(id, this.view.members()).filter((d) => d.site !== this.site)
    let copies = 0
    for (let at = 0; at < ranked.length && copies < manifest.m;) {
      const batch = ranked.slice(at, at + manifest.m - copies)
      at += batch.length
      const results = await Promise.allSettled(batch.map((d) => d.site.putEntry(keyOf(id, EntryKind.Manifest), body)))
      copies += results.filter((r) => r.status === 'fulfilled').length
      // A holder that refuses it as deleted: the object was deleted meanwhile. Copies further
      // down the ranking would only be strays for healing to remove; the next scan applies the delete.
      if (results.some((r) => r.status === 'rejected' && DdfsError.from(r.reason).code === 'NOT_FOUND')) {
        this.log.info('repair-deleted', { id: hex })
        return
      }
    }
    this.manifests.set(hex, next)
    if (await this.supersededSince(id, next.version)) {
      this.log.info('repair-superseded', { id: hex, version: next.version })
    } else {
      await Promise.allSettled(plan.vacate.map(([site, index]) => site.removeSlot(id, EntryKind.Fragment, index)))
    }
    this.report.repairedFragments += plan.work.length * stripeCount(manifest)
    this.log.info('repaired', { id: hex, fragments: plan.work.map((w) => `${w.index}->${w.to.label}`).join(' '), bytes: written, version: next.version })
  }

  /**
   * Rebuilds and copies the plan's fragments. A fragment rebuilt for another node is rebuilt by
   * that node (a Rebuild request): it reads k fragments, where rebuilding it here and sending it
   * there takes k + 1 transfers. Copies (a joining or draining holder's intact fragments) and
   * this node's own slots are done here, and so is what a node fails to do itself.
   * Progress counts as it goes (status shows the bytes rebuilt so far).
   */
  private async moveFragments (plan: Plan, sources: Array<EntrySite | null>): Promise<number> {
    const { id, manifest } = plan
    const urgent = plan.healthy <= manifest.k
    const pace = async (b: number): Promise<void> => { this.report.repairedBytes += b; await this.limiter.take(b, urgent) }
    const here: FragmentWork[] = []
    const elsewhere = new Map<EntrySite, number[]>()
    for (const w of plan.work) {
      if (w.from === null && w.to !== this.site && w.to.rebuild !== undefined) elsewhere.set(w.to, [...(elsewhere.get(w.to) ?? []), w.index])
      else here.push(w)
    }
    const body = encodeManifest(manifest)
    const stripes = stripeCount(manifest)
    // Two requests in flight per node, so it does not idle between one request's last stripes
    // and the next one's first. A range the node fails to do is rebuilt here instead.
    const delegate = async (site: EntrySite, indices: number[]): Promise<number> => {
      let next = 0
      let written = 0
      let failed = false
      const worker = async (): Promise<void> => {
        while (next < stripes) {
          const first = next
          const count = Math.min(MAX_REBUILD_STRIPES, stripes - first)
          next += count
          if (!failed) {
            try {
              const bytes = await (site.rebuild as NonNullable<EntrySite['rebuild']>)(body, id, indices, first, count, urgent)
              this.report.repairedBytes += bytes
              written += bytes
              continue
            } catch (err) {
              if (!failed) this.log.warn('rebuild-delegation-failed', { id: id.toString('hex'), node: site.label, error: DdfsError.from(err).message })
              failed = true
            }
          }
          const rest = indices.map((index) => ({ index, from: null, to: site }))
          written += await rebuildFragments(id, manifest, rest, sources, pace, this.site, first, first + count)
        }
      }
      await Promise.all([worker(), worker()])
      return written
    }
    const parts = await Promise.all([rebuildFragments(id, manifest, here, sources, pace, this.site), ...[...elsewhere].map(async ([site, indices]) => await delegate(site, indices))])
    return parts.reduce((a, b) => a + b, 0)
  }

  /**
   * Another node leads an object and asks this one to rebuild fragment slots it now places here
   * (see moveFragments): stripes m.first.. of fragments m.indices, from k other fragments, paced
   * by this node's own repair rate. The manifest's XXH64 is checked on decoding, and every
   * fragment read is checked against its stripe hash, so a wrong request writes nothing.
   */
  async rebuildHere (body: Buffer, m: RebuildMessage): Promise<number> {
    const manifest = decodeManifest(body)
    const n = manifest.k + manifest.m
    const stripes = stripeCount(manifest)
    if (manifest.holders === undefined || manifest.holders.length !== n) throw DdfsError.BAD_ARGUMENT('a rebuild needs a cluster manifest with its holders')
    if (m.indices.length === 0 || m.indices.some((i) => !Number.isInteger(i) || i >= n) || new Set(m.indices).size !== m.indices.length) throw DdfsError.BAD_ARGUMENT(`bad fragment indices ${m.indices.join(',')} for ${n} fragments`)
    if (m.count < 1 || m.count > MAX_REBUILD_STRIPES || m.first + m.count > stripes) throw DdfsError.BAD_ARGUMENT(`stripes ${m.first}+${m.count} are not within the object's ${stripes}`)
    const sources = manifest.holders.map((key) => this.view.siteOf(key))
    const work = m.indices.map((index) => ({ index, from: null, to: this.site }))
    return await rebuildFragments(m.id, manifest, work, sources, async (b) => { await this.limiter.take(b, m.urgent) }, this.site, m.first, m.first + m.count)
  }

  /** Whether the holders have a manifest newer than `version` (or none could be read: unsure). */
  private async supersededSince (id: Buffer, version: number): Promise<boolean> {
    try {
      return (await this.objects.currentManifest(id)).version > version
    } catch {
      return true
    }
  }

  // ---- name records ----

  private async tendNames (hashes: Buffer[], members: ViewMember[]): Promise<void> {
    const selfKey = this.view.self.publicKey
    const desiredOf = (h: Buffer): ViewMember[] => nameRank(h, members).slice(0, NAME_COPIES)
    const own = await this.site.entryStates(EntryKind.Name, hashes)
    const states = await this.askStates(EntryKind.Name, hashes, desiredOf)
    for (let j = 0; j < hashes.length; j++) {
      const h = hashes[j]
      const hex = h.toString('hex')
      const desired = desiredOf(h)
      const answers = desired.map((d) => d.publicKey.equals(selfKey) ? own[j] : states.get(`${hex}/${d.publicKey.toString('hex')}`))
      const mine = desired.findIndex((d) => d.publicKey.equals(selfKey))
      const firstHolder = answers.findIndex((a) => a !== undefined && a >= ENTRY_VERSION_BASE)
      if (mine >= 0 && mine !== firstHolder) continue
      try {
        const key = keyOf(h, EntryKind.Name)
        // The record is read only for holders that lack this version: every scan visits every
        // name this node leads, and nearly always each holder has it already.
        const behind = desired.flatMap((_, d) => { const a = answers[d]; return a !== undefined && a < own[j] ? [d] : [] })
        if (behind.length > 0) {
          const { entry } = await this.site.getEntry(key)
          for (const d of behind) {
            try { await desired[d].site.putEntry(key, entry); answers[d] = own[j] } catch {}
          }
        }
        if (mine < 0 && answers.every((a) => a !== undefined && a >= own[j])) await this.site.removeSlot(h, EntryKind.Name, 0)
      } catch (err) {
        this.log.warn('heal-name-failed', { hash: hex, error: DdfsError.from(err).message })
      }
    }
  }

  // ---- tombstones ----

  /**
   * Removes the tombstones no member needs any more. A tombstone is what keeps a manifest copy
   * that missed the delete (on a node that was away) from bringing the object back, so one goes
   * only when this process has seen it for --tombstone-ttl, every member this node knows of is
   * in the view now (one that is away may hold such a copy), and every member, not only the
   * object's holders (placement changes), answers that it holds the tombstone or no manifest.
   * A member that collected its own answers "absent": as good, it holds nothing to bring back.
   * A restart starts the clock again, which only delays collection.
   */
  private async collectTombstones (): Promise<void> {
    const now = Date.now()
    if (now - this.tombstonesWalkedAt >= Math.min(this.opts.tombstoneTtlMs / 10, TOMBSTONE_WALK_MS)) {
      await this.walkTombstones(now)
      this.tombstonesWalkedAt = now
      await this.spreadTombstones()
    }
    const roster = this.view.describe()
    if (roster.some((m) => m.state !== 'live' && m.state !== 'draining')) return
    let due: string[] = []
    for (const [hex, since] of this.tombstones) if (now - since >= this.opts.tombstoneTtlMs) due.push(hex)
    if (due.length > TOMBSTONES_PER_SCAN) {
      // In turns: ids some member still holds a manifest of do not hold up the others.
      due.sort()
      const from = Math.max(0, due.findIndex((hex) => hex > this.tombstoneCursor))
      due = due.slice(from, from + TOMBSTONES_PER_SCAN)
      this.tombstoneCursor = due[due.length - 1]
    }
    if (due.length === 0) return
    // Only those still here: the map is as old as the last walk.
    const own = await this.site.entryStates(EntryKind.Manifest, due.map((hex) => Buffer.from(hex, 'hex')))
    due = due.filter((hex, j) => {
      if (own[j] === ENTRY_DELETED) return true
      this.tombstones.delete(hex)
      return false
    })
    if (due.length === 0) return
    const others: ViewMember[] = []
    for (const m of roster) {
      if (m.self) continue
      const publicKey = Buffer.from(m.publicKey, 'hex')
      const site = this.view.siteOf(publicKey)
      if (site === null) return  // it left the view just now
      others.push({ publicKey, site })
    }
    const ids = due.map((hex) => Buffer.from(hex, 'hex'))
    // A member that did not answer (error, timeout) has no state in the map: the tombstone stays.
    const states = await this.askStates(EntryKind.Manifest, ids, () => others)
    for (const id of ids) {
      const hex = id.toString('hex')
      const applied = others.every((m) => {
        const a = states.get(`${hex}/${m.publicKey.toString('hex')}`)
        return a === ENTRY_DELETED || a === ENTRY_ABSENT
      })
      if (!applied) continue
      try {
        // The whole id, not only the tombstone: whatever else of a deleted object is here is garbage.
        await this.site.removeId(id, false)
        this.tombstones.delete(hex)
        this.report.tombstonesCollected++
        this.log.info('tombstone-collected', { id: hex })
      } catch (err) {
        this.log.warn('tombstone-collect-failed', { id: hex, error: DdfsError.from(err).message })
      }
    }
    this.report.tombstones = this.tombstones.size
  }

  /**
   * Gives this node's tombstones to every member that still holds a manifest of the object. A
   * delete that reached only some of the holders (the deleting node was told UNAVAILABLE), or
   * whose holders ranked differently in the deleting node's view, can leave its tombstones on
   * nodes that are no manifest holders now; the holders' scans would never meet them, and the
   * object would stay, half deleted (reads that ask a tombstone holder answer NOT_FOUND). Once
   * a holder has the tombstone, its object's leader applies the delete everywhere. Object ids
   * are never reused, so a tombstone is always right to spread.
   */
  private async spreadTombstones (): Promise<void> {
    if (this.tombstones.size === 0) return
    const members = this.view.members().filter((m) => !m.publicKey.equals(this.view.self.publicKey))
    const ids = [...this.tombstones.keys()].map((hex) => Buffer.from(hex, 'hex'))
    const states = await this.askStates(EntryKind.Manifest, ids, () => members)
    for (const id of ids) {
      const hex = id.toString('hex')
      const behind = members.filter((m) => (states.get(`${hex}/${m.publicKey.toString('hex')}`) ?? 0) >= ENTRY_VERSION_BASE)
      if (behind.length === 0) continue
      // Its fragments go too (else they wait for --orphan-grace): the holders' manifest names them.
      const sites = new Set<EntrySite>(behind.map((m) => m.site))
      try {
        const body = await behind[0].site.getManifest(id)
        if (body !== null && body !== 'deleted') for (const s of this.objects.fragmentSites(decodeManifest(body))) if (s !== null) sites.add(s)
      } catch {}
      const results = await Promise.allSettled([...sites].map((s) => s.removeId(id, true)))
      this.log.info('tombstone-spread', { id: hex, to: behind.map((m) => m.site.label).join(' '), sites: sites.size, failed: results.filter((r) => r.status === 'rejected').length })
    }
  }

  /** Notes when each tombstone on this node's devices was first seen; forgets those gone. */
  private async walkTombstones (now: number): Promise<void> {
    await noteTombstones(this.site.stores(), this.tombstones, now)
    this.report.tombstones = this.tombstones.size
  }

  // ---- orphans ----

  /**
   * Fragments here that the object's manifest does not place here: left by a delete or a move
   * this node missed while it was away. Removed when still orphaned after the grace period
   * (a put or a repair writes fragments before the manifest that points at them).
   */
  private async collectOrphans (): Promise<void> {
    const selfKey = this.view.self.publicKey
    const seen = new Set<string>()
    for (const store of this.site.stores()) {
      for (const ids of idPages(store)) {
        for (const id of ids) {
          const indices = new Set(store.list(id).filter((e) => e.key.kind === EntryKind.Fragment).map((e) => e.key.index))
          if (indices.size === 0) continue
          let manifest: Manifest | null
          try {
            manifest = await this.objects.currentManifest(id)
          } catch (err) {
            if (DdfsError.from(err).code !== 'NOT_FOUND') continue  // cannot tell now
            manifest = null
          }
          for (const index of indices) {
            if (manifest?.holders?.[index]?.equals(selfKey) === true) continue
            const slot = `${id.toString('hex')}/${index}`
            seen.add(slot)
            const since = this.orphans.get(slot)
            if (since === undefined) { this.orphans.set(slot, Date.now()); continue }
            if (Date.now() - since < this.opts.orphanGraceMs) continue
            await this.site.removeSlot(id, EntryKind.Fragment, index)
            this.orphans.delete(slot)
            this.log.info('orphan-removed', { id: id.toString('hex'), index, reason: manifest === null ? 'no manifest (deleted)' : 'placed elsewhere' })
          }
        }
      }
    }
    for (const slot of this.orphans.keys()) if (!seen.has(slot)) this.orphans.delete(slot)
  }
}
