// Numbers that several layers share. Each says why it has its value.

/** Device block size: the unit of allocation and of O_DIRECT alignment. */
export const BLOCK_SIZE = 4096

/** Object ids are 128-bit, shown as 32 lowercase hex chars. */
export const ID_BYTES = 16

/** The seed's default address. */
export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_PORT = 8000

/** Default log file (the seed logged to /var/log/ds.log). */
export const DEFAULT_LOG = '/var/log/ddfs.log'

/** Default data directory root; a node's directory is `${DEFAULT_DATA_ROOT}/node-<port>`. */
export const DEFAULT_DATA_ROOT = '/var/lib/ddfs'

/**
 * Store entries larger than this carry one XXH64 per segment, so a ranged read checks only
 * the segments it touches; smaller entries carry one XXH64 for the whole content.
 */
export const SEGMENT_SIZE = 1024 * 1024
