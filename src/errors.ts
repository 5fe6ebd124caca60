// One error class for the whole project. Every error has a stable `code` (tests and scripts
// match on it) and a message that says what went wrong and what to do. The CLI maps codes to
// exit statuses (see EXIT_CODES) so scripts can tell the kinds apart.

export type ErrorCode =
  | 'BAD_ARGUMENT'      // a flag, id or value the user gave is wrong
  | 'NOT_FOUND'         // no such object, key or file
  | 'DEVICE_IN_USE'     // a device is attached elsewhere, mounted, or locked
  | 'DEVICE_NOT_FORMATTED'
  | 'DEVICE_FULL'
  | 'CORRUPT'           // a checksum did not match: never returns bytes
  | 'IO'                // the OS failed an I/O
  | 'NODE_NOT_RUNNING'  // nothing answers at the given address
  | 'NODE_RUNNING'      // the node is already running
  | 'PROTOCOL'          // a malformed or unexpected message
  | 'UNSUPPORTED'       // a well-formed request this node does not know (it runs an older ddfs)
  | 'PERMISSION'        // the caller may not do this (admin over TCP, missing secret)
  | 'UNAVAILABLE'       // too few fragments or nodes reachable
  | 'CLOSED'            // the resource was closed under the operation
  | 'INTERNAL'

export const EXIT_CODES: Record<ErrorCode, number> = {
  BAD_ARGUMENT: 2,
  NOT_FOUND: 3,
  DEVICE_IN_USE: 4,
  DEVICE_NOT_FORMATTED: 4,
  DEVICE_FULL: 5,
  CORRUPT: 6,
  IO: 7,
  NODE_NOT_RUNNING: 8,
  NODE_RUNNING: 8,
  PROTOCOL: 9,
  UNSUPPORTED: 9,
  PERMISSION: 10,
  UNAVAILABLE: 11,
  CLOSED: 12,
  INTERNAL: 1
}

export class DdfsError extends Error {
  readonly code: ErrorCode

  constructor (code: ErrorCode, message: string, fn: Function = DdfsError) {
    super(`${code}: ${message}`)
    this.code = code
    this.name = 'DdfsError'
    Error.captureStackTrace?.(this, fn)
  }

  static BAD_ARGUMENT (msg: string): DdfsError { return new DdfsError('BAD_ARGUMENT', msg, DdfsError.BAD_ARGUMENT) }
  static NOT_FOUND (msg: string): DdfsError { return new DdfsError('NOT_FOUND', msg, DdfsError.NOT_FOUND) }
  static DEVICE_IN_USE (msg: string): DdfsError { return new DdfsError('DEVICE_IN_USE', msg, DdfsError.DEVICE_IN_USE) }
  static DEVICE_NOT_FORMATTED (msg: string): DdfsError { return new DdfsError('DEVICE_NOT_FORMATTED', msg, DdfsError.DEVICE_NOT_FORMATTED) }
  static DEVICE_FULL (msg: string): DdfsError { return new DdfsError('DEVICE_FULL', msg, DdfsError.DEVICE_FULL) }
  static CORRUPT (msg: string): DdfsError { return new DdfsError('CORRUPT', msg, DdfsError.CORRUPT) }
  static IO (msg: string): DdfsError { return new DdfsError('IO', msg, DdfsError.IO) }
  static NODE_NOT_RUNNING (msg: string): DdfsError { return new DdfsError('NODE_NOT_RUNNING', msg, DdfsError.NODE_NOT_RUNNING) }
  static NODE_RUNNING (msg: string): DdfsError { return new DdfsError('NODE_RUNNING', msg, DdfsError.NODE_RUNNING) }
  static PROTOCOL (msg: string): DdfsError { return new DdfsError('PROTOCOL', msg, DdfsError.PROTOCOL) }
  static UNSUPPORTED (msg: string): DdfsError { return new DdfsError('UNSUPPORTED', msg, DdfsError.UNSUPPORTED) }
  static PERMISSION (msg: string): DdfsError { return new DdfsError('PERMISSION', msg, DdfsError.PERMISSION) }
  static UNAVAILABLE (msg: string): DdfsError { return new DdfsError('UNAVAILABLE', msg, DdfsError.UNAVAILABLE) }
  static CLOSED (msg: string): DdfsError { return new DdfsError('CLOSED', msg, DdfsError.CLOSED) }
  static INTERNAL (msg: string): DdfsError { return new DdfsError('INTERNAL', msg, DdfsError.INTERNAL) }

  /** Native errors arrive as Error with a message "CODE: text"; lift them into DdfsError. */
  static from (err: unknown): DdfsError {
    if (err instanceof DdfsError) return err
    const message = err instanceof Error ? err.message : String(err)
    const m = /^([A-Z_]+): ([\s\S]*)$/.exec(message)
    if (m !== null && m[1] in EXIT_CODES) return new DdfsError(m[1] as ErrorCode, m[2])
    return new DdfsError('INTERNAL', message)
  }
}
