// @hyperswarm/secret-stream ships no types; the part ddfs uses.
declare module '@hyperswarm/secret-stream' {
  import type { Duplex } from 'node:stream'
  interface KeyPair { publicKey: Buffer, secretKey: Buffer }
  interface SecretStreamOptions { keyPair?: KeyPair, publicKey?: Buffer, remotePublicKey?: Buffer }
  class SecretStream extends Duplex {
    constructor (isInitiator: boolean, rawStream: Duplex, opts?: SecretStreamOptions)
    static keyPair (seed?: Buffer): KeyPair
    readonly publicKey: Buffer | null
    readonly remotePublicKey: Buffer | null
    opened: Promise<boolean>
  }
  export = SecretStream
}
