// One client connection to a node: decodes requests, runs them against the node's object store
// and devices, streams replies. Requests on one connection run one at a time; a malformed frame
// closes only this connection.
import { release } from '../buffers'
import { DdfsError } from '../errors'
import type { FrameConnection, Frame } from '../wire/connection'
import {
  MessageType, putMessage, putEndMessage, getMessage, getHeadMessage, idMessage, deviceMessage,
  listMessage, okMessage, decodeMeta, emptyMessage, putLocalMessage, getLocalMessage,
  entryKeyMessage, entryReplyMessage, entryRemoveMessage, siteCatalogMessage, catalogMessage, nameMessage, nameSetMessage, optionalIdMessage,
  capacityRequest, capacityMessage, MAX_READ, putGrowMessage, messageTypeName, entryStatesRequest, entryStatesMessage,
  idsMessage, fragmentCountsMessage, knownType, drainMessage, rebuildMessage, rebuiltMessage, putSmallMessage, putSmallReply, MAX_PUT_SMALL, mountMessage, createPutMessage
} from '../wire/messages'
import { keyOf } from '../object/records'
import { EntryKind } from '../store/types'
import fs from 'node:fs'
import { Xxh64Stream } from '../hash'
import { OutputFile } from '../client/output-file'
import { readFile, followFile, openFollowed, single } from './file-sources'
import type { Node } from './node'

/** DATA frames of a put queued before the connection is paused: bounds memory per put. */
const PUT_QUEUE_HIGH = 16
/** Payload bytes per DATA frame of a get. */
const GET_CHUNK = 1024 * 1024
/** Node-to-node entry requests served at once per connection; beyond it the connection pauses. */
const ENTRY_REQUESTS_HIGH = 32

interface PutState {
  requestId: number
  queue: Buffer[]
  grown: number    // a following PutLocal: bytes of the file the client said are written
  ended: boolean
  failed: Error | null
  wake: (() => void) | null
  expected: Promise<bigint>
  setExpected: (h: bigint) => void
}

export class Session {
  private busy: Promise<void> = Promise.resolve()
  private put: PutState | null = null
  private discardRequest = -1  // a failed put's request id: its late DATA frames are dropped
  private entryRequests = 0

  constructor (private readonly node: Node, private readonly conn: FrameConnection, readonly admin: boolean, readonly peer: string) {
    conn.on('frame', (f: Frame) => this.onFrame(f))
    conn.on('protocol-error', (err: Error) => node.log.warn('protocol-error', { peer, error: err.message }))
    conn.on('close', () => this.abortPut(DdfsError.CLOSED('connection closed during the put')))
  }

  private onFrame (f: Frame): void {
    if (!knownType(f.type)) {
      // A newer node's request: answered, so it can fall back; the connection stays up.
      this.node.log.warn('unsupported-request', { peer: this.peer, type: f.type })
      this.conn.sendError(f.requestId, DdfsError.UNSUPPORTED(`message type ${f.type} is not known to this node (it runs an older ddfs): upgrade it, or use what it supports`))
      return
    }
    // Frames of a put in progress feed its stream directly; everything else is a new request.
    if (this.put !== null && f.requestId === this.put.requestId && (f.type === MessageType.Data || f.type === MessageType.PutEnd || f.type === MessageType.PutGrow)) {
      this.onPutFrame(this.put, f)
      return
    }
    if (f.requestId === this.discardRequest && (f.type === MessageType.Data || f.type === MessageType.PutEnd || f.type === MessageType.PutGrow)) return
    // Another node's entry requests run side by side (a put keeps several stripes in flight).
    if ((f.type >= MessageType.EntryPut && f.type <= MessageType.ManifestList) || (f.type >= MessageType.CatalogList && f.type !== MessageType.NodeDrain && f.type !== MessageType.NodeMount)) {
      if (++this.entryRequests === ENTRY_REQUESTS_HIGH) this.conn.pause()
      this.timed(f, () => this.entryRequest(f)).catch((err) => {
        const e = DdfsError.from(err)
        if (e.code !== 'NOT_FOUND') this.node.log.warn('entry-request-failed', { peer: this.peer, type: f.type, error: e.message })
        this.conn.sendError(f.requestId, e)
      }).finally(() => {
        if (this.entryRequests-- === ENTRY_REQUESTS_HIGH) this.conn.resume()
      })
      return
    }
    if (f.type === MessageType.Get || f.type === MessageType.GetLocal || f.type === MessageType.Put || f.type === MessageType.PutLocal) this.node.clients.touch()
    // A put's state exists from its first frame, so its DATA frames are never taken for requests.
    if (f.type === MessageType.Put && this.put === null) this.put = newPutState(f.requestId)
    if (f.type === MessageType.PutLocal && this.put === null && this.admin && isFollow(f.meta)) this.put = newPutState(f.requestId)
    this.busy = this.busy.then(() => this.timed(f, () => this.handle(f))).catch((err) => {
      this.node.log.warn('request-failed', { peer: this.peer, type: messageTypeName(f.type), error: DdfsError.from(err).message })
      this.conn.sendError(f.requestId, err)
    })
  }

  private async handle (f: Frame): Promise<void> {
    const rid = f.requestId
    switch (f.type) {
      case MessageType.Put: return this.startPut(rid, f.meta)
      case MessageType.Get: return this.get(rid, decodeMeta(getMessage, f.meta))
      case MessageType.Query: {
        const { id } = decodeMeta(idMessage, f.meta)
        const info = await this.node.objects.query(id)
        this.conn.send(MessageType.Ok, rid, okMessage, jsonSafe(info))
        return
      }
      case MessageType.Delete: {
        const { id } = decodeMeta(idMessage, f.meta)
        await this.node.objects.delete(id)
        this.node.log.info('delete', { id: id.toString('hex'), peer: this.peer })
        this.conn.send(MessageType.Ok, rid, okMessage, { id: id.toString('hex') })
        return
      }
      case MessageType.List: {
        const { after, limit } = decodeMeta(listMessage, f.meta)
        const ids = await this.node.objects.list(after, Math.min(limit, 10000))
        this.conn.send(MessageType.Ok, rid, okMessage, ids.map((i) => i.toString('hex')))
        return
      }
      case MessageType.Status:
        decodeMeta(emptyMessage, f.meta)
        this.conn.send(MessageType.Ok, rid, okMessage, await this.node.status())
        return
      case MessageType.PutLocal:
      case MessageType.GetLocal:
        return this.localFile(f)
      case MessageType.DevAdd:
      case MessageType.DevRem:
      case MessageType.DevQuery:
      case MessageType.NodeStop:
      case MessageType.NodeDrain:
      case MessageType.NodeMount:
        return this.adminRequest(f)
      default:
        throw DdfsError.PROTOCOL(`unexpected message type ${f.type}`)
    }
  }

  /** Runs a request and counts it (type, time, error code) in the node's metrics. */
  private async timed (f: Frame, run: () => Promise<void>): Promise<void> {
    const t0 = process.hrtime.bigint()
    try {
      await run()
      this.node.metrics.request(messageTypeName(f.type), Number(process.hrtime.bigint() - t0) / 1e9)
    } catch (err) {
      this.node.metrics.request(messageTypeName(f.type), Number(process.hrtime.bigint() - t0) / 1e9, DdfsError.from(err).code)
      throw err
    }
  }

  /** A request of another node (or a client) for this node's own entries. */
  private async entryRequest (f: Frame): Promise<void> {
    const rid = f.requestId
    const site = this.node.site
    switch (f.type) {
      case MessageType.EntryPut: {
        const key = decodeMeta(entryKeyMessage, f.meta)
        if (key.background !== true && key.kind === EntryKind.Fragment) this.node.clients.touch()
        if (key.kind !== EntryKind.Fragment && key.kind !== EntryKind.Manifest && key.kind !== EntryKind.Name) throw DdfsError.PROTOCOL(`entries of kind ${key.kind} are not written by peers`)
        await site.putEntry(key, f.payload)
        if (key.kind === EntryKind.Fragment) release(f.payload)  // (manifests and names may live on decoded)
        this.conn.send(MessageType.Ack, rid, emptyMessage, null)
        return
      }
      case MessageType.NamePut: {
        const key = decodeMeta(entryKeyMessage, f.meta)
        const previous = await site.putName(key, f.payload)
        this.conn.send(MessageType.Data, rid, null, null, previous)
        return
      }
      case MessageType.NamePutNew: {
        const key = decodeMeta(entryKeyMessage, f.meta)
        const held = await site.putNewName(key, f.payload)
        if (held === null) this.conn.send(MessageType.Ack, rid, emptyMessage, null)
        else this.conn.send(MessageType.Data, rid, null, null, held)
        return
      }
      case MessageType.CreatePut: {
        this.node.clients.touch()  // a client's create (healing never sends one)
        const { id, nameHash, manifestBytes } = decodeMeta(createPutMessage, f.meta)
        if (manifestBytes > f.payload.length) throw DdfsError.PROTOCOL(`a create put of ${f.payload.length} bytes announces a manifest of ${manifestBytes}`)
        const held = await site.putCreate(id, f.payload.subarray(0, manifestBytes), keyOf(nameHash, EntryKind.Name), f.payload.subarray(manifestBytes))
        if (held === null) this.conn.send(MessageType.Ack, rid, emptyMessage, null)
        else this.conn.send(MessageType.Data, rid, null, null, held)
        return
      }
      case MessageType.EntryGet: {
        const key = decodeMeta(entryKeyMessage, f.meta)
        // Fragments a client's read or write needs (healing's own carry the background flag).
        if (key.background !== true && key.kind === EntryKind.Fragment) this.node.clients.touch()
        if (key.kind === EntryKind.Manifest) {
          const m = await site.getManifest(key.id)
          if (m === null) throw DdfsError.NOT_FOUND(`no manifest of ${key.id.toString('hex')} here`)
          this.conn.send(MessageType.Data, rid, entryReplyMessage, { tombstone: m === 'deleted' }, m === 'deleted' ? null : m)
          return
        }
        const { entry } = await site.getEntry(key)
        const fragment = key.kind === EntryKind.Fragment
        this.conn.send(MessageType.Data, rid, entryReplyMessage, { tombstone: false }, entry, fragment ? () => release(entry) : undefined, fragment)
        return
      }
      case MessageType.EntryList: {
        const { id } = decodeMeta(idMessage, f.meta)
        this.conn.send(MessageType.Ok, rid, okMessage, jsonSafe(await site.listFragments(id)))
        return
      }
      case MessageType.EntryRemove: {
        const { id, tombstone, slot } = decodeMeta(entryRemoveMessage, f.meta)
        if (slot !== undefined) {
          await site.removeSlot(id, slot.kind, slot.index)
          this.conn.send(MessageType.Ack, rid, emptyMessage, null)
          return
        }
        await site.removeId(id, tombstone)
        if (tombstone) this.node.log.info('tombstone', { id: id.toString('hex'), peer: this.peer })
        this.conn.send(MessageType.Ack, rid, emptyMessage, null)
        return
      }
      case MessageType.ManifestList: {
        const { after, limit } = decodeMeta(listMessage, f.meta)
        const ids = await site.listManifests(after, Math.min(limit, 10000))
        this.conn.send(MessageType.Ok, rid, okMessage, ids.map((i) => i.toString('hex')))
        return
      }
      case MessageType.CatalogList:
        decodeMeta(emptyMessage, f.meta)
        this.conn.send(MessageType.Data, rid, siteCatalogMessage, await site.listCatalog())
        return
      // The same names and catalog for clients, cluster-wide (this node coordinates).
      case MessageType.Catalog:
        decodeMeta(emptyMessage, f.meta)
        this.conn.send(MessageType.Data, rid, catalogMessage, await this.node.objects.catalog())
        return
      case MessageType.NameResolve: {
        const { name } = decodeMeta(nameMessage, f.meta)
        this.conn.send(MessageType.Data, rid, optionalIdMessage, { id: await this.node.objects.resolveName(name) })
        return
      }
      case MessageType.NameSet: {
        const { name, id } = decodeMeta(nameSetMessage, f.meta)
        await this.node.objects.setName(name, id)
        this.conn.send(MessageType.Ack, rid, emptyMessage, null)
        return
      }
      case MessageType.NameRemove: {
        const { name } = decodeMeta(nameMessage, f.meta)
        await this.node.objects.removeName(name)
        this.conn.send(MessageType.Ack, rid, emptyMessage, null)
        return
      }
      case MessageType.PutSmall: {
        // A whole small object in one frame, run beside other requests (the mount commits many
        // small files at once on one connection). The name's holders answer what it replaces
        // as they take the new record: the caller deletes that object.
        const { put, hash } = decodeMeta(putSmallMessage, f.meta)
        if (put.size !== f.payload.length || put.size > MAX_PUT_SMALL || put.follow === true) throw DdfsError.BAD_ARGUMENT(`a small put carries its ${put.size} bytes (at most ${MAX_PUT_SMALL}) in its one frame`)
        this.node.clients.touch()
        const info = await this.node.objects.put(single(f.payload), {
          size: put.size, name: put.name ?? undefined, schema: put.k === 0 ? undefined : { k: put.k, m: put.m }, allowDegraded: put.allowDegraded, expectedHash: hash
        })
        this.node.log.info('put', { id: info.id, size: info.size, peer: this.peer })
        this.node.metrics.transferred('in', info.size)
        this.conn.send(MessageType.Data, rid, putSmallReply, { id: Buffer.from(info.id, 'hex'), createdAt: info.createdAt, replaced: info.replaced != null ? Buffer.from(info.replaced, 'hex') : null })
        return
      }
      case MessageType.Read: {
        // A ranged read answered in one frame: the mount reads this way, many at once.
        const { id, offset, length } = decodeMeta(getMessage, f.meta)
        this.node.clients.touch()
        if (length > MAX_READ) throw DdfsError.BAD_ARGUMENT(`a read takes at most ${MAX_READ} bytes`)
        const head = await this.node.objects.head(id)
        const n = Math.max(0, Math.min(length, head.size - offset))
        const out = Buffer.allocUnsafe(n)
        let at = 0
        if (n > 0) for await (const piece of this.node.objects.get(id, { offset, length: n })) { piece.copy(out, at); at += piece.length }
        this.conn.send(MessageType.Data, rid, null, null, out)
        this.node.metrics.transferred('out', n)
        return
      }
      case MessageType.Capacity: {
        const { cluster } = decodeMeta(capacityRequest, f.meta)
        this.conn.send(MessageType.Data, rid, capacityMessage, await this.node.capacity(cluster))
        return
      }
      case MessageType.EntryStates: {
        const { kind, ids } = decodeMeta(entryStatesRequest, f.meta)
        this.conn.send(MessageType.Data, rid, entryStatesMessage, await site.entryStates(kind, ids))
        return
      }
      case MessageType.FragmentCounts:
        this.conn.send(MessageType.Data, rid, fragmentCountsMessage, await site.fragmentCounts(decodeMeta(idsMessage, f.meta)))
        return
      case MessageType.Scrub:
        await site.scrub(decodeMeta(idMessage, f.meta).id)
        this.conn.send(MessageType.Ack, rid, emptyMessage, null)
        return
      case MessageType.Rebuild: {
        const healer = this.node.healer
        if (healer === null) throw DdfsError.BAD_ARGUMENT('a standalone node does not take part in healing')
        const m = decodeMeta(rebuildMessage, f.meta)
        this.conn.send(MessageType.Data, rid, rebuiltMessage, await healer.rebuildHere(f.payload, m))
        return
      }
      case MessageType.Health:
        decodeMeta(emptyMessage, f.meta)
        this.conn.send(MessageType.Ok, rid, okMessage, this.node.health())
        return
      default:
        throw DdfsError.PROTOCOL(`unexpected message type ${f.type}`)
    }
  }

  private async adminRequest (f: Frame): Promise<void> {
    if (!this.admin) {
      this.node.log.warn('admin-refused', { peer: this.peer, type: f.type })
      throw DdfsError.PERMISSION('admin commands are accepted only on the node\'s local socket; run this command on the node\'s machine')
    }
    const rid = f.requestId
    if (f.type === MessageType.NodeStop) {
      decodeMeta(emptyMessage, f.meta)
      this.conn.send(MessageType.Ok, rid, okMessage, { pid: process.pid })
      setImmediate(() => { this.node.stop('node stop').catch(() => {}) })
      return
    }
    if (f.type === MessageType.NodeDrain) {
      const { drain } = decodeMeta(drainMessage, f.meta)
      this.conn.send(MessageType.Ok, rid, okMessage, await this.node.setDraining(drain))
      return
    }
    if (f.type === MessageType.NodeMount) {
      const { mountpoint, writeback } = decodeMeta(mountMessage, f.meta)
      await this.node.mount(mountpoint, writeback)
      this.conn.send(MessageType.Ok, rid, okMessage, { mountpoint, pid: process.pid })
      return
    }
    const { path, format, force } = decodeMeta(deviceMessage, f.meta)
    if (f.type === MessageType.DevAdd) {
      const info = await this.node.attachDevice(path, format)
      this.conn.send(MessageType.Ok, rid, okMessage, info)
    } else if (f.type === MessageType.DevRem) {
      this.conn.send(MessageType.Ok, rid, okMessage, { path, ...await this.node.detachDevice(path, force === true) })
    } else {
      this.conn.send(MessageType.Ok, rid, okMessage, await this.node.devices.info(path))
    }
  }

  // ---- the local fast path: the node reads or writes the client's file itself ----

  private async localFile (f: Frame): Promise<void> {
    if (!this.admin) throw DdfsError.PERMISSION('file paths are accepted only on the node\'s local socket')
    const rid = f.requestId
    if (f.type === MessageType.PutLocal) {
      const { path, put: meta } = decodeMeta(putLocalMessage, f.meta)
      const state = meta.follow === true ? this.put : null
      try {
        if (meta.follow === true && (state === null || state.requestId !== rid)) throw DdfsError.PROTOCOL('a put while another is in progress')
        const { fh, direct } = await (state !== null ? openFollowed(path) : fs.promises.open(path, 'r').then((h) => ({ fh: h, direct: false })))
          .catch((err: Error) => { throw DdfsError.NOT_FOUND(`the node cannot read ${path}: ${err.message}`) })
        try {
          const st = await fh.stat()
          if (!st.isFile() || (state === null && st.size !== meta.size)) throw DdfsError.BAD_ARGUMENT(`${path} is not a regular file of ${meta.size} bytes`)
          const info = await this.node.objects.put(state !== null ? followFile(fh, state, () => this.conn.resume(), direct) : readFile(fh, meta.size), {
            size: state !== null ? undefined : meta.size, name: meta.name ?? undefined, schema: meta.k === 0 ? undefined : { k: meta.k, m: meta.m }, allowDegraded: meta.allowDegraded
          })
          this.node.log.info('put', { id: info.id, size: info.size, peer: this.peer, file: path })
          this.node.metrics.transferred('in', info.size)
          this.conn.send(MessageType.Ok, rid, okMessage, jsonSafe(info))
        } finally {
          await fh.close()
        }
      } catch (err) {
        if (state !== null) this.discardRequest = rid  // its late PutGrow frames are dropped
        throw err
      } finally {
        if (state !== null && this.put === state) this.put = null
      }
      return
    }
    const { id, path } = decodeMeta(getLocalMessage, f.meta)
    const info = await this.node.objects.head(id)
    const out = OutputFile.open(path)
    try {
      const whole = new Xxh64Stream()
      for await (const piece of this.node.objects.get(id)) {
        this.node.clients.touch()
        whole.update(piece)
        const wait = out.write(piece)
        if (wait !== undefined) await wait
      }
      if (whole.digest() !== info.hash) throw DdfsError.CORRUPT(`object ${id.toString('hex')} reads back with a different XXH64 than stored`)
      await out.close()
    } catch (err) {
      out.abort()
      throw err
    }
    this.node.log.info('get', { id: id.toString('hex'), bytes: info.size, peer: this.peer, file: path })
    this.node.metrics.transferred('out', info.size)
    this.conn.send(MessageType.Ok, rid, okMessage, { id: id.toString('hex'), size: info.size })
  }

  // ---- put: DATA frames feed an async iterable that the object store consumes ----

  private async startPut (rid: number, raw: Buffer): Promise<void> {
    const state = this.put
    try {
      if (state === null || state.requestId !== rid) throw DdfsError.PROTOCOL('a put while another is in progress')
      const meta = decodeMeta(putMessage, raw)
      const schema = meta.k === 0 ? undefined : { k: meta.k, m: meta.m }
      const info = await this.node.objects.put(this.putSource(state), {
        size: meta.size, name: meta.name ?? undefined, schema, allowDegraded: meta.allowDegraded, expectedHash: state.expected
      })
      this.node.log.info('put', { id: info.id, size: info.size, peer: this.peer })
      this.node.metrics.transferred('in', info.size)
      this.conn.send(MessageType.Ok, rid, okMessage, jsonSafe(info))
    } catch (err) {
      this.discardRequest = rid
      throw err
    } finally {
      if (this.put === state) this.put = null
      this.conn.resume()
    }
  }

  private onPutFrame (state: PutState, f: Frame): void {
    try {
      if (f.type === MessageType.Data) {
        this.node.clients.touch()
        if (state.ended) throw DdfsError.PROTOCOL('data after the end of a put')
        state.queue.push(f.payload)
        if (state.queue.length >= PUT_QUEUE_HIGH) this.conn.pause()
      } else if (f.type === MessageType.PutGrow) {
        const g = decodeMeta(putGrowMessage, f.meta)
        if (state.ended || g.size < state.grown) throw DdfsError.PROTOCOL('a put cannot shrink or grow after its end')
        state.grown = g.size
        state.ended = g.final
      } else {
        state.setExpected(decodeMeta(putEndMessage, f.meta).hash)
        state.ended = true
      }
    } catch (err) {
      state.failed = err as Error
    }
    state.wake?.()
  }

  private async * putSource (state: PutState): AsyncIterable<Buffer> {
    for (;;) {
      if (state.failed !== null) throw state.failed
      const chunk = state.queue.shift()
      if (chunk !== undefined) {
        if (state.queue.length < PUT_QUEUE_HIGH / 2) this.conn.resume()
        yield chunk
        continue
      }
      if (state.ended) return  // the object layer checks the whole XXH64 against state.expected
      this.conn.resume()
      await new Promise<void>((resolve) => { state.wake = resolve })
      state.wake = null
    }
  }

  private abortPut (err: Error): void {
    const state = this.put
    if (state === null) return
    state.failed = err
    state.wake?.()
  }

  // ---- get: stream the object in DATA frames, waiting for 'drain' when the socket is full ----

  private async get (rid: number, req: { id: Buffer, offset: number, length: number }): Promise<void> {
    const info = await this.node.objects.head(req.id)
    const length = req.length === 0xffffffffffff ? info.size - req.offset : req.length
    const source = this.node.objects.get(req.id, { offset: req.offset, length })
    this.conn.send(MessageType.GetHead, rid, getHeadMessage, { size: length, hash: info.hash })
    for await (const piece of source) {
      this.node.clients.touch()
      for (let off = 0; off < piece.length; off += GET_CHUNK) {
        if (this.conn.closed) throw DdfsError.CLOSED('client went away during a get')
        const ok = this.conn.send(MessageType.Data, rid, null, null, piece.subarray(off, off + GET_CHUNK))
        if (!ok) await new Promise<void>((resolve) => { this.conn.once('drain', resolve); this.conn.once('close', resolve) })
      }
    }
    this.conn.send(MessageType.GetEnd, rid, emptyMessage, null)
    this.node.log.info('get', { id: req.id.toString('hex'), bytes: length, peer: this.peer })
    this.node.metrics.transferred('out', length)
  }
}

function isFollow (meta: Buffer): boolean {
  try {
    return decodeMeta(putLocalMessage, meta).put.follow === true
  } catch {
    return false  // the request itself reports the malformed message
  }
}

function newPutState (requestId: number): PutState {
  let setExpected: (h: bigint) => void = () => {}
  const expected = new Promise<bigint>((resolve) => { setExpected = resolve })
  return { requestId, queue: [], grown: 0, ended: false, failed: null, wake: null, expected, setExpected }
}

/** bigint hashes as 16 hex chars, so replies can be JSON. */
function jsonSafe (value: unknown): unknown {
  return JSON.parse(JSON.stringify(value, (_k, v) => typeof v === 'bigint' ? v.toString(16).padStart(16, '0') : v))
}
