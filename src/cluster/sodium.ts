// sodium-native ships no types: the typed subset of it that the cluster code uses. Only this
// file requires the module, so the surface we depend on is listed in one place.
export interface Sodium {
  randombytes_buf (buf: Buffer): void
  crypto_generichash (out: Buffer, input: Buffer, key?: Buffer): void
  crypto_sign_seed_keypair (pk: Buffer, sk: Buffer, seed: Buffer): void
  crypto_sign_detached (sig: Buffer, msg: Buffer, sk: Buffer): void
  crypto_sign_verify_detached (sig: Buffer, msg: Buffer, pk: Buffer): boolean
  crypto_scalarmult_base (pk: Buffer, sk: Buffer): void
  crypto_scalarmult (shared: Buffer, sk: Buffer, pk: Buffer): void
  crypto_aead_xchacha20poly1305_ietf_encrypt (c: Buffer, m: Buffer, ad: Buffer | null, nsec: null, npub: Buffer, k: Buffer): number
  crypto_aead_xchacha20poly1305_ietf_decrypt (m: Buffer, nsec: null, c: Buffer, ad: Buffer | null, npub: Buffer, k: Buffer): number
  crypto_aead_chacha20poly1305_ietf_encrypt (c: Buffer, m: Buffer, ad: Buffer | null, nsec: null, npub: Buffer, k: Buffer): number
  crypto_aead_chacha20poly1305_ietf_decrypt (m: Buffer, nsec: null, c: Buffer, ad: Buffer | null, npub: Buffer, k: Buffer): number
  sodium_memzero (buf: Buffer): void
  crypto_sign_PUBLICKEYBYTES: number
  crypto_sign_SECRETKEYBYTES: number
  crypto_sign_BYTES: number
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const sodium = require('sodium-native') as Sodium

export interface KeyPair {
  publicKey: Buffer
  secretKey: Buffer
}
