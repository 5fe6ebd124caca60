// Scrub: every entry on this node's devices is read back and checked against its XXH64s, in the
// background at --scrub-rate, one pass every --scrub-interval. A damaged entry is rebuilt in
// place: a fragment from k other fragments of its stripe, a manifest or name record from an
// intact copy. In a cluster those come from the other holders (ClusterCopies); on a standalone
// node from its other devices (LocalCopies), which hold the other fragments of each stripe and
// m more copies of each manifest. A reader that meets a damaged fragment asks for the same
// check of that object at once (Scrub request, or the standalone store's onCorrupt).
import { DdfsError } from '../errors'
import { EntryKind } from '../store/types'
import type { BlockStore, EntryKey } from '../store/types'
import { manifestRank, nameRank } from '../cluster/placement'
import { decodeManifest, decodeNameRecord, TOMBSTONE_KIND } from '../object/records'
import { rebuildOne } from '../object/repair'
import type { ClusterObjectStore, HealingView } from '../object/cluster-object-store'
import type { LocalObjectStore } from '../object/local-object-store'
import type { DeviceSite } from '../object/device-site'
import type { Logger } from '../log'
import { RateLimiter, type ClientActivity } from './rate-limiter'
import { idPages } from '../store/walk'

/** Where a damaged entry's intact bytes come from. */
export interface CopySource {
  /**
   * The bytes of the entry `key` (damaged on `damaged`), rebuilt or copied and checked;
   * 'deleted' when the object was deleted meanwhile.
   */
  intactCopy (key: EntryKey, damaged: BlockStore): Promise<Buffer | 'deleted'>
}

export interface ScrubberOptions {
  /** Bytes per second read by the background pass. */
  rate: number
  /** Pause between the end of one pass and the start of the next. */
  intervalMs: number
}

export interface ScrubReport {
  passes: number
  entriesChecked: number
  bytesChecked: number
  damagedFound: number
  repaired: number
  repairFailures: number
  /** Fraction of the current pass done (by object id order), 0..1. */
  passProgress: number
  lastPassAt: number | null
}

export class Scrubber {
  private timer: NodeJS.Timeout | null = null
  private closed = false
  private running: Promise<void> | null = null
  private readonly limiter: RateLimiter
  private readonly report: ScrubReport = {
    passes: 0, entriesChecked: 0, bytesChecked: 0, damagedFound: 0, repaired: 0, repairFailures: 0, passProgress: 0, lastPassAt: null
  }

  constructor (private readonly site: DeviceSite, private readonly copies: CopySource,
    private readonly log: Logger, private readonly opts: ScrubberOptions, clients?: ClientActivity) {
    this.limiter = new RateLimiter(opts.rate, clients)
  }

  start (): void {
    const tick = (): void => {
      this.timer = setTimeout(() => {
        this.running = this.pass().catch((err) => this.log.warn('scrub-pass-failed', { error: DdfsError.from(err).message }))
          .finally(() => { this.running = null; if (!this.closed) tick() })
      }, this.opts.intervalMs)
    }
    tick()
  }

  async close (): Promise<void> {
    this.closed = true
    if (this.timer !== null) clearTimeout(this.timer)
    await this.running
  }

  progress (): ScrubReport {
    return { ...this.report }
  }

  /** Checks every entry of `id` on this node now (no rate limit) and rebuilds the damaged ones. */
  async checkId (id: Buffer): Promise<void> {
    for (const store of this.site.stores()) await this.checkEntries(store, id, false)
  }

  private async pass (): Promise<void> {
    for (const store of this.site.stores()) {
      for (const ids of idPages(store)) {
        for (const id of ids) {
          if (this.closed) return
          await this.checkEntries(store, id, true)
        }
        this.report.passProgress = ids[ids.length - 1].readUInt32BE(0) / 0x100000000
      }
    }
    this.report.passes++
    this.report.passProgress = 0
    this.report.lastPassAt = Date.now()
  }

  private async checkEntries (store: BlockStore, id: Buffer, paced: boolean): Promise<void> {
    for (const e of store.list(id)) {
      if (e.length === 0 || (e.key.kind as number) === TOMBSTONE_KIND) continue
      if (paced) await this.limiter.take(e.length)
      try {
        await store.read(e.key)
        this.report.entriesChecked++
        this.report.bytesChecked += e.length
      } catch (err) {
        const error = DdfsError.from(err)
        if (error.code !== 'CORRUPT') continue  // removed meanwhile, or the device is failing (reported by reads)
        this.report.damagedFound++
        this.site.damaged(e.key)
        this.log.warn('scrub-damaged', { device: store.path, id: id.toString('hex'), kind: e.key.kind, stripe: e.key.stripe, index: e.key.index, error: error.message })
        try {
          const copy = await this.copies.intactCopy(e.key, store)
          if (copy === 'deleted') {
            // Deleted while this copy was damaged (or while this node was away): no copy to
            // restore, and healing skips a manifest it cannot read, so the delete is applied here.
            await this.site.removeId(id, true)
            this.report.repaired++
            this.log.info('scrub-applied-delete', { device: store.path, id: id.toString('hex') })
            return
          }
          await this.site.putEntryOn(store, e.key, copy)  // (so the site's catalog and manifests see the copy)
          this.report.repaired++
          this.log.info('scrub-repaired', { device: store.path, id: id.toString('hex'), kind: e.key.kind, stripe: e.key.stripe, index: e.key.index })
        } catch (err2) {
          this.report.repairFailures++
          this.log.error('scrub-repair-failed', { id: id.toString('hex'), kind: e.key.kind, error: DdfsError.from(err2).message })
        }
      }
    }
  }
}

/** A cluster node's copies: fragments rebuilt from the other holders, records from another holder. */
export class ClusterCopies implements CopySource {
  constructor (private readonly view: HealingView, private readonly objects: ClusterObjectStore) {}

  /** 'deleted' when a holder of the manifest has the object's tombstone. */
  async intactCopy (key: EntryKey): Promise<Buffer | 'deleted'> {
    const selfKey = this.view.self.publicKey
    if (key.kind === EntryKind.Fragment) {
      const manifest = await this.objects.currentManifest(key.id)
      const sources = this.objects.fragmentSites(manifest).map((s, i) => i === key.index ? null : s)
      return await rebuildOne(key.id, manifest, key.stripe, key.index, sources)
    }
    const others = (key.kind === EntryKind.Manifest ? manifestRank(key.id, this.view.members()) : nameRank(key.id, this.view.members()))
      .filter((m) => !m.publicKey.equals(selfKey))
    for (const other of others) {
      try {
        if (key.kind === EntryKind.Manifest) {
          const body = await other.site.getManifest(key.id)
          if (body === 'deleted') return 'deleted'
          if (body === null) continue
          decodeManifest(body)
          return body
        }
        const { entry } = await other.site.getEntry(key)
        decodeNameRecord(entry)
        return entry
      } catch {
        // Not there or not intact: the next holder.
      }
    }
    throw DdfsError.UNAVAILABLE(`no other node has an intact copy of ${key.id.toString('hex')} kind ${key.kind}`)
  }
}

/** A standalone node's copies: fragments rebuilt from the stripe's others, manifests from another device. */
export class LocalCopies implements CopySource {
  constructor (private readonly site: DeviceSite, private readonly objects: LocalObjectStore) {}

  async intactCopy (key: EntryKey, damaged: BlockStore): Promise<Buffer | 'deleted'> {
    if (key.kind === EntryKind.Fragment) {
      const manifest = await this.objects.currentManifest(key.id)
      // The node's devices as one site, which reads each fragment where it lies; not the damaged one.
      const sources = Array.from({ length: manifest.k + manifest.m }, (_, i) => i === key.index ? null : this.site)
      return await rebuildOne(key.id, manifest, key.stripe, key.index, sources)
    }
    for (const store of this.site.stores()) {
      if (store === damaged || store.stat(key) === null) continue
      try {
        const entry = await store.read(key)
        if (key.kind === EntryKind.Manifest) decodeManifest(entry)
        else decodeNameRecord(entry)
        return entry
      } catch {
        // Damaged here too: the next device.
      }
    }
    throw DdfsError.UNAVAILABLE(`no other device of this node has an intact copy of ${key.id.toString('hex')} kind ${key.kind}${key.kind === EntryKind.Name ? ' (a standalone node keeps one copy of a name record)' : ''}`)
  }
}
