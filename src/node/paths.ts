// Where a node keeps things, derived from its address so the CLI can find a node from -s/-p alone.
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { DEFAULT_DATA_ROOT } from '../constants'

/** Sockets and pid files of this user's ddfs processes. */
export function runtimeDir (): string {
  if (process.getuid?.() === 0) return '/run/ddfs'
  return path.join(process.env.XDG_RUNTIME_DIR ?? os.tmpdir(), `ddfs-${process.getuid?.() ?? 'user'}`)
}

/** The node's local admin socket (mode 0600 in a 0700 directory). */
export function socketPath (host: string, port: number): string {
  return path.join(runtimeDir(), `${host}-${port}.sock`)
}

/** Whether a process accepts connections on the Unix socket `file`. */
export function socketAnswers (file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(file)
    probe.on('connect', () => { probe.destroy(); resolve(true) })
    probe.on('error', () => resolve(false))
  })
}

/**
 * Removes the socket file of a node that died (kill -9 leaves it; a node removes its own as it
 * stops); false when a process still answers there.
 */
export async function removeStaleSocket (file: string): Promise<boolean> {
  if (!fs.existsSync(file)) return true
  if (await socketAnswers(file)) return false
  fs.rmSync(file, { force: true })
  return true
}

export function defaultDataDir (port: number): string {
  return path.join(DEFAULT_DATA_ROOT, `node-${port}`)
}

