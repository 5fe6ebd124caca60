// Outbound connections to other members, one per member, reused across requests: a put or get
// fans out to n members and should not pay a handshake (2 round trips, X25519, two signatures)
// each time. Concurrent callers for the same member share one dial; a closed connection is
// forgotten, so the next get() dials again.
import { EventEmitter } from 'node:events'
import { DdfsError } from '../errors'
import { connect, type SecureConnection, type AeadName } from './transport'
import type { KeyPair } from './sodium'

export interface PeerAddress { publicKey: Buffer, host: string, port: number }

export interface PeerPoolOptions {
  secret: Buffer
  keyPair: KeyPair
  aead?: AeadName
  handshakeTimeout?: number
}

export interface PeerPoolEvents {
  /** A dial failed or an open connection closed with an error: input for failure detection. */
  'peer-error': [publicKey: Buffer, err: Error]
}

export class PeerPool extends EventEmitter<PeerPoolEvents> {
  private readonly conns = new Map<string, SecureConnection>()
  private readonly dials = new Map<string, Promise<SecureConnection>>()
  private closed = false

  constructor (private readonly opts: PeerPoolOptions) {
    super()
  }

  /** The open connection to `peer`, dialing (and proving its identity) if there is none. */
  get (peer: PeerAddress): Promise<SecureConnection> {
    if (this.closed) return Promise.reject(DdfsError.CLOSED('the peer pool is closed'))
    const hex = peer.publicKey.toString('hex')
    const open = this.conns.get(hex)
    if (open !== undefined && !open.closed) return Promise.resolve(open)
    let dial = this.dials.get(hex)
    if (dial === undefined) {
      dial = connect({ ...this.opts, host: peer.host, port: peer.port, remotePublicKey: peer.publicKey }).then((conn) => {
        this.dials.delete(hex)
        if (this.closed) {
          conn.close()
          throw DdfsError.CLOSED('the peer pool is closed')
        }
        this.conns.set(hex, conn)
        conn.on('close', (err) => {
          if (this.conns.get(hex) === conn) this.conns.delete(hex)
          if (err !== null) this.emit('peer-error', peer.publicKey, err)
        })
        return conn
      }, (err: Error) => {
        this.dials.delete(hex)
        this.emit('peer-error', peer.publicKey, err)
        throw err
      })
      this.dials.set(hex, dial)
    }
    return dial
  }

  /** Closes the connection to one peer (e.g. it left the membership). */
  drop (publicKey: Buffer): void {
    const hex = publicKey.toString('hex')
    this.conns.get(hex)?.close()
    this.conns.delete(hex)
  }

  get size (): number { return this.conns.size }

  close (): void {
    this.closed = true
    for (const c of this.conns.values()) c.close()
    this.conns.clear()
  }
}
