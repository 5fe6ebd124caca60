// On-disk records of the ddfs raw-block store. Every record is a fixed little-endian layout
// inside a 4096-byte block whose last 8 bytes are the XXH64 of the first 4088 (see
// docs/on-disk-format.md). Layout of a device:
//
//   block 0, 1        superblock slots A and B (the valid one with the highest generation wins)
//   bm A, bm B        free-space bitmap regions, one per generation parity
//   journal           circular write-ahead log of entry records
//   data              extents of entries, and the copy-on-write index checkpoints
#pragma once
#include <cstdint>
#include <cstring>

namespace ddfs {
namespace fmt {

constexpr uint32_t kBlockSize = 4096;
constexpr uint32_t kHashOffset = kBlockSize - 8;  // every metadata block ends in its XXH64
constexpr uint64_t kSuperMagic = 0x3130425353464444ULL;  // "DDFSSB01"
constexpr uint32_t kJournalMagic = 0x424a4444;           // "DDJB"
constexpr uint32_t kIndexMagic = 0x58494444;             // "DDIX"
constexpr uint32_t kBitmapMagic = 0x4d424444;            // "DDBM"
constexpr uint32_t kVersion = 1;
constexpr uint64_t kSegmentSize = 1024 * 1024;  // entries above this carry a per-segment hash list

constexpr uint32_t kKeyBytes = 24;  // id[16] kind(be16) stripe(be32) index(be16): sorts by memcmp
constexpr uint32_t kRecordBytes = 64;
constexpr uint32_t kBlockHeaderBytes = 32;
constexpr uint32_t kRecordsPerBlock = (kHashOffset - kBlockHeaderBytes) / kRecordBytes;  // 63
// A bitmap block holds bits for this many blocks, after a 32-byte header, before the hash.
constexpr uint64_t kBitsPerBitmapBlock = uint64_t(kHashOffset - kBlockHeaderBytes) * 8;

struct Superblock {
  uint64_t magic;
  uint32_t version;
  uint32_t bsize;
  uint8_t sb_id[16];
  uint64_t size;             // bytes
  uint64_t blocks;
  uint64_t generation;       // checkpoint generation: slot = generation % 2
  uint64_t journal_block;    // first block of the journal
  uint64_t journal_blocks;
  uint64_t bm_block[2];      // bitmap regions A and B
  uint64_t bm_blocks;        // blocks per region
  uint64_t index_block;      // first block of the index checkpoint extent
  uint64_t index_blocks;
  uint64_t index_entries;
  uint64_t journal_head_seq; // first journal sequence number not in the checkpoint
  uint64_t journal_head_pos; // its position (block offset inside the journal)
  uint64_t data_block;       // first block after the fixed regions
  uint64_t index_first_len;  // blocks in the first extent of the index checkpoint
};
static_assert(sizeof(Superblock) <= kHashOffset, "superblock fits a block");

// The index checkpoint may span several extents (free space fragments over time): the first
// block of each extent holds, in its header's `reserved`, the next extent as start | len << 40.
inline uint64_t PackExtent(uint64_t start, uint64_t len) { return start | (len << 40); }
inline uint64_t ExtentStart(uint64_t packed) { return packed & ((uint64_t(1) << 40) - 1); }
inline uint64_t ExtentLen(uint64_t packed) { return packed >> 40; }

// Header of journal, index and bitmap blocks.
struct BlockHeader {
  uint32_t magic;
  uint32_t count;        // records in this block (bitmap: 0)
  uint64_t seq;          // journal: sequence number; index/bitmap: block ordinal
  uint64_t generation;   // the superblock generation this block belongs to
  uint64_t reserved;     // journal: PackBatch; index: the next extent (PackExtent); bitmap: 0
};

// A journal block's place in its commit batch: the batch's blocks and this block's index in
// it. A batch's data and records are made durable by one flush, so replay applies the last batch
// only when all its blocks are there and every entry it puts matches its hash. 0: a block of
// an older ddfs, whose data was flushed before its record (a batch of its own, nothing to check).
inline uint64_t PackBatch(uint64_t blocks, uint64_t index) { return (blocks << 32) | index; }
inline uint64_t BatchBlocks(uint64_t packed) { return packed >> 32; }
inline uint64_t BatchIndex(uint64_t packed) { return packed & 0xffffffffULL; }
static_assert(sizeof(BlockHeader) == kBlockHeaderBytes, "block header is 32 bytes");

enum RecordType : uint8_t { kPut = 1, kRemove = 2, kRemoveId = 3 };

// Journal and index records share one layout.
struct Record {
  uint8_t type;
  uint8_t pad[7];
  uint8_t key[kKeyBytes];
  uint64_t block;
  uint32_t blocks;
  uint32_t pad2;
  uint64_t length;
  uint64_t hash;         // XXH64 of the content, or of the segment hash list for large entries
};
static_assert(sizeof(Record) == kRecordBytes, "record is 64 bytes");

inline uint64_t BlocksFor(uint64_t bytes) { return (bytes + kBlockSize - 1) / kBlockSize; }
inline uint64_t SegmentsFor(uint64_t length) { return (length + kSegmentSize - 1) / kSegmentSize; }
// Data blocks plus, for entries above one segment, the blocks of the hash list.
inline uint64_t ExtentBlocks(uint64_t length) {
  uint64_t b = BlocksFor(length);
  if (length > kSegmentSize) b += BlocksFor(SegmentsFor(length) * 8);
  return b;
}

}  // namespace fmt
}  // namespace ddfs
