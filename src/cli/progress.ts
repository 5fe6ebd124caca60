// A progress bar on stderr (bytes, rate, ETA) for long transfers, only on a terminal.
export class ProgressBar {
  private readonly started = Date.now()
  private last = 0
  private readonly enabled: boolean

  /** Shown on a terminal unless `quiet`, for transfers of at least `minTotal` bytes. */
  constructor (private total: number, private readonly label: string, quiet: boolean, minTotal = 8 * 1024 * 1024) {
    this.enabled = !quiet && process.stderr.isTTY === true && total >= minTotal
  }

  /** `total` changes when the amount of work grows while it runs (a repair finding more). */
  update (done: number, total = this.total): void {
    this.total = total
    if (!this.enabled) return
    const now = Date.now()
    if (now - this.last < 100 && done < this.total) return
    this.last = now
    const seconds = Math.max((now - this.started) / 1000, 0.001)
    const rate = done / seconds
    const eta = rate > 0 ? (this.total - done) / rate : 0
    const width = 30
    const filled = Math.round(width * (this.total === 0 ? 1 : done / this.total))
    const bar = '#'.repeat(filled) + '-'.repeat(width - filled)
    process.stderr.write(`\r${this.label} [${bar}] ${mib(done)}/${mib(this.total)} MiB ${(rate / 1e6).toFixed(0)} MB/s ETA ${done > 0 ? `${eta.toFixed(0)}s` : '--'} `)
  }

  finish (): void {
    if (this.enabled) process.stderr.write('\n')
  }
}

function mib (n: number): string {
  return (n / 1048576).toFixed(0)
}
