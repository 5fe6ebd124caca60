// hyperdht ships no types; the part of its API (and of dht-rpc's underneath) ddfs uses.
declare module 'hyperdht' {
  import { EventEmitter } from 'node:events'

  interface KeyPair { publicKey: Buffer, secretKey: Buffer }
  interface NodeAddress { host: string, port: number }
  interface PeerRecord { publicKey: Buffer, relayAddresses: NodeAddress[] }
  interface LookupReply { from: NodeAddress & { id: Buffer | null }, to: NodeAddress | null, peers: PeerRecord[] }

  interface Query<T> extends AsyncIterable<T> {
    finished (): Promise<void>
    destroy (): void
    readonly closestNodes: Array<NodeAddress & { id: Buffer }>
    /** dht-rpc counters: replies received and requests that failed. */
    readonly successes: number
    readonly errors: number
    readonly inflight: number
  }

  interface MutableRecord { value: Buffer, seq: number, signature: Buffer, from: NodeAddress }

  interface DHTOptions {
    bootstrap?: string[] | Array<NodeAddress> | false
    host?: string
    port?: number
    anyPort?: boolean
    ephemeral?: boolean
    firewalled?: boolean
    keyPair?: KeyPair
    seed?: Buffer
    nodes?: NodeAddress[]
    concurrency?: number
    /** dht-rpc: max in-flight requests of this node overall. */
    maxWindow?: number
  }

  class HyperDHT extends EventEmitter {
    constructor (opts?: DHTOptions)
    static bootstrapper (port: number, host: string, opts?: DHTOptions): HyperDHT
    static keyPair (seed?: Buffer): KeyPair
    static hash (data: Buffer): Buffer
    readonly defaultKeyPair: KeyPair
    readonly bootstrapNodes: NodeAddress[]
    readonly destroyed: boolean
    readonly ephemeral: boolean
    readonly firewalled: boolean
    /** Routing table id (null while ephemeral). */
    readonly id: Buffer | null
    readonly host: string | null
    readonly port: number
    readonly stats: { queries: { active: number, total: number }, requests: { active: number, total: number } }
    ready (): Promise<void>
    fullyBootstrapped (): Promise<void>
    address (): NodeAddress & { family: number }
    addNode (node: NodeAddress): void
    toArray (opts?: { limit?: number }): NodeAddress[]
    announce (target: Buffer, keyPair: KeyPair, relayAddresses?: NodeAddress[], opts?: object): Query<LookupReply>
    unannounce (target: Buffer, keyPair: KeyPair, opts?: object): Promise<void>
    lookup (target: Buffer, opts?: object): Query<LookupReply>
    findNode (target: Buffer, opts?: object): Query<unknown>
    mutablePut (keyPair: KeyPair, value: Buffer, opts?: { seq?: number, retries?: number }): Promise<{ publicKey: Buffer, seq: number, signature: Buffer }>
    mutableGet (publicKey: Buffer, opts?: { seq?: number, latest?: boolean, retries?: number }): Promise<MutableRecord | null>
    immutablePut (value: Buffer): Promise<{ hash: Buffer }>
    immutableGet (hash: Buffer): Promise<{ value: Buffer } | null>
    destroy (opts?: { force?: boolean }): Promise<void>
  }

  export = HyperDHT
}

declare module 'hyperdht/testnet' {
  import HyperDHT = require('hyperdht')
  interface Testnet {
    nodes: HyperDHT[]
    bootstrap: Array<{ host: string, port: number }>
    createNode (opts?: object): HyperDHT
    destroy (): Promise<void>
  }
  function createTestnet (size?: number, opts?: { host?: string, port?: number, bootstrap?: unknown[], teardown?: (fn: () => unknown) => void }): Promise<Testnet>
  export = createTestnet
}
