import test from 'brittle'
import fs from 'node:fs'
import path from 'node:path'
import SecretStream from '@hyperswarm/secret-stream'
import DHT from 'hyperdht'
import { createClusterSecret, loadClusterSecret, deriveClusterKeys } from '../src/cluster/secret'
import { loadOrCreateIdentity, IDENTITY_FILE } from '../src/cluster/identity'
import { sodium } from '../src/cluster/sodium'

test('a new cluster secret is 32 random bytes in a file of mode 0600, and is never overwritten', async (t) => {
  const dir = await t.tmp()
  const file = path.join(dir, 'cluster.key')
  const secret = createClusterSecret(file)
  t.is(secret.length, 32)
  t.is(fs.statSync(file).mode & 0o777, 0o600)
  t.ok(fs.readFileSync(file).equals(secret))
  t.ok(loadClusterSecret(file).equals(secret), 'loads back')
  t.exception(() => createClusterSecret(file), /BAD_ARGUMENT: .*already exists/)
  t.ok(fs.readFileSync(file).equals(secret), 'the existing secret is untouched')
  t.not(createClusterSecret(path.join(dir, 'other.key')).toString('hex'), secret.toString('hex'), 'two secrets differ')
})

test('loading a secret refuses a missing file, a file others can read and a file of the wrong size', async (t) => {
  const dir = await t.tmp()
  t.exception(() => loadClusterSecret(path.join(dir, 'none')), /NOT_FOUND/)
  const open = path.join(dir, 'open.key')
  createClusterSecret(open)
  fs.chmodSync(open, 0o644)
  t.exception(() => loadClusterSecret(open), /PERMISSION: .*chmod 600/)
  const short = path.join(dir, 'short.key')
  fs.writeFileSync(short, Buffer.alloc(31), { mode: 0o600 })
  t.exception(() => loadClusterSecret(short), /BAD_ARGUMENT: .*31 bytes/)
  t.exception(() => loadClusterSecret(dir), /BAD_ARGUMENT: .*not a regular file/)
})

test('derived keys are deterministic, distinct from each other and from the secret', async (t) => {
  const dir = await t.tmp()
  const secret = createClusterSecret(path.join(dir, 'k'))
  const a = deriveClusterKeys(secret)
  const b = deriveClusterKeys(Buffer.from(secret))
  t.ok(a.topic.equals(b.topic) && a.psk.equals(b.psk) && a.recordKey.equals(b.recordKey), 'deterministic')
  const all = [secret, a.topic, a.psk, a.recordKey, a.holderKey].map((x) => x.toString('hex'))
  t.is(new Set(all).size, 5, 'all distinct')
  const other = deriveClusterKeys(createClusterSecret(path.join(dir, 'k2')))
  t.not(other.topic.toString('hex'), a.topic.toString('hex'), 'another secret, another topic')
  t.exception(() => deriveClusterKeys(Buffer.alloc(16)), /BAD_ARGUMENT/)
})

test('a node identity is created once (0600), reloads the same, and matches the node and DHT derivations', async (t) => {
  const dir = path.join(await t.tmp(), 'node')
  const kp = loadOrCreateIdentity(dir)
  const file = path.join(dir, IDENTITY_FILE)
  t.is(fs.statSync(file).mode & 0o777, 0o600)
  t.is(fs.statSync(dir).mode & 0o777, 0o700)
  t.ok(loadOrCreateIdentity(dir).publicKey.equals(kp.publicKey), 'same key on reload')
  const seed = fs.readFileSync(file)
  t.ok(SecretStream.keyPair(seed).publicKey.equals(kp.publicKey), 'same as secret-stream keyPair(seed), used by src/node/data-dir.ts')
  t.ok(DHT.keyPair(seed).publicKey.equals(kp.publicKey), 'same as hyperdht keyPair(seed)')
  const sig = Buffer.alloc(64)
  sodium.crypto_sign_detached(sig, Buffer.from('m'), kp.secretKey)
  t.ok(sodium.crypto_sign_verify_detached(sig, Buffer.from('m'), kp.publicKey), 'signs and verifies')
  fs.chmodSync(file, 0o644)
  t.exception(() => loadOrCreateIdentity(dir), /PERMISSION/)
})
