import test from 'brittle'
import crypto from 'node:crypto'
import { listen, type SecureConnection } from '../src/cluster/transport'
import { PeerPool } from '../src/cluster/pool'
import { randomKeyPair } from '../src/cluster/identity'

const HOST = '127.0.0.1'

test('the pool dials each peer once, shares concurrent dials, and redials after a close', async (t) => {
  const secret = crypto.randomBytes(32)
  const serverKeys = randomKeyPair()
  const accepted: SecureConnection[] = []
  const server = await listen({ host: HOST, port: 0, secret, keyPair: serverKeys }, (c) => accepted.push(c))
  t.teardown(() => server.close())
  const pool = new PeerPool({ secret, keyPair: randomKeyPair() })
  t.teardown(() => pool.close())
  const peer = { publicKey: serverKeys.publicKey, host: HOST, port: server.address().port }
  const [a, b] = await Promise.all([pool.get(peer), pool.get(peer)])
  t.is(a, b, 'concurrent gets share one connection')
  t.is(await pool.get(peer), a, 'a later get reuses it')
  await new Promise((resolve) => setImmediate(resolve))
  t.is(accepted.length, 1, 'the server saw one connection')
  const closed = new Promise((resolve) => a.once('close', resolve))
  accepted[0].close()
  await closed
  const c = await pool.get(peer)
  t.not(c, a, 'a closed connection is replaced')
  t.is(pool.size, 1)
})

test('a peer with the wrong identity or an unreachable peer is reported and rejected', async (t) => {
  const secret = crypto.randomBytes(32)
  const server = await listen({ host: HOST, port: 0, secret, keyPair: randomKeyPair() }, () => {})
  t.teardown(() => server.close())
  const pool = new PeerPool({ secret, keyPair: randomKeyPair() })
  t.teardown(() => pool.close())
  const errors: string[] = []
  pool.on('peer-error', (_key, err) => errors.push((err as { code?: string }).code ?? err.message))
  await t.exception(pool.get({ publicKey: randomKeyPair().publicKey, host: HOST, port: server.address().port }), /PERMISSION/)
  const port = server.address().port
  await server.close()
  await t.exception(pool.get({ publicKey: randomKeyPair().publicKey, host: HOST, port }), /NODE_NOT_RUNNING/)
  t.alike(errors, ['PERMISSION', 'NODE_NOT_RUNNING'])
  t.is(pool.size, 0)
})
