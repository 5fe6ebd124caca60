// The mount's line to the cluster when the node itself hosts the mount (`ddfs node run --mount`):
// direct calls on the node's object store. Compared with a mount process of its own, every byte
// read skips a socket and a process, every request skips framing, and a commit reads the spool
// with no request at all.
import fs from 'node:fs'
import { DdfsError } from '../errors'
import { xxh64 } from '../hash'
import { MAX_PUT_SMALL, MAX_READ, type CapacityMessage } from '../wire/messages'
import { readFile, followFile, openFollowed, single, type Growth, type KeptBytes } from '../node/file-sources'
import type { Node } from '../node/node'
import type { CatalogEntry, ObjectInfo, PutOptions } from '../object/types'
import { commitInfo, type CommitInfo, type SpoolFollow, type StoreLink } from './store-link'

export class InNodeLink implements StoreLink {
  readonly local = true

  constructor (private readonly node: Node) {}

  get address (): string { return `${this.node.opts.host}:${this.node.opts.port} (in process)` }

  async ready (): Promise<void> {}
  async catalog (): Promise<CatalogEntry[]> { return await this.node.objects.catalog() }
  async resolve (name: string): Promise<Buffer | null> { return await this.node.objects.resolveName(name) }
  async setName (name: string, id: Buffer): Promise<void> { await this.node.objects.setName(name, id) }
  async removeName (name: string): Promise<void> { await this.node.objects.removeName(name) }

  async delete (id: Buffer): Promise<void> {
    await this.node.objects.delete(id)
    this.node.log.info('delete', { id: id.toString('hex'), peer: 'mount' })
  }

  async query (id: Buffer): Promise<{ size: number, schema: { k: number, m: number }, createdAt: number }> {
    return await this.node.objects.query(id)
  }

  async read (id: Buffer, offset: number, length: number): Promise<Buffer[]> {
    if (length > MAX_READ) throw DdfsError.BAD_ARGUMENT(`reads are at most ${MAX_READ} bytes`)
    this.node.clients.touch()
    const head = await this.node.objects.head(id)
    const n = Math.max(0, Math.min(length, head.size - offset))
    const pieces: Buffer[] = []
    if (n === 0) return pieces
    // The fragments' own buffers (no copy to join them: the mount copies each into its reply).
    for await (const piece of this.node.objects.get(id, { offset, length: n })) pieces.push(piece)
    this.node.metrics.transferred('out', n)
    return pieces
  }

  async capacity (): Promise<CapacityMessage> { return await this.node.capacity(true) }

  async putSmall (name: string, data: Buffer): Promise<CommitInfo> {
    if (data.length > MAX_PUT_SMALL) throw DdfsError.BAD_ARGUMENT(`a small put has at most ${MAX_PUT_SMALL} bytes`)
    return await this.put(single(data), { size: data.length, name, expectedHash: xxh64(data) })
  }

  async putFile (spool: string, size: number, name: string): Promise<CommitInfo> {
    const fh = await fs.promises.open(spool, 'r')
    try {
      return await this.put(readFile(fh, size), { size, name })
    } finally {
      await fh.close()
    }
  }

  async follow (spool: string, name: string, kept?: KeptBytes): Promise<SpoolFollow> {
    const { fh, direct } = await openFollowed(spool)
    const growth: Growth = { grown: 0, ended: false, failed: null, wake: null }
    const done = this.put(followFile(fh, growth, undefined, direct, kept), { name }, growth).finally(() => { fh.close().catch(() => {}) })
    done.catch(() => {})  // surfaced by end()
    const wake = (): void => growth.wake?.()
    return {
      grow: (size) => { growth.grown = size; wake() },
      end: async (size) => { growth.grown = size; growth.ended = true; wake(); return await done },
      abandon: () => {
        if (growth.ended) return
        growth.failed = DdfsError.CLOSED('the mount abandoned the put')
        wake()
      }
    }
  }

  private async put (source: AsyncIterable<Buffer>, opts: PutOptions, growth?: Growth): Promise<CommitInfo> {
    const info: ObjectInfo = await this.node.objects.put(this.active(source), opts)
    this.node.log.info('put', { id: info.id, size: info.size, peer: 'mount', ...(growth !== undefined ? { fromMemory: growth.fromMemory ?? 0 } : {}) })
    this.node.metrics.transferred('in', info.size)
    return commitInfo(info)
  }

  /** Marks client activity as the bytes flow (repair yields to clients). */
  private async * active (source: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
    for await (const chunk of source) {
      this.node.clients.touch()
      yield chunk
    }
  }

  close (): void {}
}
