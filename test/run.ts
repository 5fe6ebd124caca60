// Runs every test/*.test.js file (compiled to dist/test) in its own node process, so a crash,
// a leaked handle or a hung mount in one file cannot take the others with it, and prints
// brittle's top-level results plus a last line "N passed, N failed" for CI.
//
//   node dist/test/run.js [name-filter ...]   e.g. node dist/test/run.js store
//   DDFS_TEST_TIMEOUT=600 (seconds per file)
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

interface FileResult { file: string, passed: number, failed: number, seconds: number }

const dir = __dirname
const filters = process.argv.slice(2)
const timeoutSeconds = Number(process.env.DDFS_TEST_TIMEOUT ?? 900)

function testFiles (): string[] {
  return fs.readdirSync(dir)
    .filter((f) => f.endsWith('.test.js'))
    .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
    .sort()
}

function runFile (file: string): Promise<FileResult> {
  const started = Date.now()
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(dir, file)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let passed = 0
    let failed = 0
    let tail = ''
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL') }, timeoutSeconds * 1000)
    const onLine = (line: string): void => {
      // brittle prints one unindented "ok N - name" / "not ok N - name" per top-level test.
      if (/^ok \d+/.test(line)) passed++
      else if (/^not ok \d+/.test(line)) failed++
    }
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      process.stdout.write(chunk)
      const lines = (tail + chunk).split('\n')
      tail = lines.pop() ?? ''
      for (const l of lines) onLine(l)
    })
    child.stderr.on('data', (chunk: Buffer) => process.stderr.write(chunk))
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      onLine(tail)
      // A file that died, hung or exited non-zero without a failing test counts one failure.
      if (timedOut) { console.log(`not ok - ${file} timed out after ${timeoutSeconds}s`); failed++ } else if ((code !== 0 || signal !== null) && failed === 0) {
        console.log(`not ok - ${file} exited with ${signal ?? code}`)
        failed++
      }
      resolve({ file, passed, failed, seconds: (Date.now() - started) / 1000 })
    })
  })
}

/**
 * A file that crashed (an abort, a kill on timeout) skips its teardowns: the FUSE mounts its
 * process served are left dead ("Transport endpoint is not connected") under the temp dir.
 */
function sweepDeadMounts (file: string): void {
  const prefix = path.join(os.tmpdir(), 'ddfs-')
  const dead = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' '))
    .filter((f) => f[2]?.startsWith('fuse') === true && f[1]?.startsWith(prefix) === true)
    .map((f) => f[1])
    .filter((mp) => { try { fs.statSync(mp); return false } catch (err) { return (err as NodeJS.ErrnoException).code === 'ENOTCONN' } })
  for (const mp of dead) {
    spawnSync('fusermount3', ['-uz', mp])
    fs.rmSync(mp, { recursive: true, force: true })
  }
  if (dead.length > 0) console.log(`# removed ${dead.length} dead mount(s) ${file} left: ${dead.join(' ')}`)
}

async function main (): Promise<void> {
  const files = testFiles()
  const results: FileResult[] = []
  for (const file of files) {
    console.log(`\n## ${file}`)
    const result = await runFile(file)
    results.push(result)
    if (result.failed > 0) {
      await new Promise((resolve) => setTimeout(resolve, 1500))  // past the kernel's 1 s attribute cache, a stat of a dead mount fails
      sweepDeadMounts(file)
    }
  }
  console.log('\n## summary')
  for (const r of results) console.log(`# ${r.file}: ${r.passed} passed, ${r.failed} failed (${r.seconds.toFixed(1)} s)`)
  const passed = results.reduce((s, r) => s + r.passed, 0)
  const failed = results.reduce((s, r) => s + r.failed, 0)
  if (files.length === 0) console.log('no test files matched')
  console.log(`${passed} passed, ${failed} failed`)
  process.exitCode = failed === 0 && passed > 0 ? 0 : 1
}

main().catch((err) => { console.error(err); process.exitCode = 1 })
