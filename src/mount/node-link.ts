// The mount's line to its node when the mount runs in a process of its own: the client protocol
// with many requests in flight (the kernel sends reads of several files at once), over the node's
// local socket or the cluster transport. Commits of written files go through their own Client (a
// put streams over one connection).
import fs from 'node:fs'
import type c from 'compact-encoding'
import { DdfsError } from '../errors'
import { Client, connectFrames, type ConnectOptions } from '../client/client'
import { RpcConnection } from '../wire/rpc'
import type { Frame } from '../wire/connection'
import {
  MessageType, emptyMessage, catalogMessage, nameMessage, nameSetMessage, optionalIdMessage, idMessage, getMessage,
  capacityRequest, capacityMessage, okMessage, decodeMeta, MAX_READ, putSmallMessage, putSmallReply, MAX_PUT_SMALL,
  type CapacityMessage
} from '../wire/messages'
import { xxh64 } from '../hash'
import type { CatalogEntry } from '../object/types'
import { commitInfo, type CommitInfo, type SpoolFollow, type StoreLink } from './store-link'

const TIMEOUT_MS = 60_000

export class NodeLink implements StoreLink {
  private rpc: RpcConnection | null = null
  private connecting: Promise<RpcConnection> | null = null
  local = false

  constructor (readonly opts: ConnectOptions) {}

  get address (): string { return `${this.opts.host}:${this.opts.port}` }

  /** Connects (again, after the node restarted) on demand. */
  private async connection (): Promise<RpcConnection> {
    if (this.rpc !== null && !this.rpc.closed) return this.rpc
    this.connecting ??= connectFrames(this.opts).then(({ conn, local }) => {
      this.local = local
      this.rpc = new RpcConnection(conn, this.address)
      return this.rpc
    }).finally(() => { this.connecting = null })
    return await this.connecting
  }

  private async call<T> (type: MessageType, enc: c.Encoder<T>, meta: T, payload: Buffer | null = null): Promise<Frame> {
    return await (await this.connection()).request(type, enc, meta, payload, TIMEOUT_MS)
  }

  async ready (): Promise<void> { await this.connection() }

  async catalog (): Promise<CatalogEntry[]> {
    return decodeMeta(catalogMessage, (await this.call(MessageType.Catalog, emptyMessage, null)).meta)
  }

  async resolve (name: string): Promise<Buffer | null> {
    return decodeMeta(optionalIdMessage, (await this.call(MessageType.NameResolve, nameMessage, { name })).meta).id
  }

  async setName (name: string, id: Buffer): Promise<void> { await this.call(MessageType.NameSet, nameSetMessage, { name, id }) }
  async removeName (name: string): Promise<void> { await this.call(MessageType.NameRemove, nameMessage, { name }) }
  async delete (id: Buffer): Promise<void> { await this.call(MessageType.Delete, idMessage, { id }) }

  async query (id: Buffer): Promise<{ size: number, schema: { k: number, m: number }, createdAt: number }> {
    return decodeMeta(okMessage, (await this.call(MessageType.Query, idMessage, { id })).meta) as { size: number, schema: { k: number, m: number }, createdAt: number }
  }

  /** Up to MAX_READ bytes at `offset` (fewer at the end of the object). */
  async read (id: Buffer, offset: number, length: number): Promise<Buffer[]> {
    if (length > MAX_READ) throw DdfsError.BAD_ARGUMENT(`reads are at most ${MAX_READ} bytes`)
    return [(await this.call(MessageType.Read, getMessage, { id, offset, length })).payload]
  }

  async capacity (): Promise<CapacityMessage> {
    return decodeMeta(capacityMessage, (await this.call(MessageType.Capacity, capacityRequest, { cluster: true })).meta)
  }

  /**
   * A whole object of at most MAX_PUT_SMALL bytes as a new object named `name`, in one request
   * on the shared connection (many at once); resolves with its id and what the name stood for.
   */
  async putSmall (name: string, data: Buffer): Promise<CommitInfo> {
    if (data.length > MAX_PUT_SMALL) throw DdfsError.BAD_ARGUMENT(`a small put has at most ${MAX_PUT_SMALL} bytes`)
    const put = { size: data.length, name, k: 0, m: 0, allowDegraded: false }
    return decodeMeta(putSmallReply, (await this.call(MessageType.PutSmall, putSmallMessage, { put, hash: xxh64(data) }, data)).meta)
  }

  /** Over a connection of its own (a put streams, so it cannot share). */
  async putFile (spool: string, size: number, name: string): Promise<CommitInfo> {
    const client = await Client.connect(this.opts)
    try {
      const meta = { size, name, k: 0, m: 0, allowDegraded: false }
      return commitInfo(client.local
        ? await client.putLocal(spool, meta) as Record<string, unknown>
        : await client.put(fs.createReadStream(spool, { highWaterMark: 1024 * 1024 }), meta))
    } finally {
      client.close()
    }
  }

  async follow (spool: string, name: string): Promise<SpoolFollow> {
    const client = await Client.connect(this.opts)
    const put = client.putLocalFollow(spool, { size: 0, name, k: 0, m: 0, allowDegraded: false })
    return {
      grow: put.grow,
      end: async (size) => {
        try {
          return commitInfo(await put.end(size))
        } finally {
          client.close()
        }
      },
      abandon: () => client.close()  // the node drops the partial object
    }
  }

  close (): void {
    this.rpc?.close()
  }
}
