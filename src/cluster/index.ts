// The cluster layer's public surface: identity, secret, transport, discovery, placement.
export { createClusterSecret, loadClusterSecret, deriveClusterKeys, SECRET_BYTES, type ClusterKeys } from './secret'
export { loadOrCreateIdentity, keyPairFromSeed, randomKeyPair, IDENTITY_FILE, type KeyPair } from './identity'
export { connect, listen, SecureConnection, SecureServer, MAX_FRAME, DEFAULT_AEAD, type ConnectOptions, type ListenOptions, type TransportOptions, type AeadName } from './transport'
export { Discovery, startBootstrap, parseAddress, type DiscoveryOptions, type Member, type Address } from './discovery'
export { secureStream } from './stream'
export { PeerPool, type PeerAddress, type PeerPoolOptions } from './pool'
export { fragmentHolders, fragmentSpread, manifestRank, manifestHolders, nameHolders, nameHash, assignFragments, fragmentMoves, rank, type PlacementMember, type FragmentMove } from './placement'
