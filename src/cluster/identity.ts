// A node's identity: an ed25519 key pair kept as its 32-byte seed in the data dir (mode 0600).
// The file name and format are the ones src/node/data-dir.ts uses, so both load the same key.
import fs from 'node:fs'
import path from 'node:path'
import { DdfsError } from '../errors'
import { sodium, type KeyPair } from './sodium'

export type { KeyPair } from './sodium'

export const IDENTITY_FILE = 'identity.seed'

/** The key pair for a seed (same derivation as hyperdht's and secret-stream's keyPair(seed)). */
export function keyPairFromSeed (seed: Buffer): KeyPair {
  if (seed.length !== 32) throw DdfsError.BAD_ARGUMENT(`an identity seed has 32 bytes, got ${seed.length}`)
  const publicKey = Buffer.alloc(sodium.crypto_sign_PUBLICKEYBYTES)
  const secretKey = Buffer.alloc(sodium.crypto_sign_SECRETKEYBYTES)
  sodium.crypto_sign_seed_keypair(publicKey, secretKey, seed)
  return { publicKey, secretKey }
}

/** A fresh random key pair (tests, clients without a data dir). */
export function randomKeyPair (): KeyPair {
  const seed = Buffer.alloc(32)
  sodium.randombytes_buf(seed)
  return keyPairFromSeed(seed)
}

/** Loads the node's key pair from `dir`, creating the dir (0700) and the seed (0600) on first use. */
export function loadOrCreateIdentity (dir: string): KeyPair {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  const file = path.join(dir, IDENTITY_FILE)
  let seed: Buffer
  try {
    seed = fs.readFileSync(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw DdfsError.IO(`cannot read ${file}: ${(err as Error).message}`)
    seed = Buffer.alloc(32)
    sodium.randombytes_buf(seed)
    try {
      fs.writeFileSync(file, seed, { mode: 0o600, flag: 'wx' })
    } catch (e) {
      // Another process created it first: use theirs, so one dir never has two identities.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw DdfsError.IO(`cannot write ${file}: ${(e as Error).message}`)
      seed = fs.readFileSync(file)
    }
  }
  const mode = fs.statSync(file).mode
  if ((mode & 0o077) !== 0) throw DdfsError.PERMISSION(`${file} has mode ${(mode & 0o777).toString(8)}; run \`chmod 600 ${file}\``)
  if (seed.length !== 32) throw DdfsError.BAD_ARGUMENT(`${file} is not a 32-byte identity seed`)
  return keyPairFromSeed(seed)
}
