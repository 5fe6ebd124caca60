// Paces background work (repair, scrub) to a byte rate so client traffic keeps the rest of the
// machine: each take() waits until the bytes taken so far fit the rate. Also measures the rate
// actually achieved over the last few seconds, for status and ETA.
const WINDOW_MS = 10_000

export class RateLimiter {
  private next = 0   // when the bytes taken so far are "paid for"
  private readonly recent: Array<[number, number]> = []  // [time, bytes]

  /** `bytesPerSec`: 0 or Infinity for no limit. */
  constructor (private readonly bytesPerSec: number) {}

  async take (bytes: number): Promise<void> {
    const now = Date.now()
    this.recent.push([now, bytes])
    while (this.recent.length > 0 && now - this.recent[0][0] > WINDOW_MS) this.recent.shift()
    if (!(this.bytesPerSec > 0) || !Number.isFinite(this.bytesPerSec)) return
    this.next = Math.max(this.next, now) + (bytes / this.bytesPerSec) * 1000
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
