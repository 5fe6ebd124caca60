// compact-encoding codecs shared by the wire messages (src/wire) and the on-disk records
// (src/object/records.ts).
import c from 'compact-encoding'

/** XXH64 values as two uint32s (compact-encoding's uint64 is a JS number and would lose bits). */
export const hash64: c.Encoder<bigint> = {
  preencode (state) { state.end += 8 },
  encode (state, h) {
    c.uint32.encode(state, Number(h & 0xffffffffn))
    c.uint32.encode(state, Number(h >> 32n))
  },
  decode (state) {
    const lo = c.uint32.decode(state)
    const hi = c.uint32.decode(state)
    return (BigInt(hi) << 32n) | BigInt(lo)
  }
}
