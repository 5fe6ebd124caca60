// A standalone node's tombstones. A delete leaves one so that a device that was away (failed,
// or detached with --force) and comes back with the object's old manifest does not bring it
// back. In a cluster the healer removes them once every member has applied the delete; a
// standalone node has only its own devices, so it removes a tombstone once it has seen it for
// --tombstone-ttl while none of its devices is failed, together with anything else of the id
// (a device back from a failure may still hold some). A device away for longer than the TTL can
// bring objects back, as in a cluster: wipe it before attaching it again.
import { DdfsError } from '../errors'
import { keyOf, TOMBSTONE_KIND } from '../object/records'
import { idPages } from '../store/walk'
import type { DeviceSite } from '../object/device-site'
import type { BlockStore } from '../store/types'
import type { Logger } from '../log'

export interface LocalTombstonesOptions {
  /** A tombstone is kept at least this long after this process first saw it. */
  ttlMs: number
  /** Whether every device the node is configured with is attached and working. */
  devicesWhole: () => boolean
}

/** Walks are ~2.5 µs per id: at most this often, or a tenth of the TTL when that is shorter. */
const WALK_MS = 60_000

export class LocalTombstones {
  private readonly firstSeen = new Map<string, number>()  // id hex -> when this process first saw its tombstone
  private timer: NodeJS.Timeout | null = null
  private running: Promise<void> | null = null
  private closed = false
  private collected = 0

  constructor (private readonly site: DeviceSite, private readonly log: Logger, private readonly opts: LocalTombstonesOptions) {}

  start (): void {
    const tick = (): void => {
      this.timer = setTimeout(() => {
        this.running = this.collect().catch((err) => this.log.warn('tombstone-walk-failed', { error: DdfsError.from(err).message }))
          .finally(() => { this.running = null; if (!this.closed) tick() })
      }, Math.min(WALK_MS, this.opts.ttlMs / 10))
    }
    tick()
  }

  async close (): Promise<void> {
    this.closed = true
    if (this.timer !== null) clearTimeout(this.timer)
    await this.running
  }

  /** For status: tombstones held at the last walk, and how many were removed since start. */
  report (): { tombstones: number, tombstonesCollected: number } {
    return { tombstones: this.firstSeen.size, tombstonesCollected: this.collected }
  }

  /** One walk: notes new tombstones, forgets gone ones, removes those due. */
  async collect (now = Date.now()): Promise<void> {
    await noteTombstones(this.site.stores(), this.firstSeen, now)
    if (!this.opts.devicesWhole()) return
    for (const [hex, since] of this.firstSeen) {
      if (this.closed) return
      if (now - since < this.opts.ttlMs) continue
      try {
        await this.site.removeId(Buffer.from(hex, 'hex'), false)
        this.firstSeen.delete(hex)
        this.collected++
        this.log.info('tombstone-collected', { id: hex })
      } catch (err) {
        this.log.warn('tombstone-collect-failed', { id: hex, error: DdfsError.from(err).message })
      }
    }
  }
}

/**
 * Notes in `firstSeen` (id hex -> time) when each tombstone on `stores` was first seen, and
 * forgets those gone. About 2.5 µs per id; requests are served between pages.
 */
export async function noteTombstones (stores: BlockStore[], firstSeen: Map<string, number>, now: number): Promise<void> {
  const seen = new Set<string>()
  for (const store of stores) {
    for (const ids of idPages(store)) {
      for (const id of ids) {
        if (store.stat(keyOf(id, TOMBSTONE_KIND)) === null) continue
        const hex = id.toString('hex')
        seen.add(hex)
        if (!firstSeen.has(hex)) firstSeen.set(hex, now)
      }
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  for (const hex of firstSeen.keys()) if (!seen.has(hex)) firstSeen.delete(hex)
}
