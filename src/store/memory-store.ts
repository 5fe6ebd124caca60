// A BlockStore in memory: the sink the object layer's unit tests and benchmarks write to, so
// they measure and check the object layer alone. Same contract as the native store (copies
// what it is given; reads return what was written or NOT_FOUND), no durability.
import crypto from 'node:crypto'
import { DdfsError } from '../errors'
import { BLOCK_SIZE } from '../constants'
import { xxh64 } from '../hash'
import { encodeKey } from './keys'
import type { BlockStore, DeviceInfo, EntryInfo, EntryKey, WriteHandle } from './types'

interface Stored { key: EntryKey, data: Buffer, info: EntryInfo }

export class MemoryStore implements BlockStore {
  private readonly entries = new Map<string, Stored>()
  private usedBlocks = 0
  private nextBlock = 1
  private readonly sbId = crypto.randomBytes(16).toString('hex')

  constructor (readonly path = 'memory', private readonly size = 1 << 30) {}

  info (): DeviceInfo {
    const usedSize = this.usedBlocks * BLOCK_SIZE
    return {
      path: this.path, major: 0, minor: 0, sbId: this.sbId, size: this.size, usedSize, freeSize: this.size - usedSize,
      bsize: BLOCK_SIZE, blocks: this.size / BLOCK_SIZE, usedBlocks: this.usedBlocks, inodesTreeBlock: 0, bmBlock: 0, bmBlocks: 0,
      entries: this.entries.size, generation: 1
    }
  }

  async putMany (entries: ReadonlyArray<{ key: EntryKey, data: Buffer }>): Promise<void> {
    const blocks = entries.reduce((sum, e) => sum + Math.ceil(e.data.length / BLOCK_SIZE), 0)
    if ((this.usedBlocks + blocks) * BLOCK_SIZE > this.size) throw DdfsError.DEVICE_FULL(`${this.path} is full`)
    for (const e of entries) await this.put(e.key, e.data)
  }

  async put (key: EntryKey, data: Buffer): Promise<EntryInfo> {
    const k = encodeKey(key).toString('hex')
    const blocks = Math.ceil(data.length / BLOCK_SIZE)
    const old = this.entries.get(k)
    if ((this.usedBlocks - (old?.info.blocks ?? 0) + blocks) * BLOCK_SIZE > this.size) throw DdfsError.DEVICE_FULL(`${this.path} is full`)
    if (old !== undefined) this.usedBlocks -= old.info.blocks
    const info: EntryInfo = { key, block: this.nextBlock, blocks, length: data.length, hash: xxh64(data) }
    this.nextBlock += blocks
    this.usedBlocks += blocks
    this.entries.set(k, { key, data: Buffer.from(data), info })
    return info
  }

  async beginWrite (key: EntryKey, length: number): Promise<WriteHandle> {
    const buf = Buffer.alloc(length)
    return {
      key,
      length,
      write: async (offset: number, data: Buffer): Promise<void> => { data.copy(buf, offset) },
      commit: async (): Promise<EntryInfo> => await this.put(key, buf),
      abort: async (): Promise<void> => {}
    }
  }

  async read (key: EntryKey, offset = 0, length?: number): Promise<Buffer> {
    const e = this.entries.get(encodeKey(key).toString('hex'))
    if (e === undefined) throw DdfsError.NOT_FOUND(`no entry ${key.id.toString('hex')}/${key.kind}/${key.stripe}/${key.index} on ${this.path}`)
    const len = length ?? e.data.length - offset
    if (offset + len > e.data.length) throw DdfsError.BAD_ARGUMENT('read past the end of the entry')
    return e.data.subarray(offset, offset + len)
  }

  stat (key: EntryKey): EntryInfo | null {
    return this.entries.get(encodeKey(key).toString('hex'))?.info ?? null
  }

  list (id: Buffer): EntryInfo[] {
    const prefix = id.toString('hex')
    return [...this.entries].filter(([k]) => k.startsWith(prefix)).sort(([a], [b]) => a < b ? -1 : 1).map(([, e]) => e.info)
  }

  ids (after: Buffer | null, limit: number): Buffer[] {
    const ids = new Set<string>()
    for (const k of this.entries.keys()) ids.add(k.slice(0, 32))
    const from = after?.toString('hex') ?? ''
    return [...ids].filter((i) => i > from).sort().slice(0, limit).map((i) => Buffer.from(i, 'hex'))
  }

  async remove (key: EntryKey): Promise<boolean> {
    const k = encodeKey(key).toString('hex')
    const e = this.entries.get(k)
    if (e === undefined) return false
    this.usedBlocks -= e.info.blocks
    this.entries.delete(k)
    return true
  }

  async removeId (id: Buffer, mark?: EntryKey): Promise<number> {
    let n = 0
    for (const e of this.list(id)) if (await this.remove(e.key)) n++
    if (mark !== undefined) await this.put(mark, Buffer.alloc(0))
    return n
  }

  async close (): Promise<void> {}
}

