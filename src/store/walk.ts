// Walking every object id of a store, a page at a time, in key order. The next page is asked
// for after the last id of the previous one, so entries removed during the walk do no harm.
import type { BlockStore } from './types'

export function * idPages (store: Pick<BlockStore, 'ids'>, page = 256): Generator<Buffer[]> {
  for (let cursor: Buffer | null = null; ;) {
    const ids = store.ids(cursor, page)
    if (ids.length === 0) return
    cursor = ids[ids.length - 1]
    yield ids
  }
}
