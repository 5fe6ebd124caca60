// Structured log lines: `time level node event key=value ...`, appended to one file.
// Writes are asynchronous and ordered; a failing log never takes the node down.
import fs from 'node:fs'
import path from 'node:path'

export type Level = 'debug' | 'info' | 'warn' | 'error'

function format (value: unknown): string {
  const s = typeof value === 'string' ? value : value instanceof Error ? value.message : String(value)
  return /[\s"=]/.test(s) || s === '' ? JSON.stringify(s) : s
}

export class Logger {
  private stream: fs.WriteStream | null = null

  constructor (readonly file: string | null, readonly node: string) {
    if (file === null) return
    fs.mkdirSync(path.dirname(file), { recursive: true })
    this.stream = fs.createWriteStream(file, { flags: 'a', mode: 0o640 })
    this.stream.on('error', () => { this.stream = null })
  }

  log (level: Level, event: string, fields: Record<string, unknown> = {}): void {
    if (this.stream === null) return
    let line = `${new Date().toISOString()} ${level} ${this.node} ${event}`
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) line += ` ${k}=${format(v)}`
    this.stream.write(line + '\n')
  }

  debug (event: string, fields?: Record<string, unknown>): void { this.log('debug', event, fields) }
  info (event: string, fields?: Record<string, unknown>): void { this.log('info', event, fields) }
  warn (event: string, fields?: Record<string, unknown>): void { this.log('warn', event, fields) }
  error (event: string, fields?: Record<string, unknown>): void { this.log('error', event, fields) }

  close (): Promise<void> {
    const s = this.stream
    this.stream = null
    if (s === null) return Promise.resolve()
    return new Promise((resolve) => s.end(resolve))
  }
}
