// EntryKey <-> the 24 bytes the store sorts by: id, then kind, stripe and index big-endian,
// so byte order is key order and all entries of one object are adjacent.
import type { EntryKey } from './types'
import { DdfsError } from '../errors'
import { ID_BYTES } from '../constants'

export const KEY_BYTES = 24

export function encodeKey (key: EntryKey, out: Buffer = Buffer.allocUnsafe(KEY_BYTES)): Buffer {
  if (!Buffer.isBuffer(key.id) || key.id.length !== ID_BYTES) throw DdfsError.BAD_ARGUMENT('an object id is 16 bytes')
  if (!Number.isInteger(key.kind) || key.kind < 0 || key.kind > 0xffff) throw DdfsError.BAD_ARGUMENT(`bad entry kind ${key.kind}`)
  if (!Number.isInteger(key.stripe) || key.stripe < 0 || key.stripe > 0xffffffff) throw DdfsError.BAD_ARGUMENT(`bad stripe ${key.stripe}`)
  if (!Number.isInteger(key.index) || key.index < 0 || key.index > 0xffff) throw DdfsError.BAD_ARGUMENT(`bad fragment index ${key.index}`)
  key.id.copy(out, 0)
  out.writeUInt16BE(key.kind, 16)
  out.writeUInt32BE(key.stripe, 18)
  out.writeUInt16BE(key.index, 22)
  return out
}

export function decodeKey (buf: Buffer): EntryKey {
  return {
    id: Buffer.from(buf.subarray(0, 16)),
    kind: buf.readUInt16BE(16),
    stripe: buf.readUInt32BE(18),
    index: buf.readUInt16BE(22)
  }
}
