// Object ids for small creates, chosen so that the manifest goes where the name's record goes:
// a node that holds both takes the create in one request (CreatePut). Ids stay random (the
// first of many random ones to land on the wanted holders); placement stays the id's rendezvous
// rank. A try costs ~1.7 µs and a 6-node cluster needs ~20 tries per create (in 200, all but 1 in
// 28,000 creates find one); IdsBeside keeps every try, filed under the holders it lands on, and
// tries between creates, so a create takes a ready id instead of searching before it sends.
import crypto from 'node:crypto'
import { ID_BYTES } from '../constants'
import { manifestTop, nameRank, nameHash } from '../cluster/placement'
import { NAME_COPIES } from './names'
import type { ViewMember } from './cluster-object-store'

/** Tries for one id at most (~340 µs), and placement scores at most (tries x members). */
const TRIES = 200
const SCORES = 1200
/** Ready ids kept per holder set (a 6-node cluster has 20 sets of 3). */
const KEEP = 4

export class IdsBeside {
  private signature = ''
  private members: ViewMember[] = []
  private readonly ready = new Map<string, Buffer[]>()
  private filling = false

  /**
   * A new id whose first `copies` manifest holders are the holders of `name`'s record, or as
   * many of them as the ids tried could give.
   */
  take (name: string, members: ViewMember[], copies: number): Buffer {
    const nameSites = nameRank(nameHash(name), members).slice(0, NAME_COPIES)
    // Ready ids serve the usual shape only: as many manifest copies as name records.
    if (copies !== nameSites.length) return search(nameSites, members, copies)
    const signature = members.map((m) => m.publicKey.toString('hex', 0, 8)).join()
    if (signature !== this.signature) {
      // Another membership: ids filed under the old one may go elsewhere now.
      this.signature = signature
      this.members = members
      this.ready.clear()
    }
    const want = setKey(nameSites, members)
    const id = this.ready.get(want)?.shift() ?? search(nameSites, members, copies)
    this.fillSoon(want, copies)
    return id
  }

  /** Ids tried and kept for later creates. */
  get readyIds (): number {
    let n = 0
    for (const ids of this.ready.values()) n += ids.length
    return n
  }

  /** After this turn of the event loop: tries ids until `want` has one ready again. */
  private fillSoon (want: string, copies: number): void {
    if (this.filling) return
    this.filling = true
    setImmediate(() => {
      this.filling = false
      const members = this.members
      for (const candidate of candidates(members)) {
        if ((this.ready.get(want)?.length ?? 0) > 0) break
        const key = setKey(manifestTop(candidate, members, copies), members)
        const ids = this.ready.get(key) ?? []
        if (ids.length < KEEP) { ids.push(Buffer.from(candidate)); this.ready.set(key, ids) }
      }
    })
  }
}

/** The search itself, for a create that finds no ready id (or an unusual shape). */
function search (nameSites: ViewMember[], members: ViewMember[], copies: number): Buffer {
  let id = crypto.randomBytes(ID_BYTES)
  const sites = new Set(nameSites)
  const want = Math.min(copies, sites.size)
  const overlap = (candidate: Buffer): number => manifestTop(candidate, members, copies).filter((h) => sites.has(h)).length
  let best = overlap(id)
  for (const candidate of candidates(members)) {
    if (best >= want) break
    const n = overlap(candidate)
    if (n > best) { best = n; id = Buffer.from(candidate) }
  }
  return id
}

/** Random candidate ids (views into a shared pool: copy the one kept), as many as one search may try. */
function * candidates (members: ViewMember[]): Generator<Buffer> {
  const tries = Math.min(TRIES, Math.floor(SCORES / Math.max(1, members.length)))
  let pool = Buffer.alloc(0)
  for (let i = 0; i < tries; i++) {
    if (i % 32 === 0) pool = crypto.randomBytes(ID_BYTES * 32)  // one call costs as much as a try
    yield pool.subarray((i % 32) * ID_BYTES, (i % 32 + 1) * ID_BYTES)
  }
}

/** A set of members as the sorted positions in `members` (the same array the sites came from). */
function setKey (sites: ViewMember[], members: ViewMember[]): string {
  return sites.map((s) => members.indexOf(s)).sort((a, b) => a - b).join()
}
