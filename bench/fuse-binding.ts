// bench:fuse-binding — the FUSE bindings alone, without a cluster: a file system in this process
// that discards writes and answers reads from nothing (platform.md's "FUSE ceilings"), mounted
// through the libfuse 3 binding and through fuse-native in the same run, driven by dd in a child
// process:
//   2 GiB written with dd bs=1M, 2 GiB read with dd bs=1M after dropping caches,
//   ls -l of 2,000 files (names and sizes from readdir), after the kernel's cache expired.
// Prints `RESULT <binding>_<name> <value> <unit>`. What the mount of a cluster reaches is bounded
// by this and by the cluster (bench/fuse.ts).
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { Fuse3 } from '../src/mount/fuse3'
import { FuseNativeMount } from '../src/mount/fuse-native-binding'
import type { FsOps } from '../src/mount/fs-ops'

const SIZE = 2 * 1024 * 1024 * 1024
const FILES = 2000

function nullFs (): FsOps {
  const t0 = Date.now()
  const names = Array.from({ length: FILES }, (_, i) => `f${i}`)
  const file = { mode: 0o100644, size: SIZE, mtime: t0 }
  return {
    getattr: (p) => p === '/' ? { mode: 0o40755, size: 4096, mtime: t0, nlink: 2 } : file,
    readdir: () => ({ names, stats: names.map(() => file) }),
    open: () => 1,
    create: () => 1,
    truncate: () => {},
    flush: () => {},
    release: () => {},
    read: (_p, _fh, buf, pos) => Math.max(0, Math.min(buf.length, SIZE - pos)),
    write: (_p, _fh, buf) => buf.length
  }
}

/** Runs a shell command in a child process (the JS thread stays free to serve the mount). */
function sh (cmd: string): Promise<number> {
  const t0 = process.hrtime.bigint()
  return new Promise((resolve, reject) => {
    const child = spawn('timeout', ['300', 'bash', '-c', cmd], { stdio: 'ignore' })
    child.on('close', (code) => code === 0 ? resolve(Number(process.hrtime.bigint() - t0) / 1e9) : reject(new Error(`${cmd}: exit ${String(code)}`)))
  })
}

function result (name: string, value: number, unit: string): void {
  console.log(`RESULT ${name} ${value.toFixed(unit === 's' ? 3 : 1)} ${unit}`)
}

async function measure (label: string, mp: string): Promise<void> {
  const write = await sh(`dd if=/dev/zero of=${mp}/f0 bs=1M count=${SIZE / 1048576} status=none`)
  result(`${label}_write_1m`, SIZE / 1e6 / write, 'MB/s')
  const read = await sh(`sync; echo 3 > /proc/sys/vm/drop_caches; dd if=${mp}/f1 of=/dev/null bs=1M status=none`)
  result(`${label}_read_1m`, SIZE / 1e6 / read, 'MB/s')
  await sh('sleep 1.1')
  result(`${label}_ls_l_2000`, await sh(`ls -l ${mp} > /dev/null`), 's')
}

async function main (): Promise<void> {
  const mp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddfs-bench-binding-'))
  try {
    for (const binding of (process.env.DDFS_BENCH_FUSE_BINDINGS ?? 'native,fuse-native').split(',')) {
      const fuse = binding === 'fuse-native' ? new FuseNativeMount(mp, nullFs()) : new Fuse3(mp, nullFs(), { xattrPrefix: 'user.' })
      await fuse.ready()
      try {
        await measure(binding.replace(/-/g, '_'), mp)
      } finally {
        await fuse.close()
      }
    }
  } finally {
    fs.rmSync(mp, { recursive: true, force: true })
  }
}

main().catch((err) => { console.error(err); process.exitCode = 1 })
