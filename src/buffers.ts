// Large data buffers on the hot paths (fragments read, received, rebuilt) are given back as soon
// as their last reader is done, not whenever V8 next collects. Every new ArrayBuffer counts
// towards V8's external-memory pressure, which starts a full mark-compact for each 64 MB; a node
// moving fragments at a few hundred MB/s spent a fifth of its CPU in them.
//
// Only a buffer registered by the code that made it, for one item alone, can be released:
// releasing detaches its whole ArrayBuffer, so every view of it reads as empty from then on.
import { addon } from './native'

const detach = addon.detach as (buf: Uint8Array) => boolean
const releasable = new WeakSet<ArrayBufferLike>()

/** Registers `buf`'s memory as holding one item alone, so release() may give it back. */
export function ownedAlone (buf: Uint8Array): void {
  releasable.add(buf.buffer)
}

/** `buf`'s memory turns out to hold more than one item (one read, several frames): never release it. */
export function shared (buf: Uint8Array): void {
  releasable.delete(buf.buffer)
}

/** Gives back the memory under `buf` (a view of a registered buffer) when no one reads it any more. */
export function release (buf: Uint8Array): void {
  if (releasable.delete(buf.buffer)) detach(buf)
}
