// Another node's entries, reached over the cluster transport: the requests of the node-to-node
// protocol (src/wire/messages.ts, EntryPut .. ManifestList) behind the EntrySite interface.
import { DdfsError } from '../errors'
import { EntryKind, type EntryKey } from '../store/types'
import type { EntryOptions, EntrySite, FragmentLocation, SiteCatalog } from '../object/types'
import type { RpcConnection } from '../wire/rpc'
import {
  MessageType, entryKeyMessage, entryReplyMessage, entryRemoveMessage, idMessage, listMessage, okMessage, decodeMeta,
  emptyMessage, siteCatalogMessage, capacityRequest, capacityMessage, entryStatesRequest, entryStatesMessage, idsMessage,
  fragmentCountsMessage, rebuildMessage, rebuiltMessage, createPutMessage
} from '../wire/messages'
import { keyOf } from '../object/records'

/** A node that does not answer within this long counts as unreachable for that request. */
const DATA_TIMEOUT_MS = 30_000
const CONTROL_TIMEOUT_MS = 10_000
/** A delegated rebuild of up to MAX_REBUILD_STRIPES stripes, throttled behind client traffic. */
const REBUILD_TIMEOUT_MS = 300_000

export class RemoteSite implements EntrySite {
  constructor (readonly label: string, private readonly connect: () => Promise<RpcConnection>) {}

  async putEntry (key: EntryKey, data: Buffer, opts?: EntryOptions): Promise<void> {
    const f = await (await this.rpc()).request(MessageType.EntryPut, entryKeyMessage, { ...key, background: opts?.background }, data, DATA_TIMEOUT_MS)
    expect(f.type, MessageType.Ack, this.label)
  }

  async putName (key: EntryKey, record: Buffer): Promise<Buffer | null> {
    let f
    try {
      f = await (await this.rpc()).request(MessageType.NamePut, entryKeyMessage, key, record, DATA_TIMEOUT_MS)
    } catch (err) {
      if (DdfsError.from(err).code !== 'UNSUPPORTED') throw err
      // A node of an older ddfs (mid-upgrade): the record goes in as a plain entry, and what it
      // replaced there stays unknown (the other holders may tell).
      await this.putEntry(key, record)
      return null
    }
    expect(f.type, MessageType.Data, this.label)
    return f.payload.length > 0 ? f.payload : null
  }

  async putNewName (key: EntryKey, record: Buffer): Promise<Buffer | null> {
    let f
    try {
      f = await (await this.rpc()).request(MessageType.NamePutNew, entryKeyMessage, key, record, DATA_TIMEOUT_MS)
    } catch (err) {
      // A node of an older ddfs cannot tell: the name is set the careful way, after its object.
      if (DdfsError.from(err).code === 'UNSUPPORTED') return Buffer.alloc(0)
      throw err
    }
    if (f.type === MessageType.Ack) return null
    expect(f.type, MessageType.Data, this.label)
    return f.payload
  }

  async putCreate (id: Buffer, manifest: Buffer, nameKey: EntryKey, record: Buffer): Promise<Buffer | null> {
    let f
    try {
      f = await (await this.rpc()).request(MessageType.CreatePut, createPutMessage, { id, nameHash: nameKey.id, manifestBytes: manifest.length }, Buffer.concat([manifest, record]), DATA_TIMEOUT_MS)
    } catch (err) {
      if (DdfsError.from(err).code !== 'UNSUPPORTED') throw err
      // A node of an older ddfs (mid-upgrade): the two writes one by one.
      const [, held] = await Promise.all([this.putEntry(keyOf(id, EntryKind.Manifest), manifest), this.putNewName(nameKey, record)])
      return held
    }
    if (f.type === MessageType.Ack) return null
    expect(f.type, MessageType.Data, this.label)
    return f.payload
  }

  async getEntry (key: EntryKey, opts?: EntryOptions): Promise<{ entry: Buffer, verified: boolean }> {
    // A fragment's reader checks it against its trailer and manifest (verified: false says so).
    const f = await (await this.rpc()).request(MessageType.EntryGet, entryKeyMessage, { ...key, background: opts?.background }, null, DATA_TIMEOUT_MS, key.kind === EntryKind.Fragment)
    expect(f.type, MessageType.Data, this.label)
    return { entry: f.payload, verified: false }
  }

  async rebuild (manifest: Buffer, id: Buffer, indices: number[], first: number, count: number, urgent: boolean): Promise<number> {
    const f = await (await this.rpc()).request(MessageType.Rebuild, rebuildMessage, { id, indices, first, count, urgent }, manifest, REBUILD_TIMEOUT_MS)
    expect(f.type, MessageType.Data, this.label)
    return decodeMeta(rebuiltMessage, f.meta)
  }

  async getManifest (id: Buffer): Promise<Buffer | 'deleted' | null> {
    try {
      const f = await (await this.rpc()).request(MessageType.EntryGet, entryKeyMessage, { id, kind: 1, stripe: 0, index: 0 }, null, CONTROL_TIMEOUT_MS)
      expect(f.type, MessageType.Data, this.label)
      return decodeMeta(entryReplyMessage, f.meta).tombstone ? 'deleted' : f.payload
    } catch (err) {
      if (DdfsError.from(err).code === 'NOT_FOUND') return null
      throw err
    }
  }

  async listFragments (id: Buffer): Promise<FragmentLocation[]> {
    const f = await (await this.rpc()).request(MessageType.EntryList, idMessage, { id }, null, CONTROL_TIMEOUT_MS)
    expect(f.type, MessageType.Ok, this.label)
    const list = decodeMeta(okMessage, f.meta) as Array<FragmentLocation & { hash: string }>
    return list.map((x) => ({ ...x, hash: BigInt(`0x${x.hash}`) }))
  }

  async removeId (id: Buffer, tombstone: boolean): Promise<void> {
    const f = await (await this.rpc()).request(MessageType.EntryRemove, entryRemoveMessage, { id, tombstone }, null, CONTROL_TIMEOUT_MS)
    expect(f.type, MessageType.Ack, this.label)
  }

  async listManifests (after: Buffer | null, limit: number): Promise<Buffer[]> {
    const f = await (await this.rpc()).request(MessageType.ManifestList, listMessage, { after, limit }, null, CONTROL_TIMEOUT_MS)
    expect(f.type, MessageType.Ok, this.label)
    return (decodeMeta(okMessage, f.meta) as string[]).map((h) => Buffer.from(h, 'hex'))
  }

  async listCatalog (): Promise<SiteCatalog> {
    const f = await (await this.rpc()).request(MessageType.CatalogList, emptyMessage, null, null, CONTROL_TIMEOUT_MS)
    expect(f.type, MessageType.Data, this.label)
    return decodeMeta(siteCatalogMessage, f.meta)
  }

  async capacity (): Promise<{ size: number, free: number }> {
    const f = await (await this.rpc()).request(MessageType.Capacity, capacityRequest, { cluster: false }, null, CONTROL_TIMEOUT_MS)
    expect(f.type, MessageType.Data, this.label)
    return decodeMeta(capacityMessage, f.meta)
  }

  async entryStates (kind: number, ids: Buffer[]): Promise<number[]> {
    const f = await (await this.rpc()).request(MessageType.EntryStates, entryStatesRequest, { kind, ids }, null, CONTROL_TIMEOUT_MS)
    expect(f.type, MessageType.Data, this.label)
    const states = decodeMeta(entryStatesMessage, f.meta)
    if (states.length !== ids.length) throw DdfsError.PROTOCOL(`${this.label} answered ${states.length} entry states for ${ids.length} ids`)
    return states
  }

  async fragmentCounts (ids: Buffer[]): Promise<number[][]> {
    const f = await (await this.rpc()).request(MessageType.FragmentCounts, idsMessage, ids, null, CONTROL_TIMEOUT_MS)
    expect(f.type, MessageType.Data, this.label)
    const counts = decodeMeta(fragmentCountsMessage, f.meta)
    if (counts.length !== ids.length) throw DdfsError.PROTOCOL(`${this.label} answered ${counts.length} fragment counts for ${ids.length} ids`)
    return counts
  }

  async removeSlot (id: Buffer, kind: number, index: number): Promise<void> {
    const f = await (await this.rpc()).request(MessageType.EntryRemove, entryRemoveMessage, { id, tombstone: false, slot: { kind, index } }, null, CONTROL_TIMEOUT_MS)
    expect(f.type, MessageType.Ack, this.label)
  }

  async scrub (id: Buffer): Promise<void> {
    const f = await (await this.rpc()).request(MessageType.Scrub, idMessage, { id }, null, DATA_TIMEOUT_MS)
    expect(f.type, MessageType.Ack, this.label)
  }

  /** The node's durability report (JSON, for status). */
  async health (): Promise<unknown> {
    const f = await (await this.rpc()).request(MessageType.Health, emptyMessage, null, null, CONTROL_TIMEOUT_MS)
    expect(f.type, MessageType.Ok, this.label)
    return decodeMeta(okMessage, f.meta)
  }

  private async rpc (): Promise<RpcConnection> {
    try {
      return await this.connect()
    } catch (err) {
      throw DdfsError.UNAVAILABLE(`node ${this.label} is unreachable: ${DdfsError.from(err).message}`)
    }
  }
}

function expect (got: number, want: MessageType, label: string): void {
  if (got !== want) throw DdfsError.PROTOCOL(`${label} answered with message type ${got}, expected ${want}`)
}
