// The cluster secret: 32 random bytes in a file only its owner can read. Every key the cluster
// uses is derived from it with keyed BLAKE2b under a distinct context, so publishing one derived
// value (the DHT topic is seen by every DHT node) reveals nothing about the secret or the others.
import fs from 'node:fs'
import { DdfsError } from '../errors'
import { sodium } from './sodium'

export const SECRET_BYTES = 32

export interface ClusterKeys {
  /** DHT topic the members announce under: public inside the DHT, useless without the secret. */
  topic: Buffer
  /** Pre-shared key mixed into every transport handshake. */
  psk: Buffer
  /** Key that encrypts the members' discovery records (their data addresses). */
  recordKey: Buffer
  /** Key that turns an object id into the DHT target its holders announce under. */
  holderKey: Buffer
}

/** Writes a new random secret to `file` with mode 0600; refuses to replace an existing file. */
export function createClusterSecret (file: string): Buffer {
  const secret = Buffer.alloc(SECRET_BYTES)
  sodium.randombytes_buf(secret)
  let fd: number
  try {
    fd = fs.openSync(file, 'wx', 0o600)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') throw DdfsError.BAD_ARGUMENT(`${file} already exists; a cluster secret is never overwritten (remove it yourself if you mean to)`)
    throw DdfsError.IO(`cannot create ${file}: ${(err as Error).message}`)
  }
  try {
    // The umask may have narrowed the mode further; it can never widen it, but make it exact.
    fs.fchmodSync(fd, 0o600)
    fs.writeSync(fd, secret)
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
  return secret
}

/** Reads a secret file, refusing one that others can read or that has the wrong size. */
export function loadClusterSecret (file: string): Buffer {
  let st: fs.Stats
  try {
    st = fs.statSync(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw DdfsError.NOT_FOUND(`cluster secret ${file} does not exist; create one with \`ddfs cluster init -f ${file}\``)
    throw DdfsError.IO(`cannot read cluster secret ${file}: ${(err as Error).message}`)
  }
  if (!st.isFile()) throw DdfsError.BAD_ARGUMENT(`cluster secret ${file} is not a regular file`)
  if ((st.mode & 0o077) !== 0) {
    throw DdfsError.PERMISSION(`cluster secret ${file} has mode ${(st.mode & 0o777).toString(8)}; others may read it: run \`chmod 600 ${file}\``)
  }
  if (st.size !== SECRET_BYTES) throw DdfsError.BAD_ARGUMENT(`cluster secret ${file} has ${st.size} bytes, expected ${SECRET_BYTES}: not a ddfs cluster secret`)
  const secret = fs.readFileSync(file)
  if (secret.length !== SECRET_BYTES) throw DdfsError.BAD_ARGUMENT(`cluster secret ${file} changed while being read`)
  return secret
}

/** Derives the cluster's keys; each is keyed BLAKE2b(context) so none reveals another. */
export function deriveClusterKeys (secret: Buffer): ClusterKeys {
  if (secret.length !== SECRET_BYTES) throw DdfsError.BAD_ARGUMENT(`a cluster secret has ${SECRET_BYTES} bytes, got ${secret.length}`)
  return {
    topic: derive(secret, 'ddfs/v1/dht-topic'),
    psk: derive(secret, 'ddfs/v1/transport-psk'),
    recordKey: derive(secret, 'ddfs/v1/discovery-record'),
    holderKey: derive(secret, 'ddfs/v1/holder-target')
  }
}

function derive (secret: Buffer, context: string): Buffer {
  const out = Buffer.alloc(32)
  sodium.crypto_generichash(out, Buffer.from(context), secret)
  return out
}
