// Reed-Solomon erasure coding (ISA-L, native/erasure.cc): a systematic code where the first k
// fragments of a stripe are its data and m parity fragments are computed from them; any k of the
// n = k + m fragments rebuild the rest. Callers own every buffer (all of one length), so a hot
// call allocates nothing; the async forms run on the libuv thread pool.
import { addon } from '../native'
import { DdfsError } from '../errors'

interface ErasureAddon {
  rsEncode (k: number, m: number, data: Uint8Array[], parity: Uint8Array[]): Promise<void>
  rsEncodeSync (k: number, m: number, data: Uint8Array[], parity: Uint8Array[]): void
  rsReconstruct (k: number, m: number, shards: Uint8Array[], present: boolean[], wanted?: boolean[]): Promise<void>
  rsReconstructSync (k: number, m: number, shards: Uint8Array[], present: boolean[]): void
}

const native = addon as unknown as ErasureAddon

export const MAX_FRAGMENTS = 64

/** Computes the m parity fragments of k data fragments into `parity`. */
export async function encode (k: number, m: number, data: Uint8Array[], parity: Uint8Array[]): Promise<void> {
  try {
    await native.rsEncode(k, m, data, parity)
  } catch (err) {
    throw DdfsError.from(err)
  }
}

export function encodeSync (k: number, m: number, data: Uint8Array[], parity: Uint8Array[]): void {
  try {
    native.rsEncodeSync(k, m, data, parity)
  } catch (err) {
    throw DdfsError.from(err)
  }
}

/**
 * Rebuilds, in place, every fragment whose `present` flag is false from any k present ones (with
 * `wanted`, only the absent ones it flags: the others are neither read nor written).
 * `shards` holds all n fragments (data first, then parity), each a buffer of the same length.
 * UNAVAILABLE when fewer than k are present.
 */
export async function reconstruct (k: number, m: number, shards: Uint8Array[], present: boolean[], wanted?: boolean[]): Promise<void> {
  try {
    await native.rsReconstruct(k, m, shards, present, wanted)
  } catch (err) {
    throw DdfsError.from(err)
  }
}

export function reconstructSync (k: number, m: number, shards: Uint8Array[], present: boolean[]): void {
  try {
    native.rsReconstructSync(k, m, shards, present)
  } catch (err) {
    throw DdfsError.from(err)
  }
}
