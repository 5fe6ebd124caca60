// Starting a ddfs process in the background and waiting until it serves: the child reports
// "ready" (or "error {code, message}") on fd 3, then runs on its own.
import fs from 'node:fs'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { DdfsError } from '../errors'

const BIN = path.join(__dirname, '..', '..', '..', 'bin', 'ddfs')

/**
 * V8 flags for the long-running processes (also in bin/ddfs's #! line, for systemd). A node's
 * JS heap is small (~8 MB) while hundreds of MB/s of fragment buffers pass through it; with
 * V8's default old-generation limit for so small a heap, that started a full mark-compact
 * several times a second: a quarter of all CPU during a rebuild. With a larger initial limit
 * the buffers die in the cheap young-generation collections (with the buffer reuse of
 * native/aligned_pool.cc, a rebuild went from 25 to 16 CPU s per GiB).
 * Feedback vectors from a function's first call and a quarter of the default interrupt budget:
 * a fresh node's request paths reach optimized code sooner (2,000 creates through a fresh
 * cluster's mount, alternating runs on 2026-12-04: 315-361 -> 353-408 /s; warmed up, no change).
 */
export const NODE_FLAGS = ['--initial-old-space-size=256', '--no-lazy-feedback-allocation', '--interrupt-budget=16384']

/**
 * Runs `ddfs ...args` detached; resolves with its pid once it reported ready. The child's stderr
 * goes to `stderrFile` (appended) when given, so a crash too early for the log leaves its trace.
 */
export async function startDetached (args: string[], stderrFile?: string): Promise<number> {
  const stderr = stderrFile === undefined ? 'ignore' : fs.openSync(stderrFile, 'a')
  const child = spawn(process.execPath, [...NODE_FLAGS, BIN, ...args], {
    detached: true,
    stdio: ['ignore', 'ignore', stderr, 'pipe'],
    env: { ...process.env, DDFS_READY_FD: '3' }
  })
  if (typeof stderr === 'number') fs.closeSync(stderr)
  const pipe = child.stdio[3] as NodeJS.ReadableStream
  let text = ''
  pipe.setEncoding?.('utf8')
  const result = await new Promise<string>((resolve) => {
    pipe.on('data', (d: string) => { text += d; if (text.includes('\n')) resolve(text) })
    child.on('exit', (code, signal) => resolve(text !== '' ? text : `error ${JSON.stringify({
      code: 'INTERNAL',
      message: `ddfs ${args.slice(0, 2).join(' ')} exited with ${code ?? signal} before it served` + (stderrFile === undefined ? '' : `; its stderr (${stderrFile}) ends: ${tail(stderrFile, 600)}`)
    })}\n`))
  })
  ;(pipe as unknown as { destroy: () => void }).destroy()
  child.unref()
  if (!result.startsWith('ready')) {
    const { code, message } = JSON.parse(result.slice(6)) as { code: string, message: string }
    throw new DdfsError(code as never, message)
  }
  return child.pid as number
}

function tail (file: string, chars: number): string {
  try {
    const text = fs.readFileSync(file, 'utf8').trim()
    return text === '' ? '(nothing)' : text.slice(-chars)
  } catch {
    return '(nothing)'
  }
}

let ready = false

/**
 * In the child, before it starts: an uncaught error before reportReady() is reported to the
 * parent as the reason the start failed (instead of a bare exit code), then the process exits.
 */
export function reportCrashBeforeReady (): void {
  const crash = (err: unknown): void => {
    if (ready) return  // the process's own handlers log it
    console.error(err)
    reportReady(err)
    process.exit(1)
  }
  process.on('uncaughtException', crash)
  process.on('unhandledRejection', crash)
}

/** In the child: tells the parent it serves (or why it could not start). */
export function reportReady (err?: unknown): void {
  ready = err === undefined
  const fd = process.env.DDFS_READY_FD !== undefined ? Number(process.env.DDFS_READY_FD) : null
  if (fd === null) return
  delete process.env.DDFS_READY_FD
  if (err === undefined) {
    fs.writeSync(fd, 'ready\n')
  } else {
    const e = DdfsError.from(err)
    fs.writeSync(fd, `error ${JSON.stringify({ code: e.code, message: e.message.slice(e.code.length + 2) })}\n`)
  }
  fs.closeSync(fd)
}

/** Waits until process `pid` is gone (true) or `ms` passed (false). */
export async function waitExit (pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (!processAlive(pid)) return true
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return false
}

/** Whether `pid` runs: a zombie (exited, not yet reaped by its parent) does not. */
export function processAlive (pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}
