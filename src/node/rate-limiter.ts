// Paces background work (repair, scrub) to a byte rate so client traffic keeps the rest of the
// machine: each take() waits until the bytes taken so far fit the rate. While clients are active
// on this node (ClientActivity) the rate drops to a small share of it, except for urgent work
// (an object one loss away from unreadable). Also measures the rate actually achieved over the
// last few seconds, for status and ETA.
const WINDOW_MS = 10_000
/** Client traffic this recent counts as "clients are active". */
const ACTIVE_MS = 1000
/** The share of its rate background work keeps while clients are active. */
export const SHARE_WHILE_CLIENTS = 0.05

/** When this node last served client traffic (requests of clients, and other nodes' on their behalf). */
export class ClientActivity {
  private last = 0
  touch (): void { this.last = Date.now() }
  active (): boolean { return Date.now() - this.last < ACTIVE_MS }
}

export class RateLimiter {
  private next = 0   // when the bytes taken so far are "paid for"
  private readonly recent: Array<[number, number]> = []  // [time, bytes]

  /** `bytesPerSec`: 0 or Infinity for no limit. */
  constructor (private readonly bytesPerSec: number, private readonly clients?: ClientActivity) {}

  async take (bytes: number, urgent = false): Promise<void> {
    const now = Date.now()
    this.recent.push([now, bytes])
    while (this.recent.length > 0 && now - this.recent[0][0] > WINDOW_MS) this.recent.shift()
    if (!(this.bytesPerSec > 0) || !Number.isFinite(this.bytesPerSec)) return
    const rate = !urgent && this.clients?.active() === true ? this.bytesPerSec * SHARE_WHILE_CLIENTS : this.bytesPerSec
    this.next = Math.max(this.next, now) + (bytes / rate) * 1000
    const wait = this.next - now
    if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait))
  }

  /** Bytes per second over the last WINDOW_MS. */
  recentRate (): number {
    const now = Date.now()
    let sum = 0
    for (const [t, b] of this.recent) if (now - t <= WINDOW_MS) sum += b
    return sum / (WINDOW_MS / 1000)
  }
}
