// The typed wrapper over native/store: the raw-block store of one device (block device or
// regular file). Every device operation runs on the libuv thread pool.
import { ownedAlone } from '../buffers'
import { addon } from '../native'
import { DdfsError } from '../errors'
import { BLOCK_SIZE, SEGMENT_SIZE } from '../constants'
import { encodeKey, decodeKey } from './keys'
import { faultLayer, FILLER_ID } from '../cluster/fault-layer'
import type { BlockStore, DeviceInfo, EntryInfo, EntryKey, FormatOptions, WriteHandle } from './types'

interface NativeSummary {
  path: string, major: number, minor: number, sbId: string, size: number, blocks: number, usedBlocks: number
  inodesTreeBlock: number, bmBlock: number, bmBlocks: number, entries: number, generation: number
}
interface NativeEntry { key?: Buffer, block: number, blocks: number, length: number, hash: bigint }
interface NativeStore {
  summary (): NativeSummary
  put (key: Buffer, data: Uint8Array): Promise<NativeEntry>
  putMany (keys: Buffer[], datas: Uint8Array[]): Promise<NativeEntry>
  beginWrite (key: Buffer, length: number): number
  write (wid: number, offset: number, data: Uint8Array): Promise<void>
  commit (wid: number): Promise<NativeEntry>
  abort (wid: number): void
  read (key: Buffer, offset: number, length: number): Promise<[Buffer, number]>
  stat (key: Buffer): NativeEntry | null
  list (id: Buffer): NativeEntry[]
  ids (after: Buffer | null, limit: number): Buffer[]
  remove (key: Buffer): Promise<boolean>
  removeId (id: Buffer, mark?: Buffer): Promise<number>
  close (): Promise<void>
}
interface StoreAddon {
  storeFormat (path: string, force: boolean): Promise<NativeSummary>
  storeProbe (path: string): Promise<NativeSummary | null>
  storeOpen (path: string, fault?: FaultInjection): Promise<NativeStore>
}

/** Test-only: simulate power loss at the Nth device write (see docs/on-disk-format.md). */
export interface FaultInjection {
  seed: number
  crashAfterWrites: number
  mode?: 'tear' | 'drop' | 'mixed'
}

export interface OpenOptions {
  fault?: FaultInjection
}

const native = addon as unknown as StoreAddon

async function call<T> (p: () => Promise<T> | T): Promise<T> {
  try {
    return await p()
  } catch (err) {
    throw DdfsError.from(err)
  }
}

function toDeviceInfo (s: NativeSummary): DeviceInfo {
  const usedSize = s.usedBlocks * BLOCK_SIZE
  return {
    path: s.path,
    major: s.major,
    minor: s.minor,
    sbId: s.sbId,
    size: s.size,
    usedSize,
    freeSize: s.size - usedSize,
    bsize: BLOCK_SIZE,
    blocks: s.blocks,
    usedBlocks: s.usedBlocks,
    inodesTreeBlock: s.inodesTreeBlock,
    bmBlock: s.bmBlock,
    bmBlocks: s.bmBlocks,
    entries: s.entries,
    generation: s.generation
  }
}

function toEntryInfo (key: EntryKey, e: NativeEntry): EntryInfo {
  return { key, block: e.block, blocks: e.blocks, length: e.length, hash: e.hash }
}

/** Formats a device. Refuses one that is in use, mounted, or (without force) already a ddfs store. */
export async function formatDevice (path: string, opts: FormatOptions = {}): Promise<DeviceInfo> {
  return toDeviceInfo(await call(() => native.storeFormat(path, opts.force === true)))
}

/** Reads a device's superblock without attaching it; null when it holds no ddfs store. */
export async function probeDevice (path: string): Promise<DeviceInfo | null> {
  const s = await call(() => native.storeProbe(path))
  return s === null ? null : toDeviceInfo(s)
}

/** Attaches a formatted device exclusively and recovers it to its last durable state. */
export async function openDevice (path: string, opts: OpenOptions = {}): Promise<NativeBlockStore> {
  const handle = await call(() => native.storeOpen(path, opts.fault))
  return new NativeBlockStore(path, handle)
}

class NativeWriteHandle implements WriteHandle {
  private done = false

  constructor (private readonly store: NativeStore, private readonly wid: number, readonly key: EntryKey, readonly length: number) {}

  write (offset: number, data: Buffer): Promise<void> {
    return call(() => this.store.write(this.wid, offset, data))
  }

  async commit (): Promise<EntryInfo> {
    const e = await call(() => this.store.commit(this.wid))
    this.done = true
    return toEntryInfo(this.key, e)
  }

  async abort (): Promise<void> {
    if (this.done) return
    this.done = true
    this.store.abort(this.wid)
  }
}

export class NativeBlockStore implements BlockStore {
  private closing: Promise<void> | null = null

  constructor (readonly path: string, private readonly handle: NativeStore) {}

  info (): DeviceInfo {
    try {
      return toDeviceInfo(this.handle.summary())
    } catch (err) {
      throw DdfsError.from(err)
    }
  }

  /** The fault schedule's failing device (DDFS_FAULT_FILE only): a write fails as on EIO. */
  private refuseFailingWrite (id: Buffer): void {
    if (faultLayer !== null && faultLayer.failsWrites(this.path) && !id.equals(FILLER_ID)) {
      throw DdfsError.IO(`writing ${this.path} failed: EIO (fault layer)`)
    }
  }

  async put (key: EntryKey, data: Buffer): Promise<EntryInfo> {
    this.refuseFailingWrite(key.id)
    if (data.length <= SEGMENT_SIZE) return toEntryInfo(key, await call(() => this.handle.put(encodeKey(key), data)))
    const h = await this.beginWrite(key, data.length)
    try {
      // Entries above one segment go in 4-segment writes, all in flight at once.
      const chunk = 4 * SEGMENT_SIZE
      const writes: Promise<void>[] = []
      for (let off = 0; off < data.length; off += chunk) writes.push(h.write(off, data.subarray(off, off + chunk)))
      await Promise.all(writes)
      return await h.commit()
    } catch (err) {
      await h.abort()
      throw err
    }
  }

  async putMany (entries: ReadonlyArray<{ key: EntryKey, data: Buffer }>): Promise<void> {
    for (const e of entries) this.refuseFailingWrite(e.key.id)
    if (entries.some((e) => e.data.length > SEGMENT_SIZE)) {
      for (const e of entries) await this.put(e.key, e.data)
      return
    }
    await call(() => this.handle.putMany(entries.map((e) => encodeKey(e.key)), entries.map((e) => e.data)))
  }

  async beginWrite (key: EntryKey, length: number): Promise<WriteHandle> {
    if (!Number.isSafeInteger(length) || length < 0) throw DdfsError.BAD_ARGUMENT(`bad entry length ${length}`)
    const k = encodeKey(key)
    let wid: number
    try {
      wid = this.handle.beginWrite(k, length)
    } catch (err) {
      throw DdfsError.from(err)
    }
    return new NativeWriteHandle(this.handle, wid, key, length)
  }

  async read (key: EntryKey, offset = 0, length?: number): Promise<Buffer> {
    const k = encodeKey(key)
    let len = length
    if (len === undefined) {
      const st = this.handle.stat(k)
      if (st === null) throw DdfsError.NOT_FOUND(`no entry ${key.id.toString('hex')}/${key.kind}/${key.stripe}/${key.index} on ${this.path}`)
      len = st.length - offset
    }
    const [whole, start] = await call(() => this.handle.read(k, offset, len as number))
    ownedAlone(whole)
    return whole.subarray(start, start + (len as number))
  }

  stat (key: EntryKey): EntryInfo | null {
    const e = this.handle.stat(encodeKey(key))
    return e === null ? null : toEntryInfo(key, e)
  }

  list (id: Buffer): EntryInfo[] {
    return this.handle.list(id).map((e) => toEntryInfo(decodeKey(e.key as Buffer), e))
  }

  ids (after: Buffer | null, limit: number): Buffer[] {
    return this.handle.ids(after, limit)
  }

  remove (key: EntryKey): Promise<boolean> {
    return call(() => this.handle.remove(encodeKey(key)))
  }

  async removeId (id: Buffer, mark?: EntryKey): Promise<number> {
    // Leaving a mark is a write (a failing device refuses the step whole).
    if (mark !== undefined) this.refuseFailingWrite(id)
    return await call(() => this.handle.removeId(id, mark === undefined ? undefined : encodeKey(mark)))
  }

  close (): Promise<void> {
    if (this.closing === null) this.closing = call(() => this.handle.close())
    return this.closing
  }
}
