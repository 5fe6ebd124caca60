// Fills devices for the fault schedule's "device full" fault (DDFS_FAULT_FILE only; see
// src/cluster/fault-layer.ts): filler entries are written to a device until its own allocator
// answers DEVICE_FULL, so what a full device does to puts and repairs is the real thing; they are
// removed when the rule goes away (also at the next start, if the node was killed while full).
import { DdfsError } from '../errors'
import { FILLER_ID, FILLER_KIND, type FaultRules } from '../cluster/fault-layer'
import type { Logger } from '../log'
import type { BlockStore, EntryKey, EntryKind } from '../store/types'

const SIZES = [4 * 1024 * 1024, 256 * 1024, 32 * 1024, 4096]

const fillerKey = (n: number): EntryKey => ({ id: FILLER_ID, kind: FILLER_KIND as EntryKind, stripe: n, index: 0 })

export class DeviceFiller {
  private chain: Promise<void> = Promise.resolve()

  constructor (private readonly stores: () => BlockStore[], private readonly log: Logger) {}

  /** Brings every device in line with the rules (serialised: rules change faster than fills). */
  apply (rules: FaultRules): Promise<void> {
    const want = new Set(rules.fill)
    this.chain = this.chain.then(async () => {
      for (const store of this.stores()) {
        const fillers = store.list(FILLER_ID).filter((e) => (e.key.kind as number) === FILLER_KIND)
        if (want.has(store.path) && fillers.length === 0) await this.fill(store)
        else if (!want.has(store.path) && fillers.length > 0) {
          for (const e of fillers) await store.remove(e.key)
          this.log.info('fault-device-unfilled', { device: store.path, entries: fillers.length })
        }
      }
    }).catch((err) => this.log.warn('fault-fill-failed', { error: DdfsError.from(err).message }))
    return this.chain
  }

  private async fill (store: BlockStore): Promise<void> {
    let n = 0
    for (const size of SIZES) {
      const data = Buffer.alloc(size, 0xfa)
      for (;;) {
        try {
          await store.put(fillerKey(n), data)
          n++
        } catch (err) {
          if (DdfsError.from(err).code !== 'DEVICE_FULL') throw err
          break
        }
      }
    }
    this.log.info('fault-device-filled', { device: store.path, entries: n, free: store.info().freeSize })
  }
}
