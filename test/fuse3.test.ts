// The libfuse 3 binding itself (native/fuse3.cc, src/mount/fuse3.ts): a small file system in
// this process, mounted for real, driven by ordinary tools in child processes (under
// `timeout`, so a request left unanswered fails the test instead of hanging it).
import test, { type Test } from 'brittle'
import crypto from 'node:crypto'
import fs from 'node:fs'
import { spawnSync } from 'node:child_process'
import { Fuse3, type Fuse3Init } from '../src/mount/fuse3'
import { Errno, type FsOps, type FsStat } from '../src/mount/fs-ops'
import { sh, tmpDir } from './helpers/env'

interface Harness {
  mp: string
  fuse: Fuse3
  files: Map<string, Buffer>
  calls: Map<string, number>
  logs: string[]
}

/**
 * An in-memory flat directory; `extra` overrides operations. Counts calls per operation
 * (`getattr:/name` as well, per path) and collects the binding's log events.
 */
async function mountMem (t: Test, extra: FsOps = {}, init: Fuse3Init = {}): Promise<Harness> {
  const mp = tmpDir(t, 'ddfs-fuse3-')
  const files = new Map<string, Buffer>()
  const calls = new Map<string, number>()
  const logs: string[] = []
  const count = (k: string): void => { calls.set(k, (calls.get(k) ?? 0) + 1) }
  const handles = new Map<number, string>()
  let nextFh = 1
  const t0 = Date.now()
  const stat = (name: string): FsStat => ({ mode: 0o100644, size: (files.get(name) as Buffer).length, mtime: t0 })
  const name = (p: string): string => p.slice(1)
  const ops: FsOps = {
    getattr: (p) => {
      count('getattr')
      if (p === '/') return { mode: 0o40755, size: 4096, mtime: t0, nlink: 2 }
      count(`getattr:${p}`)
      if (!files.has(name(p))) throw Errno.ENOENT
      return stat(name(p))
    },
    readdir: async () => {
      count('readdir')
      const names = [...files.keys()]
      return { names, stats: names.map(stat) }
    },
    open: (p) => {
      count('open')
      if (!files.has(name(p))) throw Errno.ENOENT
      handles.set(nextFh, name(p))
      return nextFh++
    },
    create: (p) => {
      count('create')
      files.set(name(p), Buffer.alloc(0))
      handles.set(nextFh, name(p))
      return nextFh++
    },
    read: async (_p, fh, buf, pos) => {
      count('read')
      const data = files.get(handles.get(fh) as string) as Buffer
      return data.copy(buf, 0, Math.min(pos, data.length), Math.min(pos + buf.length, data.length))
    },
    write: (_p, fh, buf, pos) => {
      count('write')
      count(`write-size:${buf.length}`)
      const n = handles.get(fh) as string
      let data = files.get(n) as Buffer
      if (data.length < pos + buf.length) data = Buffer.concat([data, Buffer.alloc(pos + buf.length - data.length)])
      buf.copy(data, pos)
      files.set(n, data)
      return buf.length
    },
    truncate: (p, size, fh) => {
      const n = fh !== null ? handles.get(fh) as string : name(p)
      const data = Buffer.alloc(size)
      ;(files.get(n) as Buffer).copy(data)
      files.set(n, data)
    },
    flush: () => {},
    release: (_p, fh) => { handles.delete(fh) },
    unlink: (p) => { if (!files.delete(name(p))) throw Errno.ENOENT },
    ...extra
  }
  const fuse = new Fuse3(mp, ops, { log: (_level, event) => logs.push(event), ...init })
  t.teardown(async () => {
    await fuse.close()
    spawnSync('fusermount3', ['-uz', mp])
  }, { order: -1 })
  await fuse.ready()
  return { mp, fuse, files, calls, logs }
}

function mounted (mp: string): boolean {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === mp)
}

async function until (cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((resolve) => setTimeout(resolve, 25))
  if (!cond()) throw new Error(`never happened: ${what}`)
}

test('a mount serves cp, cat, ls -l and rm, and close() unmounts it, leaving no thread or fd behind', async (t) => {
  await fs.promises.readFile('/proc/self/status')  // libuv starts its thread pool at first use
  const threads = fs.readdirSync('/proc/self/task').length
  const fds = fs.readdirSync('/proc/self/fd').length
  const h = await mountMem(t)
  t.ok(mounted(h.mp), 'mounted once ready() resolved')
  const w = await sh(`echo hello > ${h.mp}/a && cat ${h.mp}/a && ls -l ${h.mp} && stat -c %o ${h.mp}/a ${h.mp} && rm ${h.mp}/a && ls -A ${h.mp}`, 20)
  t.is(w.code, 0, w.stderr)
  t.ok(w.stdout.startsWith('hello\n'), 'cat returns what was written')
  t.ok(w.stdout.includes('\n1048576\n4096\n'), 'a file\'s st_blksize is 1 MiB (cp writes that much at a time), a directory\'s 4 KiB')
  t.ok(/-rw-r--r-- 1 \S+ \S+ 6 .* a$/m.test(w.stdout), 'ls -l shows the file with its size')
  await h.fuse.close()
  t.absent(mounted(h.mp), 'unmounted by close()')
  t.is(fs.readdirSync('/proc/self/task').length, threads, 'libfuse\'s threads are joined')
  t.is(fs.readdirSync('/proc/self/fd').length, fds, '/dev/fuse is closed')
  await h.fuse.close()
  t.pass('close() again is a no-op')
})

test('a write larger than 128 KiB arrives as one request (max_write 1 MiB took effect)', async (t) => {
  const h = await mountMem(t)
  t.is(h.fuse.info?.maxWrite, 1024 * 1024, 'libfuse settled on 1 MiB')
  const r = await sh(`dd if=/dev/urandom of=${h.mp}/w bs=1M count=4 status=none && md5sum < ${h.mp}/w`, 20)
  t.is(r.code, 0, r.stderr)
  t.is(h.calls.get('write'), 4, 'four write requests for 4 MiB')
  t.is(h.calls.get(`write-size:${1024 * 1024}`), 4, 'each of 1 MiB')
})

test('a handle with a write target is written by the binding itself, each write reported before the flush that follows it; a failing target is EIO', async (t) => {
  const dir = tmpDir(t, 'ddfs-fuse3-target-')
  const targets = new Map<number, number>()   // fh -> descriptor
  const reported = new Map<number, number>()  // fh -> bytes reported through written()
  const atFlush: number[] = []
  let jsWrites = 0
  let nextFh = 100
  const files = new Map<string, Buffer>()
  const h = await mountMem(t, {
    getattr: (p) => {
      if (p === '/') return { mode: 0o40755, size: 4096, mtime: Date.now(), nlink: 2 }
      if (!files.has(p)) throw Errno.ENOENT
      return { mode: 0o100644, size: 0, mtime: Date.now() }
    },
    create: (p) => {
      files.set(p, Buffer.alloc(0))
      const fh = nextFh++
      // 'bad': a read-only descriptor, so the binding's own write fails.
      const file = `${dir}/${p.slice(1)}`
      if (p === '/bad') fs.writeFileSync(file, '')
      targets.set(fh, fs.openSync(file, p === '/bad' ? 'r' : 'w+'))
      return fh
    },
    write: (_p, _fh, buf) => { jsWrites++; return buf.length },
    writeTarget: (fh) => targets.get(fh) ?? null,
    written: (fh, _pos, n) => { reported.set(fh, (reported.get(fh) ?? 0) + n) },
    flush: (_p, fh) => { atFlush.push(reported.get(fh) ?? 0) },
    release: (_p, fh) => { fs.closeSync(targets.get(fh) as number); targets.delete(fh) }
  })
  const r = await sh(`dd if=/dev/urandom of=${dir}/src bs=1M count=8 status=none && dd if=${dir}/src of=${h.mp}/f bs=1M status=none && cmp ${dir}/src ${dir}/f`, 20)
  t.is(r.code, 0, r.stderr)
  t.is(jsWrites, 0, 'no write request reached JS')
  t.is(atFlush[atFlush.length - 1], 8 * 1024 * 1024, `every byte was reported before the last flush (flushes saw ${atFlush.join(', ')})`)
  t.is(targets.size, 0, 'released')
  const bad = await sh(`echo x > ${h.mp}/bad`, 20)
  t.not(bad.code, 0)
  t.ok(bad.stderr.includes('Input/output error'), `the failed write is EIO (${bad.stderr.trim()})`)

  // Before a file system closes its descriptors with the mount still up: writes go to JS again.
  h.fuse.stopDirectWrites()
  const after = await sh(`echo later > ${h.mp}/g`, 20)
  t.is(after.code, 0, after.stderr)
  t.is(jsWrites, 1, 'the write came to the write handler')
  t.is(fs.readFileSync(`${dir}/g`, 'utf8'), '', 'not to the descriptor')
})

/** getattr and create for files whose writes the test routes itself (every file is handle 7). */
function createdFiles (): Pick<FsOps, 'getattr' | 'create'> {
  const created = new Set<string>()
  return {
    getattr: (p) => {
      if (p === '/') return { mode: 0o40755, size: 4096, mtime: Date.now(), nlink: 2 }
      if (!created.has(p)) throw Errno.ENOENT
      return { mode: 0o100644, size: 0, mtime: Date.now() }
    },
    create: (p) => { created.add(p); return 7 }
  }
}

test('a write handler can give its file a write target: the writes after it go there', async (t) => {
  const dir = tmpDir(t, 'ddfs-fuse3-later-')
  const MiB = 1024 * 1024
  const fd = fs.openSync(`${dir}/spool`, 'w+')
  t.teardown(() => fs.closeSync(fd))
  const jsWrites: number[] = []
  const reported: number[] = []
  const h = await mountMem(t, {
    ...createdFiles(),
    // The first two writes come here (like a file in memory), then the file has a descriptor.
    write: (_p, _fh, buf, pos) => { jsWrites.push(pos); fs.writeSync(fd, buf, 0, buf.length, pos); return buf.length },
    writeTarget: () => jsWrites.length >= 2 ? fd : null,
    written: (_fh, pos) => { reported.push(pos) }
  })
  const src = `${dir}/src`
  fs.writeFileSync(src, crypto.randomBytes(4 * MiB))
  const r = await sh(`dd if=${src} of=${h.mp}/f bs=1M status=none`, 20)
  t.is(r.code, 0, r.stderr)
  t.alike(jsWrites, [0, MiB], 'the first two to the handler')
  t.alike(reported, [2 * MiB, 3 * MiB], 'the rest by the binding')
  t.alike(fs.readFileSync(`${dir}/spool`), fs.readFileSync(src), 'every byte in place')
})

test('a write target with an O_DIRECT descriptor gets the aligned writes from directFrom on; the others go to the plain one', async (t) => {
  // Two different files stand for the two descriptors, so where each write went shows.
  const dir = tmpDir(t, 'ddfs-fuse3-direct-')
  const MiB = 1024 * 1024
  const plain = fs.openSync(`${dir}/plain`, 'w+')
  const direct = fs.openSync(`${dir}/direct`, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_DIRECT)
  t.teardown(() => { fs.closeSync(plain); fs.closeSync(direct) })
  const reported: Array<[number, number]> = []
  const h = await mountMem(t, {
    ...createdFiles(),
    write: () => { throw new Error('a write reached JS') },
    writeTarget: () => ({ fd: plain, direct, directFrom: 2 * MiB }),
    written: (_fh, pos, n) => { reported.push([pos, n]) }
  })
  const src = `${dir}/src`
  fs.writeFileSync(src, crypto.randomBytes(4 * MiB + 100))
  // 1 MiB requests: two below directFrom, two past it, then the unaligned 100-byte tail.
  const r = await sh(`dd if=${src} of=${h.mp}/f bs=1M status=none`, 20)
  t.is(r.code, 0, r.stderr)
  t.alike(reported, [[0, MiB], [MiB, MiB], [2 * MiB, MiB], [3 * MiB, MiB], [4 * MiB, 100]], 'every write reported, in order')
  const bytes = fs.readFileSync(src)
  const at = (file: string, pos: number, n: number): Buffer => {
    const fd = fs.openSync(file, 'r')
    try { const b = Buffer.alloc(n); fs.readSync(fd, b, 0, n, pos); return b } finally { fs.closeSync(fd) }
  }
  t.alike(at(`${dir}/plain`, 0, 2 * MiB), bytes.subarray(0, 2 * MiB), 'below directFrom: the plain descriptor')
  t.alike(at(`${dir}/direct`, 2 * MiB, 2 * MiB), bytes.subarray(2 * MiB, 4 * MiB), 'aligned, past it: the O_DIRECT one')
  t.alike(at(`${dir}/plain`, 4 * MiB, 100), bytes.subarray(4 * MiB), 'an unaligned tail: the plain one')
  t.is(fs.fstatSync(direct).size, 4 * MiB, 'nothing else went to the O_DIRECT one')
})

test('aligned writes to the O_DIRECT descriptor go behind their answers: reported in order before the flush; one that fails is reported -errno and fails the rest', async (t) => {
  const dir = tmpDir(t, 'ddfs-fuse3-behind-')
  const MiB = 1024 * 1024
  const good = fs.openSync(`${dir}/good`, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_DIRECT)
  fs.writeFileSync(`${dir}/bad`, '')
  const readOnly = fs.openSync(`${dir}/bad`, fs.constants.O_RDONLY | fs.constants.O_DIRECT)  // its pwrite fails (EBADF)
  t.teardown(() => { fs.closeSync(good); fs.closeSync(readOnly) })
  const reported = new Map<string, Array<[number, number]>>()
  const atFlush: number[] = []
  let handle = ''
  const files = createdFiles()
  const h = await mountMem(t, {
    ...files,
    create: (p, mode, flags) => { handle = p; return (files.create as NonNullable<FsOps['create']>)(p, mode, flags) },
    write: () => { throw new Error('a write reached JS') },
    writeTarget: () => ({ fd: handle === '/bad' ? readOnly : good, direct: handle === '/bad' ? readOnly : good, directFrom: 0 }),
    written: (_fh, pos, n) => { reported.set(handle, [...(reported.get(handle) ?? []), [pos, n]]) },
    flush: () => {
      const mine = reported.get(handle) ?? []
      atFlush.push(mine.reduce((sum, [, n]) => sum + Math.max(0, n), 0))
      if (mine.some(([, n]) => n < 0)) throw Errno.EIO
    }
  })
  // 40 requests of 1 MiB: more than the binding's buffers, so writes wait for free ones too.
  const src = `${dir}/src`
  fs.writeFileSync(src, crypto.randomBytes(40 * MiB))
  const r = await sh(`dd if=${src} of=${h.mp}/f bs=1M status=none`, 30)
  t.is(r.code, 0, r.stderr)
  t.alike(reported.get('/f'), Array.from({ length: 40 }, (_, i) => [i * MiB, MiB]), 'every write reported, in the order written')
  t.is(atFlush[atFlush.length - 1], 40 * MiB, 'all of them before the flush')
  t.ok(fs.readFileSync(`${dir}/good`).equals(fs.readFileSync(src)), 'every byte in place')

  const bad = await sh(`dd if=${src} of=${h.mp}/bad bs=1M count=4 status=none`, 30)
  t.not(bad.code, 0, 'the writer hears of it')
  t.ok(bad.stderr.includes('Input/output error'), `as EIO (${bad.stderr.trim()})`)
  t.alike((reported.get('/bad') ?? [])[0], [0, -Errno.EIO], 'the first write was answered, then reported failed')
})

test('writes behind into a kept spool stay in memory until taken: what is taken is what the file holds; a writer nobody takes from still finishes', async (t) => {
  const dir = tmpDir(t, 'ddfs-fuse3-kept-')
  const MiB = 1024 * 1024
  const spool = `${dir}/spool`
  const direct = fs.openSync(spool, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_DIRECT)
  t.teardown(() => fs.closeSync(direct))
  const h = await mountMem(t, {
    ...createdFiles(),
    write: () => { throw new Error('a write reached JS') },
    writeTarget: () => ({ fd: direct, direct, directFrom: 0, spool: 7 })
  })
  const { kept } = h.fuse
  const take = (pos: number, length: number): Buffer => {
    const dest = Buffer.alloc(length)
    return dest.subarray(0, kept.take(7, pos, dest))
  }
  const onDisk = (pos: number, length: number): Buffer => fs.readFileSync(spool).subarray(pos, pos + length)
  fs.writeFileSync(`${dir}/src`, crypto.randomBytes(8 * MiB))

  kept.keep(7, true)
  t.is((await sh(`dd if=${dir}/src of=${h.mp}/f bs=1M status=none`, 30)).code, 0)
  const taken = take(0, 8 * MiB)
  t.is(taken.length, 8 * MiB, 'all 8 MiB written are there to take')
  t.ok(taken.equals(fs.readFileSync(`${dir}/src`)), 'the bytes written')
  t.is(take(0, 8 * MiB).length, 0, 'taken once: given back')

  // Writes smaller than a request's most are written, not kept: a put takes whole stripes, which
  // 16 such buffers may never hold, and a writer waiting for it would crawl.
  t.is((await sh(`dd if=${dir}/src of=${h.mp}/small-pieces bs=64k status=none`, 30)).code, 0)
  t.is(take(8 * MiB - 64 * 1024, 64 * 1024).length, 0, 'the last 64 KiB write is not kept')
  t.ok(onDisk(8 * MiB - 64 * 1024, 64 * 1024).equals(fs.readFileSync(`${dir}/src`).subarray(8 * MiB - 64 * 1024)), 'it is in the spool')

  // A range written twice: what is taken of it is the second write, as in the file.
  const writer = `const fs = require('fs'); const fd = fs.openSync(process.argv[1], 'w'); const b = fs.readFileSync(process.argv[2])
    fs.writeSync(fd, b, 0, 4 * 1048576, 0); fs.writeSync(fd, b, 4 * 1048576, 1048576, 1048576); fs.closeSync(fd)`
  t.is((await sh(`${process.execPath} -e "${writer}" ${h.mp}/g ${dir}/src`, 30)).code, 0)
  const again = take(0, 4 * MiB)
  t.ok(again.length >= MiB, `kept (${again.length / MiB} MiB)`)
  t.ok(again.equals(onDisk(0, again.length)), 'what is taken is what the file holds')

  // Nobody takes: the writer waits for the taker a moment per buffer, then goes on without it.
  fs.writeFileSync(`${dir}/src`, crypto.randomBytes(40 * MiB))
  t.is((await sh(`dd if=${dir}/src of=${h.mp}/h bs=1M status=none`, 60)).code, 0, '40 MiB written with nothing taken')
  const late = take(24 * MiB, 16 * MiB)
  t.ok(late.equals(onDisk(24 * MiB, late.length)), `what is still kept is what the file holds (${late.length / MiB} MiB)`)
  kept.keep(7, false)
  t.is(take(0, 40 * MiB).length, 0, 'not kept any more: nothing to take')
})

test('stopDirectWrites reports every write answered so far before it returns, those behind included', async (t) => {
  const dir = tmpDir(t, 'ddfs-fuse3-stop-')
  const MiB = 1024 * 1024
  const direct = fs.openSync(`${dir}/spool`, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_DIRECT)
  t.teardown(() => fs.closeSync(direct))
  let reported = 0
  const h = await mountMem(t, {
    ...createdFiles(),
    write: () => { throw new Error('a write reached JS') },
    writeTarget: () => ({ fd: direct, direct, directFrom: 0 }),
    written: (_fh, _pos, n) => { reported += n }
  })
  fs.writeFileSync(`${dir}/src`, crypto.randomBytes(24 * MiB))
  // A writer that keeps the file open (no flush, no release: every close, of any descriptor,
  // is a flush) after its writes were answered. Once the file is created, this thread stays
  // busy until the writes are done, so no report reaches JS on its own.
  const writer = `const fs = require('fs'); const [f, src, created, done] = process.argv.slice(2)
    const fd = fs.openSync(f, 'w'); fs.writeFileSync(created, ''); const b = fs.readFileSync(src)
    for (let at = 0; at < b.length; at += 1048576) fs.writeSync(fd, b, at, 1048576, at)
    fs.writeFileSync(done, ''); setTimeout(() => {}, 3000)`
  fs.writeFileSync(`${dir}/writer.js`, writer)
  const holder = sh(`${process.execPath} ${dir}/writer.js ${h.mp}/f ${dir}/src ${dir}/created ${dir}/done`, 30)
  await until(() => fs.existsSync(`${dir}/created`), 'the file was created')
  for (const deadline = Date.now() + 20_000; !fs.existsSync(`${dir}/done`) && Date.now() < deadline;) spawnSync('sleep', ['0.01'])
  t.ok(fs.existsSync(`${dir}/done`), 'written without JS')
  t.ok(reported < 24 * MiB, `not all reported yet (${reported / MiB} MiB)`)
  h.fuse.stopDirectWrites()
  t.is(reported, 24 * MiB, 'all 24 MiB reported when it returned')
  t.is((await holder).code, 0)
})

test('a create asks JS for the new file\'s attributes once: libfuse\'s getattr after it is answered from create\'s answer', async (t) => {
  const h = await mountMem(t)
  const before = h.fuse.requests()
  const r = await sh(`printf abc > ${h.mp}/new`, 20)
  t.is(r.code, 0, r.stderr)
  t.is(h.files.get('new')?.toString(), 'abc', 'the file has its bytes')
  const after = h.fuse.requests()
  const asked = (op: string): number => (after[op] ?? 0) - (before[op] ?? 0)
  t.is(asked('create'), 1, 'one create')
  t.is(asked('getattr'), 1, 'one getattr request: the lookup that found no such file')
  t.is(h.calls.get('getattr:/new'), 2, 'the handler was asked twice: the lookup, and for create\'s answer')
})

test('closing a file opened read-only sends no flush; closing one opened for writing does', async (t) => {
  const h = await mountMem(t, { flush: () => { h.calls.set('flush', (h.calls.get('flush') ?? 0) + 1) } })
  h.files.set('f', Buffer.from('data'))
  const r = await sh(`cat ${h.mp}/f && cat ${h.mp}/f`, 20)
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout, 'datadata', 'read twice')
  await until(() => (h.calls.get('open') ?? 0) === 2, 'both opens')
  t.is(h.calls.get('flush') ?? 0, 0, 'no flush for the readers')
  const w = await sh(`echo more >> ${h.mp}/f`, 20)
  t.is(w.code, 0, w.stderr)
  t.ok((h.calls.get('flush') ?? 0) >= 1, 'the writer\'s close flushes (the shell closes a duplicate too)')
})

test('ls -l takes the attributes from readdir (readdirplus): no getattr per file, no getxattr outside the served prefix', async (t) => {
  const h = await mountMem(t, {
    getxattr: (p, name) => { h.calls.set(`getxattr:${name}`, (h.calls.get(`getxattr:${name}`) ?? 0) + 1); return name === 'user.mem.tag' && p !== '/' ? Buffer.from('x') : null }
  }, { xattrPrefix: 'user.mem.' })
  for (let i = 0; i < 200; i++) h.files.set(`f${i}`, Buffer.alloc(i))
  const r = await sh(`ls -l ${h.mp}`, 20)
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout.split('\n').filter((l) => l.startsWith('-rw')).length, 200, 'all 200 listed')
  t.ok(r.stdout.includes(' 199 '), 'with their sizes')
  const perFile = [...h.calls.keys()].filter((k) => k.startsWith('getattr:/')).length
  t.is(perFile, 0, 'no getattr of any file')
  t.is(h.calls.get('readdir'), 1, 'one readdir for the whole listing')
  t.is([...h.calls.keys()].filter((k) => k.startsWith('getxattr:')).length, 0, 'no getxattr reached JS')
  t.ok((await sh(`getfattr -n security.selinux ${h.mp}/f1`, 20)).stderr.includes('Operation not supported'), 'other namespaces: EOPNOTSUPP (ls stops asking)')
  t.ok((await sh(`getfattr -n user.other ${h.mp}/f1`, 20)).stderr.includes('No such attribute'), 'other user.* names: ENODATA')
  t.is((await sh(`getfattr --only-values -n user.mem.tag ${h.mp}/f1`, 20)).stdout, 'x', 'names with the prefix reach JS')
})

test('a handler that throws, or whose promise rejects, is answered EIO and the mount goes on', async (t) => {
  const h = await mountMem(t, {
    open: (p) => {
      if (p === '/throws') throw new Error('a bug in the handler')
      if (p === '/rejects') return Promise.reject(new TypeError('a bug in an async handler'))
      return 1
    }
  })
  h.files.set('throws', Buffer.from('x'))
  h.files.set('rejects', Buffer.from('x'))
  h.files.set('fine', Buffer.from(''))
  for (const name of ['throws', 'rejects']) {
    const r = await sh(`cat ${h.mp}/${name}`, 20)
    t.is(r.code, 1, `cat ${name} fails (not a hang: timeout exits 124)`)
    t.ok(r.stderr.includes('Input/output error'), `EIO for ${name}: ${r.stderr.trim()}`)
  }
  t.is(h.logs.filter((e) => e === 'fuse-handler-failed').length, 2, 'both logged')
  t.is((await sh(`cat ${h.mp}/fine`, 20)).code, 0, 'the mount still serves')
})

test('a request JS never answers is answered EIO after the request timeout, and its Buffer is taken back', async (t) => {
  let held: Buffer | null = null
  const h = await mountMem(t, {
    read: (_p, _fh, buf) => { held = buf; return new Promise<number>(() => {}) }
  }, { requestTimeoutMs: 1000 })
  h.files.set('never', Buffer.from('data'))
  const r = await sh(`cat ${h.mp}/never`, 30)
  t.is(r.code, 1, 'cat fails (not a hang)')
  t.ok(r.stderr.includes('Input/output error'), r.stderr.trim())
  t.ok(h.logs.includes('fuse-request-timeout'), 'logged')
  t.ok(held !== null && (held as Buffer).length === 0, 'the Buffer over the reply memory was detached')
})

test('several requests are in flight at once', async (t) => {
  let waiting: Array<() => void> = []
  const h = await mountMem(t, {
    // No read is answered before three are in flight: served one at a time, they would wait
    // forever (and cat would be killed by timeout).
    read: async (_p, fh, buf, pos) => {
      if (pos === 0) {
        await new Promise<void>((resolve) => { waiting.push(resolve); if (waiting.length === 3) { waiting.forEach((w) => w()); waiting = [] } })
      }
      return pos === 0 ? buf.write(`file ${fh}\n`) : 0
    }
  }, { requestTimeoutMs: 0 })
  for (const n of ['a', 'b', 'c']) h.files.set(n, Buffer.alloc(16))
  const r = await sh(`cd ${h.mp} && (cat a > /dev/null & cat b > /dev/null & cat c > /dev/null & wait)`, 20)
  t.is(r.code, 0, 'all three reads answered')
})

test('close() with a request in flight answers it EIO instead of hanging, and unmounts', async (t) => {
  let entered = false
  let held: Buffer | null = null
  const h = await mountMem(t, {
    read: (_p, _fh, buf) => { entered = true; held = buf; return new Promise<number>(() => {}) }
  }, { requestTimeoutMs: 0 })
  h.files.set('slow', Buffer.from('data'))
  const cat = sh(`cat ${h.mp}/slow`, 30)
  await until(() => entered, 'the read reached its handler')
  await h.fuse.close()
  const r = await cat
  t.is(r.code, 1, 'cat failed (not killed by timeout)')
  t.absent(mounted(h.mp), 'unmounted')
  t.ok(held !== null && (held as Buffer).length === 0, 'the Buffer over the reply memory was detached')
})

test('an unmount from outside ends the loop; close() still completes', async (t) => {
  let ended = false
  const h = await mountMem(t, {}, { onEnded: () => { ended = true } })
  t.is(spawnSync('fusermount3', ['-u', h.mp]).status, 0)
  await until(() => ended, 'onEnded')
  await h.fuse.close()
  t.absent(mounted(h.mp))
})
