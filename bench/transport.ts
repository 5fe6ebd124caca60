// Bulk throughput of one stream between two processes on 127.0.0.1, for each candidate data
// path: plain TCP, @hyperswarm/secret-stream over TCP, and the cluster transport with each AEAD.
// Prints `RESULT transport.<kind> <MB/s> MB/s` and `RESULT transport.<kind>.cpu <s/GiB> s/GiB`
// (sender + receiver CPU seconds per GiB), and per side `.cpu.send` / `.cpu.recv`.
//
//   npm run bench:transport            BENCH_BYTES=268435456 (default 1 GiB), BENCH_FRAME=1048576
import net from 'node:net'
import crypto from 'node:crypto'
import { spawn } from 'node:child_process'
import SecretStream from '@hyperswarm/secret-stream'
import { connect, listen, type AeadName, type SecureConnection } from '../src/cluster/transport'
import { randomKeyPair } from '../src/cluster/identity'
import { secureStream } from '../src/cluster/stream'
import { FrameConnection, type Frame } from '../src/wire/connection'
import { MessageType } from '../src/wire/messages'

const HOST = '127.0.0.1'
const BYTES = Number(process.env.BENCH_BYTES ?? 1024 * 1024 * 1024)
const FRAME = Number(process.env.BENCH_FRAME ?? 1024 * 1024)
const GIB = 1024 * 1024 * 1024
// wire+X: the node protocol's FrameConnection (src/wire: framing + XXH64 per frame) over X.
const KINDS = ['tcp', 'secret-stream', 'aes-256-gcm', 'chacha20-poly1305', 'xchacha20-poly1305', 'sodium-chacha20-poly1305', 'wire+secret-stream', 'wire+aes-256-gcm']
// The secret is only for the benchmark's two processes; passed on argv.
const SECRET = process.env.BENCH_SECRET !== undefined ? Buffer.from(process.env.BENCH_SECRET, 'hex') : crypto.randomBytes(32)

interface SideReport { cpu: number, seconds: number }

function cpuNow (): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

function report (r: SideReport): void {
  process.stdout.write(JSON.stringify(r) + '\n')
}

/** Receiver: counts bytes until BYTES arrived, then answers one byte / frame and reports CPU. */
async function receiver (kind: string): Promise<void> {
  let start = 0
  let cpu0 = 0
  let got = 0
  const begin = (): void => { if (start === 0) { start = Date.now(); cpu0 = cpuNow() } }
  const finish = (ack: () => void): void => {
    report({ cpu: cpuNow() - cpu0, seconds: (Date.now() - start) / 1000 })
    ack()
  }
  if (kind.startsWith('wire+')) {
    const onWire = (fc: FrameConnection): void => {
      fc.on('frame', (f: Frame) => {
        begin()
        got += f.payload.length
        if (got === BYTES) finish(() => fc.send(MessageType.Ok, f.requestId, null, null))
      })
    }
    if (kind === 'wire+secret-stream') {
      const server = net.createServer({ noDelay: true }, (socket) => onWire(new FrameConnection(new SecretStream(false, socket))))
      server.listen(0, HOST, () => process.stdout.write(`PORT ${(server.address() as net.AddressInfo).port}\n`))
    } else {
      const server = await listen({ host: HOST, port: 0, secret: SECRET, keyPair: randomKeyPair() }, (conn) => onWire(new FrameConnection(secureStream(conn))))
      process.stdout.write(`PORT ${server.address().port}\n`)
    }
    return
  }
  if (kind === 'tcp' || kind === 'secret-stream') {
    const server = net.createServer({ noDelay: true }, (socket) => {
      const stream: NodeJS.ReadWriteStream & { on: net.Socket['on'] } = kind === 'tcp' ? socket : new SecretStream(false, socket) as unknown as net.Socket
      stream.on('data', (d: Buffer) => {
        begin()
        got += d.length
        if (got === BYTES) finish(() => stream.write(Buffer.from([1])))
      })
      stream.on('error', () => {})
    })
    server.listen(0, HOST, () => process.stdout.write(`PORT ${(server.address() as net.AddressInfo).port}\n`))
    return
  }
  const server = await listen({ host: HOST, port: 0, secret: SECRET, keyPair: randomKeyPair() }, (conn) => {
    conn.on('frame', (f) => {
      begin()
      got += f.length
      if (got === BYTES) finish(() => conn.send(Buffer.from([1])))
    })
  })
  process.stdout.write(`PORT ${server.address().port}\n`)
}

/** Sender: writes BYTES in FRAME-sized buffers with backpressure and waits for the answer. */
async function sender (kind: string, port: number): Promise<void> {
  const buf = crypto.randomBytes(FRAME)
  let write: (b: Buffer) => boolean
  let onDrain: (fn: () => void) => void
  let acked: Promise<void>
  if (kind.startsWith('wire+')) {
    let fc: FrameConnection
    if (kind === 'wire+secret-stream') {
      const socket = net.connect({ host: HOST, port, noDelay: true })
      const ss = new SecretStream(true, socket)
      fc = new FrameConnection(ss)
      await ss.opened
    } else {
      const conn = await connect({ host: HOST, port, secret: SECRET, keyPair: randomKeyPair() })
      fc = new FrameConnection(secureStream(conn))
    }
    write = (b) => fc.send(MessageType.Data, 1, null, null, b)
    onDrain = (fn) => fc.once('drain', fn)
    acked = new Promise((resolve) => fc.once('frame', () => resolve()))
  } else if (kind === 'tcp' || kind === 'secret-stream') {
    const socket = net.connect({ host: HOST, port, noDelay: true })
    await new Promise((resolve) => socket.once('connect', resolve))
    const stream = kind === 'tcp' ? socket : new SecretStream(true, socket) as unknown as net.Socket
    if (kind === 'secret-stream') await (stream as unknown as SecretStream).opened
    write = (b) => stream.write(b)
    onDrain = (fn) => stream.once('drain', fn)
    acked = new Promise((resolve) => stream.once('data', () => resolve()))
  } else {
    const conn: SecureConnection = await connect({ host: HOST, port, secret: SECRET, keyPair: randomKeyPair(), aead: kind as AeadName })
    write = (b) => conn.send(b)
    onDrain = (fn) => conn.once('drain', fn)
    acked = new Promise((resolve) => conn.once('frame', () => resolve()))
  }
  const start = Date.now()
  const cpu0 = cpuNow()
  let sent = 0
  while (sent < BYTES) {
    const n = Math.min(FRAME, BYTES - sent)
    sent += n
    if (!write(n === FRAME ? buf : buf.subarray(0, n))) await new Promise<void>((resolve) => onDrain(resolve))
  }
  await acked
  report({ cpu: cpuNow() - cpu0, seconds: (Date.now() - start) / 1000 })
  process.exit(0)
}

function spawnRole (args: string[], onLine: (line: string) => void): ReturnType<typeof spawn> {
  const child = spawn(process.execPath, [__filename, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, BENCH_SECRET: SECRET.toString('hex') } })
  let tail = ''
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (d: string) => {
    const lines = (tail + d).split('\n')
    tail = lines.pop() ?? ''
    for (const l of lines) onLine(l)
  })
  return child
}

async function runKind (kind: string): Promise<void> {
  let recvReport: SideReport | null = null
  let sendReport: SideReport | null = null
  const port = await new Promise<number>((resolve) => {
    const rx = spawnRole(['--receiver', kind], (line) => {
      if (line.startsWith('PORT ')) resolve(Number(line.slice(5)))
      else if (line.startsWith('{')) recvReport = JSON.parse(line) as SideReport
    })
    process.once('exit', () => rx.kill('SIGKILL'))
    runKind.current = rx
  })
  await new Promise<void>((resolve) => {
    const tx = spawnRole(['--sender', kind, String(port)], (line) => { if (line.startsWith('{')) sendReport = JSON.parse(line) as SideReport })
    tx.on('exit', () => resolve())
  })
  runKind.current?.kill('SIGKILL')
  await new Promise((resolve) => setTimeout(resolve, 100))
  if (sendReport === null || recvReport === null) {
    console.log(`# ${kind}: failed`)
    return
  }
  const s = sendReport as SideReport
  const r = recvReport as SideReport
  const mbps = BYTES / 1e6 / s.seconds
  const gib = BYTES / GIB
  console.log(`RESULT transport.${kind} ${mbps.toFixed(0)} MB/s`)
  console.log(`RESULT transport.${kind}.cpu ${((s.cpu + r.cpu) / gib).toFixed(2)} s/GiB`)
  console.log(`RESULT transport.${kind}.cpu.send ${(s.cpu / gib).toFixed(2)} s/GiB`)
  console.log(`RESULT transport.${kind}.cpu.recv ${(r.cpu / gib).toFixed(2)} s/GiB`)
  console.log(`# ${kind}: sender ${(s.cpu / gib).toFixed(2)} s/GiB, receiver ${(r.cpu / gib).toFixed(2)} s/GiB, ${s.seconds.toFixed(2)} s for ${(BYTES / 1048576).toFixed(0)} MiB`)
}
runKind.current = null as ReturnType<typeof spawn> | null

async function main (): Promise<void> {
  const only = process.argv.slice(2)
  console.log(`# one stream, two processes, 127.0.0.1, ${(BYTES / 1048576).toFixed(0)} MiB in ${FRAME}-byte writes`)
  for (const kind of KINDS) if (only.length === 0 || only.includes(kind)) await runKind(kind)
}

if (process.argv[2] === '--receiver') receiver(process.argv[3]).catch((err) => { console.error(err); process.exit(1) })
else if (process.argv[2] === '--sender') sender(process.argv[3], Number(process.argv[4])).catch((err) => { console.error(err); process.exit(1) })
else main().catch((err) => { console.error(err); process.exitCode = 1 })
