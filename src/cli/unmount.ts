// Ends a ddfs mount, whichever process serves it: a mount process gets SIGTERM (it commits what
// is being written, unmounts and exits); a node serving the mount itself is unmounted from
// outside, then commits and cleans up while it goes on running.
import fs from 'node:fs'
import { execFileSync } from 'node:child_process'
import { DdfsError } from '../errors'
import { mountOwner, mountPidFile, isMounted, forceUnmount } from '../mount/mount'
import { waitExit, processAlive } from './daemon'

/** Unmounts `mp`; false when nothing served it and nothing was mounted there. */
export async function unmount (mp: string, timeoutMs = 60_000): Promise<boolean> {
  const owner = mountOwner(mp)
  const alive = owner !== null && processAlive(owner.pid)
  if (owner !== null && alive && owner.inNode) {
    if (isMounted(mp)) {
      try {
        execFileSync('fusermount3', ['-u', mp], { stdio: ['ignore', 'ignore', 'pipe'] })
      } catch (err) {
        const why = String((err as { stderr?: Buffer }).stderr ?? '').trim()
        throw DdfsError.DEVICE_IN_USE(`cannot unmount ${mp}: ${why !== '' ? why : 'fusermount3 failed'}; close the files open there (fuser -vm ${mp}) and try again`)
      }
    }
    // The node removes the pid file once it has committed what was written and cleaned up.
    const deadline = Date.now() + timeoutMs
    while (fs.existsSync(mountPidFile(mp)) && processAlive(owner.pid)) {
      if (Date.now() > deadline) throw DdfsError.INTERNAL(`the node (pid ${owner.pid}) did not finish the unmount of ${mp} in ${timeoutMs / 1000} s; see its log`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  } else if (owner !== null && alive) {
    process.kill(owner.pid, 'SIGTERM')
    if (!await waitExit(owner.pid, timeoutMs)) throw DdfsError.INTERNAL(`the mount process ${owner.pid} did not exit; kill it and run ddfs umount ${mp} again`)
  }
  fs.rmSync(mountPidFile(mp), { force: true })
  if (isMounted(mp)) forceUnmount(mp)
  else if (!alive) return false
  return true
}
