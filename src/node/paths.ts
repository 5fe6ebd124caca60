// Where a node keeps things, derived from its address so the CLI can find a node from -s/-p alone.
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

export function defaultDataDir (port: number): string {
  return path.join(DEFAULT_DATA_ROOT, `node-${port}`)
}

