// The object layer's records on disk: the manifest (compact-encoding) and the fragment trailer
// (a fixed 64-byte layout after each fragment's data, so the data itself starts block-aligned).
// Each carries its own XXH64.
import c from 'compact-encoding'
import { xxh64 } from '../hash'
import { DdfsError } from '../errors'
import { hash64 } from '../encoding'
import type { EntryKey } from '../store/types'

export const MANIFEST_VERSION = 1

/** A tombstone is a zero-length entry: it uses no blocks, and keeps a deleted id from coming back. */
export const TOMBSTONE_KIND = 3

/** The store key of an object's entry (EntryKind: fragment, manifest, name; or TOMBSTONE_KIND). */
export function keyOf (id: Buffer, kind: number, stripe = 0, index = 0): EntryKey {
  return { id, kind, stripe, index }
}

export interface Manifest {
  version: number          // 1 on create; healing sets a newer (time-based) one each time it moves fragments: the newest copy wins
  size: number
  k: number
  m: number
  stripeSize: number       // data bytes per stripe (k fragments of stripeSize / k)
  hash: bigint             // XXH64 of the whole object
  createdAt: number
  name: string | null
  tombstone: boolean
  stripeHashes: bigint[]   // per stripe, per fragment: XXH64 of each fragment's data, k + m per stripe
  /** Cluster objects: the public key of the node holding fragment index i (of every stripe). */
  holders?: Buffer[]
  /**
   * A small object's data, held in the manifest itself instead of fragments (no stripe hashes,
   * no holders): the manifest has m+1 copies, so the data survives any m lost nodes as
   * fragments would, and a read needs the manifest alone. Checked by the manifest's XXH64 and
   * by `hash`. See INLINE_MAX in src/object/cluster-object-store.ts.
   */
  inline?: Buffer
}

const FLAG_NAME = 1
const FLAG_TOMBSTONE = 2
const FLAG_HOLDERS = 4
const FLAG_INLINE = 8
const KEY_BYTES = 32

const manifestEncoding: c.Encoder<Manifest> = {
  preencode (state: c.State, m: Manifest): void {
    c.uint.preencode(state, MANIFEST_VERSION)
    c.uint.preencode(state, 0) // flags
    c.uint.preencode(state, m.version)
    c.uint.preencode(state, m.size)
    c.uint.preencode(state, m.k)
    c.uint.preencode(state, m.m)
    c.uint.preencode(state, m.stripeSize)
    state.end += 8
    c.uint.preencode(state, m.createdAt)
    if (m.name !== null) c.string.preencode(state, m.name)
    c.uint.preencode(state, m.stripeHashes.length)
    state.end += 8 * m.stripeHashes.length
    if (m.holders !== undefined) {
      c.uint.preencode(state, m.holders.length)
      state.end += KEY_BYTES * m.holders.length
    }
    if (m.inline !== undefined) c.buffer.preencode(state, m.inline)
  },
  encode (state: c.State, m: Manifest): void {
    c.uint.encode(state, MANIFEST_VERSION)
    c.uint.encode(state, (m.name !== null ? FLAG_NAME : 0) | (m.tombstone ? FLAG_TOMBSTONE : 0) | (m.holders !== undefined ? FLAG_HOLDERS : 0) | (m.inline !== undefined ? FLAG_INLINE : 0))
    c.uint.encode(state, m.version)
    c.uint.encode(state, m.size)
    c.uint.encode(state, m.k)
    c.uint.encode(state, m.m)
    c.uint.encode(state, m.stripeSize)
    hash64.encode(state, m.hash)
    c.uint.encode(state, m.createdAt)
    if (m.name !== null) c.string.encode(state, m.name)
    c.uint.encode(state, m.stripeHashes.length)
    for (const h of m.stripeHashes) hash64.encode(state, h)
    if (m.holders !== undefined) {
      c.uint.encode(state, m.holders.length)
      for (const key of m.holders) {
        const out = state.buffer as Buffer
        if (key.length !== KEY_BYTES) throw DdfsError.BAD_ARGUMENT('a holder key has 32 bytes')
        out.set(key, state.start)
        state.start += KEY_BYTES
      }
    }
    if (m.inline !== undefined) c.buffer.encode(state, m.inline)
  },
  decode (state: c.State): Manifest {
    const format = c.uint.decode(state)
    if (format !== MANIFEST_VERSION) throw DdfsError.CORRUPT(`unknown manifest format ${format}`)
    const flags = c.uint.decode(state)
    const version = c.uint.decode(state)
    const size = c.uint.decode(state)
    const k = c.uint.decode(state)
    const m = c.uint.decode(state)
    const stripeSize = c.uint.decode(state)
    const hash = hash64.decode(state)
    const createdAt = c.uint.decode(state)
    const name = (flags & FLAG_NAME) !== 0 ? c.string.decode(state) : null
    const count = c.uint.decode(state)
    if (count > (state.end - state.start) / 8) throw DdfsError.CORRUPT('manifest truncated')
    const stripeHashes: bigint[] = new Array(count)
    for (let i = 0; i < count; i++) stripeHashes[i] = hash64.decode(state)
    const manifest: Manifest = { version, size, k, m, stripeSize, hash, createdAt, name, tombstone: (flags & FLAG_TOMBSTONE) !== 0, stripeHashes }
    if ((flags & FLAG_HOLDERS) !== 0) {
      const holders = c.uint.decode(state)
      if (holders !== k + m || holders * KEY_BYTES > state.end - state.start) throw DdfsError.CORRUPT('manifest holder list is malformed')
      manifest.holders = []
      for (let i = 0; i < holders; i++) {
        manifest.holders.push(Buffer.from((state.buffer as Buffer).subarray(state.start, state.start + KEY_BYTES)))
        state.start += KEY_BYTES
      }
    }
    if ((flags & FLAG_INLINE) !== 0) {
      // A view of the record's bytes (no copy): a manifest's buffer is never reused.
      const data = c.buffer.decode(state)
      if (data === null || data.length !== size || count !== 0 || manifest.holders !== undefined) throw DdfsError.CORRUPT('manifest inline data is malformed')
      manifest.inline = data as Buffer
    }
    if (k < 1 || stripeSize < 1 || (!manifest.tombstone && manifest.inline === undefined && count !== Math.ceil(size / stripeSize) * (k + m))) throw DdfsError.CORRUPT('manifest fields disagree')
    return manifest
  }
}

/** A record's bytes on disk: its compact encoding followed by the XXH64 of that encoding. */
function seal<T> (enc: c.Encoder<T>, value: T): Buffer {
  const body = c.encode(enc, value)
  const out = Buffer.allocUnsafe(body.length + 8)
  out.set(body)
  out.writeBigUInt64LE(xxh64(body), body.length)
  return out
}

/** The record in `buf`, checked: CORRUPT (never a wrong record) when anything is off. */
function unseal<T> (enc: c.Encoder<T>, buf: Buffer, what: string): T {
  if (buf.length < 9) throw DdfsError.CORRUPT(`${what} too short`)
  const body = buf.subarray(0, buf.length - 8)
  if (xxh64(body) !== buf.readBigUInt64LE(buf.length - 8)) throw DdfsError.CORRUPT(`${what} fails its XXH64`)
  try {
    return c.decode(enc, body) as T
  } catch (err) {
    throw err instanceof DdfsError ? err : DdfsError.CORRUPT(`${what} does not decode: ${(err as Error).message}`)
  }
}

export function encodeManifest (m: Manifest): Buffer { return seal(manifestEncoding, m) }
export function decodeManifest (buf: Buffer): Manifest { return unseal(manifestEncoding, buf, 'manifest') }

// Fragment trailer: 64 bytes after the fragment's data.
//   0 magic u32 "DDFR"   4 version u8   5 k u8   6 m u8   7 index u8
//   8 object id [16]     24 stripe u32  28 data length u32
//   32 data XXH64 u64    40..56 reserved  56 trailer XXH64 of bytes 0..56
export const TRAILER_BYTES = 64
const TRAILER_MAGIC = 0x52464444

export interface FragmentHeader {
  id: Buffer
  stripe: number
  index: number
  k: number
  m: number
  length: number
  hash: bigint
}

export function writeTrailer (h: FragmentHeader, out: Buffer, at: number): void {
  const t = out.subarray(at, at + TRAILER_BYTES)
  t.fill(0)
  t.writeUInt32LE(TRAILER_MAGIC, 0)
  t.writeUInt8(1, 4)
  t.writeUInt8(h.k, 5)
  t.writeUInt8(h.m, 6)
  t.writeUInt8(h.index, 7)
  h.id.copy(t, 8)
  t.writeUInt32LE(h.stripe, 24)
  t.writeUInt32LE(h.length, 28)
  t.writeBigUInt64LE(h.hash, 32)
  t.writeBigUInt64LE(xxh64(t.subarray(0, 56)), 56)
}

export function readTrailer (fragment: Buffer): FragmentHeader {
  if (fragment.length < TRAILER_BYTES) throw DdfsError.CORRUPT('fragment shorter than its trailer')
  const t = fragment.subarray(fragment.length - TRAILER_BYTES)
  if (t.readUInt32LE(0) !== TRAILER_MAGIC || t.readBigUInt64LE(56) !== xxh64(t.subarray(0, 56))) throw DdfsError.CORRUPT('fragment trailer fails its checks')
  return {
    id: Buffer.from(t.subarray(8, 24)),
    stripe: t.readUInt32LE(24),
    index: t.readUInt8(7),
    k: t.readUInt8(5),
    m: t.readUInt8(6),
    length: t.readUInt32LE(28),
    hash: t.readBigUInt64LE(32)
  }
}

// ---- name records ------------------------------------------------------------------------------
// A name given to an object (put --name, or a file created through the mount) is a small record
// stored under the name's hash (kind EntryKind.Name), placed like a manifest but by that hash:
// no central table. The newest record of a name wins.

export interface NameRecord {
  name: string
  id: Buffer
  version: number   // ms since epoch when it was written: the newest wins
}

const MAX_NAME_BYTES = 255

/**
 * The id a removed name points at: removing a name writes a newer record, not nothing, so a
 * holder that missed the removal cannot bring its older record back (healing copies the newest
 * record of a name to holders with an older one, and an absent record counts as older).
 */
export const NO_OBJECT = Buffer.alloc(16)

/** Checks a name as a file name: what the mount can show and every shell can type safely. */
export function checkName (name: string): void {
  if (typeof name !== 'string' || name === '' || name === '.' || name === '..') throw DdfsError.BAD_ARGUMENT(`'${String(name)}' is not a usable name`)
  if (name.includes('/') || name.includes('\0')) throw DdfsError.BAD_ARGUMENT('a name may not contain "/" or NUL')
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) throw DdfsError.BAD_ARGUMENT(`a name has at most ${MAX_NAME_BYTES} bytes`)
  if (/^[0-9a-f]{32}$/.test(name)) throw DdfsError.BAD_ARGUMENT('names of 32 lowercase hex characters are object ids, not names')
}

const nameEncoding: c.Encoder<NameRecord> = {
  preencode (state: c.State, r: NameRecord): void {
    c.uint.preencode(state, 1); c.string.preencode(state, r.name); state.end += 16; c.uint.preencode(state, r.version)
  },
  encode (state: c.State, r: NameRecord): void {
    c.uint.encode(state, 1); c.string.encode(state, r.name)
    ;(state.buffer as Buffer).set(r.id, state.start); state.start += 16
    c.uint.encode(state, r.version)
  },
  decode (state: c.State): NameRecord {
    if (c.uint.decode(state) !== 1) throw DdfsError.CORRUPT('unknown name record format')
    const name = c.string.decode(state)
    if (state.end - state.start < 16) throw DdfsError.CORRUPT('name record truncated')
    const id = Buffer.from((state.buffer as Buffer).subarray(state.start, state.start + 16))
    state.start += 16
    return { name, id, version: c.uint.decode(state) }
  }
}

export function encodeNameRecord (r: NameRecord): Buffer { return seal(nameEncoding, r) }
export function decodeNameRecord (buf: Buffer): NameRecord { return unseal(nameEncoding, buf, 'name record') }
