// A node's counters, served in the Prometheus text format on --metrics-port (GET /metrics).
// Counting is a few additions per request; the text is built only when scraped.
import http from 'node:http'
import { DdfsError } from '../errors'

interface Timing { count: number, seconds: number }

/** A value read at scrape time; a counter (only ever grows) is marked so for Prometheus. */
export interface Sample { name: string, help: string, labels?: Record<string, string>, value: number, type?: 'counter' }

export interface MetricsSource {
  /** Gauges read at scrape time: devices, entries, members; and the healer's counters. */
  gauges (): Sample[]
}

export class Metrics {
  private readonly requests = new Map<string, Timing>()
  private readonly failures = new Map<string, number>()
  private readonly bytes = { in: 0, out: 0 }
  private integrityErrors = 0
  private server: http.Server | null = null

  /** One request of `type` that took `seconds`; `error` its code when it failed. */
  request (type: string, seconds: number, error?: string): void {
    const t = this.requests.get(type) ?? { count: 0, seconds: 0 }
    t.count++
    t.seconds += seconds
    this.requests.set(type, t)
    if (error !== undefined) {
      this.failures.set(`${type}\0${error}`, (this.failures.get(`${type}\0${error}`) ?? 0) + 1)
      if (error === 'CORRUPT') this.integrityErrors++
    }
  }

  /** Object bytes received (puts) or sent (gets). */
  transferred (direction: 'in' | 'out', n: number): void {
    this.bytes[direction] += n
  }

  text (source: MetricsSource): string {
    const out: string[] = []
    const family = (name: string, type: string, help: string): void => { out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`) }
    family('ddfs_requests_total', 'counter', 'Requests served, by message type.')
    for (const [type, t] of this.requests) out.push(`ddfs_requests_total{type="${type}"} ${t.count}`)
    family('ddfs_request_seconds', 'summary', 'Time spent serving requests, by message type.')
    for (const [type, t] of this.requests) out.push(`ddfs_request_seconds_sum{type="${type}"} ${t.seconds.toFixed(6)}`, `ddfs_request_seconds_count{type="${type}"} ${t.count}`)
    family('ddfs_request_errors_total', 'counter', 'Failed requests, by message type and error code.')
    for (const [key, n] of this.failures) { const [type, code] = key.split('\0'); out.push(`ddfs_request_errors_total{type="${type}",code="${code}"} ${n}`) }
    family('ddfs_object_bytes_total', 'counter', 'Object bytes received by puts (in) and sent by gets (out).')
    out.push(`ddfs_object_bytes_total{direction="in"} ${this.bytes.in}`, `ddfs_object_bytes_total{direction="out"} ${this.bytes.out}`)
    family('ddfs_integrity_errors_total', 'counter', 'Requests that failed because a checksum did not match.')
    out.push(`ddfs_integrity_errors_total ${this.integrityErrors}`)
    const seen = new Set<string>()
    for (const g of source.gauges()) {
      if (!seen.has(g.name)) { family(g.name, g.type ?? 'gauge', g.help); seen.add(g.name) }
      const labels = g.labels === undefined ? '' : `{${Object.entries(g.labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, '_')}"`).join(',')}}`
      out.push(`${g.name}${labels} ${g.value}`)
    }
    return out.join('\n') + '\n'
  }

  async listen (host: string, port: number, source: MetricsSource): Promise<void> {
    const server = http.createServer((req, res) => {
      if (req.method !== 'GET' || req.url !== '/metrics') { res.writeHead(404).end('see /metrics\n'); return }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(this.text(source))
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE'
        ? DdfsError.NODE_RUNNING(`metrics port ${host}:${port} is already in use`)
        : DdfsError.IO(`cannot serve metrics on ${host}:${port}: ${err.message}`)))
      server.listen(port, host, () => resolve())
    })
    this.server = server
  }

  close (): Promise<void> {
    const s = this.server
    this.server = null
    return new Promise((resolve) => { if (s === null) resolve(); else s.close(() => resolve()) })
  }
}
