// Structured log lines: `time level node event key=value ...`, appended to one file.
// The lines of one turn of the event loop go out in one append at its end (written on the JS
// thread: an asynchronous write per line cost a thread-pool round trip, two thread wake-ups,
// per line, and a busy node logs a line or two per request); what is still pending is written
// at close and at exit. A failing log never takes the node down. Rotated by size:
// past DDFS_LOG_MAX_BYTES (default 64 MiB) the file becomes .1 (.1 becomes .2, .2 becomes .3,
// .3 is dropped). Several processes may share one file: each checks the path now and then and
// reopens it when another process rotated it.
import fs from 'node:fs'
import path from 'node:path'

export type Level = 'debug' | 'info' | 'warn' | 'error'

function format (value: unknown): string {
  const s = typeof value === 'string' ? value : value instanceof Error ? value.message : String(value)
  return /[\s"=]/.test(s) || s === '' ? JSON.stringify(s) : s
}

const MAX_BYTES = Number(process.env.DDFS_LOG_MAX_BYTES ?? 64 * 1024 * 1024)
const KEEP = 3
/** Bytes written between looks at the file's size and identity. */
const CHECK_EVERY = Math.min(1024 * 1024, Math.max(1, Math.floor(MAX_BYTES / 8)))

/** Loggers with a file, so lines still pending at exit are written (one exit hook for all). */
const openLoggers = new Set<Logger>()
process.on('exit', () => { for (const l of openLoggers) l.flush() })

export class Logger {
  private fd: number | null = null
  private ino = 0
  private sinceCheck = 0
  private pending = ''

  constructor (readonly file: string | null, readonly node: string) {
    if (file === null) return
    fs.mkdirSync(path.dirname(file), { recursive: true })
    this.open()
    openLoggers.add(this)
  }

  private open (): void {
    const file = this.file as string
    try {
      const fd = fs.openSync(file, 'a', 0o640)  // O_APPEND: whole appends, also beside other processes
      this.ino = fs.fstatSync(fd).ino
      this.fd = fd
    } catch {
      this.fd = null
    }
  }

  log (level: Level, event: string, fields: Record<string, unknown> = {}): void {
    if (this.fd === null) return
    let line = `${new Date().toISOString()} ${level} ${this.node} ${event}`
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) line += ` ${k}=${format(v)}`
    line += '\n'
    if (this.pending === '') setImmediate(() => this.flush())
    this.pending += line
  }

  /** Appends the pending lines; rotates now and then. */
  flush (): void {
    const lines = this.pending
    this.pending = ''
    if (lines === '' || this.fd === null) return
    try {
      fs.writeSync(this.fd, lines)
    } catch {
      // A full or failing disk: these lines are lost, the node goes on.
    }
    this.sinceCheck += lines.length
    if (this.sinceCheck >= CHECK_EVERY) this.check()
  }

  /** Rotates the file when it is too big; follows a rotation done by another process. */
  private check (): void {
    this.sinceCheck = 0
    const file = this.file as string
    try {
      const st = fs.statSync(file)
      if (st.ino === this.ino && st.size < MAX_BYTES) return
      if (st.ino === this.ino) {
        for (let i = KEEP - 1; i >= 1; i--) { try { fs.renameSync(`${file}.${i}`, `${file}.${i + 1}`) } catch {} }
        fs.renameSync(file, `${file}.1`)
      }
    } catch {
      // The file is gone (removed by hand, or rotated away): start a new one.
    }
    this.closeFd()
    this.open()
  }

  private closeFd (): void {
    if (this.fd === null) return
    try { fs.closeSync(this.fd) } catch {}
    this.fd = null
  }

  debug (event: string, fields?: Record<string, unknown>): void { this.log('debug', event, fields) }
  info (event: string, fields?: Record<string, unknown>): void { this.log('info', event, fields) }
  warn (event: string, fields?: Record<string, unknown>): void { this.log('warn', event, fields) }
  error (event: string, fields?: Record<string, unknown>): void { this.log('error', event, fields) }

  close (): Promise<void> {
    this.flush()
    this.closeFd()
    openLoggers.delete(this)
    return Promise.resolve()
  }
}
