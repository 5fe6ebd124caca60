#include "store/store.h"

#include <fcntl.h>
#include <sys/random.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace ddfs {

using namespace fmt;

namespace {

uint64_t BlockHash(const uint8_t* block) { return XXH64(block, kHashOffset, 0); }
void SealBlock(uint8_t* block) { uint64_t h = BlockHash(block); memcpy(block + kHashOffset, &h, 8); }
bool BlockValid(const uint8_t* block) {
  uint64_t h;
  memcpy(&h, block + kHashOffset, 8);
  return h == BlockHash(block);
}

std::string Hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; i++) { s += d[p[i] >> 4]; s += d[p[i] & 15]; }
  return s;
}

std::string KeyText(const Key& k) {
  uint16_t kind = uint16_t(k[16] << 8 | k[17]);
  uint32_t stripe = uint32_t(k[18]) << 24 | uint32_t(k[19]) << 16 | uint32_t(k[20]) << 8 | k[21];
  uint16_t index = uint16_t(k[22] << 8 | k[23]);
  return Hex(k.data(), 16) + "/" + std::to_string(kind) + "/" + std::to_string(stripe) + "/" + std::to_string(index);
}

bool ReadSuperblocks(DeviceIo& io, Superblock* out) {
  AlignedBuffer buf(2 * kBlockSize);
  io.Read(0, buf.data(), 2 * kBlockSize);
  bool found = false;
  for (int slot = 0; slot < 2; slot++) {
    uint8_t* b = buf.data() + slot * kBlockSize;
    Superblock sb;
    memcpy(&sb, b, sizeof sb);
    if (sb.magic != kSuperMagic || !BlockValid(b)) continue;
    if (sb.version != kVersion || sb.bsize != kBlockSize) continue;
    if (!found || sb.generation > out->generation) { *out = sb; found = true; }
  }
  return found;
}

void FillSummary(const Superblock& sb, DeviceIo& io, uint64_t used, uint64_t entries, DeviceSummary* out) {
  out->path = io.path();
  out->major = io.major();
  out->minor = io.minor();
  memcpy(out->sb_id, sb.sb_id, 16);
  out->size = sb.size;
  out->blocks = sb.blocks;
  out->used_blocks = used;
  out->index_block = sb.index_block;
  out->bm_block = sb.bm_block[sb.generation % 2];
  out->bm_blocks = sb.bm_blocks;
  out->entries = entries;
  out->generation = sb.generation;
}

}  // namespace

// ---- format -------------------------------------------------------------------------------

void Store::Format(const std::string& path, bool force, DeviceSummary* out) {
  DeviceIo io(path, false, FaultOptions{});
  uint64_t blocks = io.size() / kBlockSize;
  Superblock old{};
  if (!force && blocks >= 2 && ReadSuperblocks(io, &old))
    throw StoreError("BAD_ARGUMENT: " + path + " already holds a ddfs store (sb_id " + Hex(old.sb_id, 16) + "); pass -f to format it anyway");
  uint64_t bm_blocks = (blocks + kBitsPerBitmapBlock - 1) / kBitsPerBitmapBlock;
  // Journal: ~1/128 of the device, between 128 blocks (512 KiB) and 16384 (64 MiB).
  uint64_t journal_blocks = std::min<uint64_t>(16384, std::max<uint64_t>(128, blocks / 128));
  uint64_t data_block = 2 + 2 * bm_blocks + journal_blocks;
  if (blocks < data_block + 16)
    throw StoreError("BAD_ARGUMENT: " + path + " is too small for a ddfs store (" + std::to_string(io.size()) + " bytes; need at least " + std::to_string((data_block + 16) * kBlockSize) + ")");
  io.Preallocate(io.size());

  Superblock sb{};
  sb.magic = kSuperMagic;
  sb.version = kVersion;
  sb.bsize = kBlockSize;
  if (getrandom(sb.sb_id, 16, 0) != 16) throw StoreError("IO: no randomness for the superblock id");
  sb.size = blocks * kBlockSize;
  sb.blocks = blocks;
  sb.generation = 1;
  sb.bm_block[0] = 2;
  sb.bm_block[1] = 2 + bm_blocks;
  sb.bm_blocks = bm_blocks;
  sb.journal_block = 2 + 2 * bm_blocks;
  sb.journal_blocks = journal_blocks;
  sb.data_block = data_block;
  sb.index_block = data_block;  // an empty index checkpoint: one block
  sb.index_blocks = 1;
  sb.index_first_len = 1;
  sb.index_entries = 0;
  sb.journal_head_seq = 1;
  sb.journal_head_pos = 0;

  // Zero the journal so no stale block from an earlier format can ever replay.
  AlignedBuffer zeros(1024 * 1024);
  memset(zeros.data(), 0, zeros.size());
  for (uint64_t b = 0; b < journal_blocks; b += 256) {
    uint64_t n = std::min<uint64_t>(256, journal_blocks - b);
    io.Write((sb.journal_block + b) * kBlockSize, zeros.data(), n * kBlockSize);
  }
  // Empty index block.
  AlignedBuffer blk(kBlockSize);
  memset(blk.data(), 0, kBlockSize);
  BlockHeader ih{kIndexMagic, 0, 0, sb.generation, 0};
  memcpy(blk.data(), &ih, sizeof ih);
  SealBlock(blk.data());
  io.Write(sb.index_block * kBlockSize, blk.data(), kBlockSize);
  // Bitmap of generation 1 (region B) with the fixed regions and the index block used.
  uint64_t used = data_block + 1;
  AlignedBuffer bm(bm_blocks * kBlockSize);
  memset(bm.data(), 0, bm.size());
  for (uint64_t i = 0; i < bm_blocks; i++) {
    uint8_t* b = bm.data() + i * kBlockSize;
    BlockHeader h{kBitmapMagic, 0, i, sb.generation, 0};
    memcpy(b, &h, sizeof h);
    for (uint64_t bit = 0; bit < kBitsPerBitmapBlock; bit++) {
      uint64_t block = i * kBitsPerBitmapBlock + bit;
      if (block >= used) break;
      b[kBlockHeaderBytes + bit / 8] |= uint8_t(1u << (bit % 8));
    }
    SealBlock(b);
  }
  io.Write(sb.bm_block[sb.generation % 2] * kBlockSize, bm.data(), bm.size());
  io.Flush();
  // Both superblock slots: the other slot gets an older generation so it never wins,
  // and any superblock of an earlier format is overwritten.
  for (int slot = 1; slot >= 0; slot--) {
    Superblock s = sb;
    s.generation = slot == int(sb.generation % 2) ? sb.generation : 0;
    memset(blk.data(), 0, kBlockSize);
    memcpy(blk.data(), &s, sizeof s);
    SealBlock(blk.data());
    io.Write(uint64_t(slot) * kBlockSize, blk.data(), kBlockSize);
  }
  io.Flush();
  FillSummary(sb, io, used, 0, out);
}

bool Store::Probe(const std::string& path, DeviceSummary* out) {
  DeviceIo io(path, true, FaultOptions{});
  Superblock sb{};
  if (io.size() < 2 * kBlockSize || !ReadSuperblocks(io, &sb)) return false;
  // Used blocks come from the bitmap of the superblock's generation.
  AlignedBuffer bm(sb.bm_blocks * kBlockSize);
  io.Read(sb.bm_block[sb.generation % 2] * kBlockSize, bm.data(), bm.size());
  uint64_t used = 0;
  for (uint64_t i = 0; i < sb.bm_blocks; i++) {
    uint8_t* b = bm.data() + i * kBlockSize;
    if (!BlockValid(b)) throw StoreError("CORRUPT: bitmap block " + std::to_string(sb.bm_block[sb.generation % 2] + i) + " of " + path + " fails its checksum");
    for (uint32_t j = kBlockHeaderBytes; j < kHashOffset; j++) used += __builtin_popcount(b[j]);
  }
  FillSummary(sb, io, used, sb.index_entries, out);
  return true;
}

// ---- open and recovery ----------------------------------------------------------------------

std::unique_ptr<Store> Store::Open(const std::string& path, FaultOptions faults) {
  std::unique_ptr<Store> s(new Store());
  s->io_ = std::make_unique<DeviceIo>(path, false, faults);
  s->Load();
  return s;
}

Store::~Store() = default;

void Store::MarkUsed(uint64_t block, uint64_t n, bool used) {
  for (uint64_t b = block; b < block + n; b++) {
    uint64_t& w = bitmap_[b / 64];
    uint64_t bit = 1ULL << (b % 64);
    if (used && !(w & bit)) { w |= bit; used_blocks_++; }
    if (!used && (w & bit)) { w &= ~bit; used_blocks_--; }
  }
}

void Store::Apply(const Record& r) {
  Key k;
  memcpy(k.data(), r.key, kKeyBytes);
  if (r.type == kPut) {
    if (r.block + r.blocks > sb_.blocks || (r.blocks > 0 && r.block < sb_.data_block))
      throw StoreError("CORRUPT: a journal record of " + io_->path() + " points outside the data area");
    auto it = index_.find(k);
    if (it != index_.end()) MarkUsed(it->second.block, it->second.blocks, false);
    index_[k] = Entry{r.block, r.blocks, r.length, r.hash};
    MarkUsed(r.block, r.blocks, true);
  } else if (r.type == kRemove) {
    auto it = index_.find(k);
    if (it != index_.end()) { MarkUsed(it->second.block, it->second.blocks, false); index_.erase(it); }
  } else if (r.type == kRemoveId) {
    Key lo{};
    memcpy(lo.data(), r.key, 16);
    auto it = index_.lower_bound(lo);
    while (it != index_.end() && memcmp(it->first.data(), r.key, 16) == 0) {
      MarkUsed(it->second.block, it->second.blocks, false);
      it = index_.erase(it);
    }
  } else {
    throw StoreError("CORRUPT: unknown record type " + std::to_string(r.type) + " on " + io_->path());
  }
}

void Store::Load() {
  DeviceIo& io = *io_;
  if (io.size() < 2 * kBlockSize || !ReadSuperblocks(io, &sb_))
    throw StoreError("DEVICE_NOT_FORMATTED: " + io.path() + " holds no ddfs store; format it with: ddfs dev add -d " + io.path() + " -f");
  if (sb_.blocks * kBlockSize > io.size())
    throw StoreError("CORRUPT: " + io.path() + " is smaller than its superblock says (" + std::to_string(io.size()) + " < " + std::to_string(sb_.blocks * kBlockSize) + ")");
  bitmap_.assign((sb_.blocks + 63) / 64, 0);
  used_blocks_ = 0;
  MarkUsed(0, sb_.data_block, true);
  // The index checkpoint: a chain of extents, every block verified.
  index_extents_.clear();
  uint64_t seen = 0, ordinal = 0;
  uint64_t start = sb_.index_block, len = sb_.index_first_len;
  while (len > 0) {
    if (start < sb_.data_block || start + len > sb_.blocks || ordinal + len > sb_.index_blocks)
      throw StoreError("CORRUPT: the index checkpoint of " + io.path() + " points outside the data area");
    AlignedBuffer idx(len * kBlockSize);
    io.Read(start * kBlockSize, idx.data(), idx.size());
    MarkUsed(start, len, true);
    index_extents_.emplace_back(start, len);
    uint64_t next = 0;
    for (uint64_t i = 0; i < len; i++, ordinal++) {
      uint8_t* b = idx.data() + i * kBlockSize;
      BlockHeader h;
      memcpy(&h, b, sizeof h);
      if (!BlockValid(b) || h.magic != kIndexMagic || h.seq != ordinal || h.generation != sb_.generation || h.count > kRecordsPerBlock)
        throw StoreError("CORRUPT: index block " + std::to_string(start + i) + " of " + io.path() + " fails its checksum");
      if (i == 0) next = h.reserved;
      for (uint32_t j = 0; j < h.count; j++) {
        Record r;
        memcpy(&r, b + kBlockHeaderBytes + j * kRecordBytes, sizeof r);
        Apply(r);
        seen++;
      }
    }
    start = ExtentStart(next);
    len = ExtentLen(next);
  }
  if (ordinal != sb_.index_blocks || seen != sb_.index_entries)
    throw StoreError("CORRUPT: index of " + io.path() + " holds " + std::to_string(seen) + " entries in " + std::to_string(ordinal) + " blocks, superblock says " + std::to_string(sb_.index_entries) + " in " + std::to_string(sb_.index_blocks));

  ReplayJournal(io);
  // A new generation right away: journal blocks of the old one (including any written after the
  // last valid one before a crash) can never be replayed again.
  Checkpoint();
}

// Replays the journal from the checkpoint's head while blocks are valid and in sequence, a
// whole batch at a time. Every batch but the last was flushed before the next was written; the
// last one may have lost power mid-flush, so it counts only when all its blocks are there and
// the data of every entry it puts matches the record's hash (it was never acknowledged else).
void Store::ReplayJournal(DeviceIo& io) {
  journal_seq_ = sb_.journal_head_seq;
  journal_pos_ = sb_.journal_head_pos;
  AlignedBuffer jb(kBlockSize);
  std::vector<Record> batch, last;  // the batch being read; the last whole one, not applied yet
  uint64_t batch_blocks = 0, got = 0;  // that batch's blocks, and how many were read
  for (uint64_t replayed = 0; replayed < sb_.journal_blocks; replayed++) {
    io.Read((sb_.journal_block + journal_pos_) * kBlockSize, jb.data(), kBlockSize);
    BlockHeader h;
    memcpy(&h, jb.data(), sizeof h);
    if (h.magic != kJournalMagic || !BlockValid(jb.data()) || h.seq != journal_seq_ || h.generation != sb_.generation || h.count > kRecordsPerBlock) break;
    uint64_t blocks = BatchBlocks(h.reserved), index = BatchIndex(h.reserved);
    bool in_order = blocks == 0 ? got == 0 : index == got && index < blocks && (got == 0 || blocks == batch_blocks);
    if (!in_order) break;
    for (uint32_t j = 0; j < h.count; j++) {
      Record r;
      memcpy(&r, jb.data() + kBlockHeaderBytes + j * kRecordBytes, sizeof r);
      batch.push_back(r);
    }
    batch_blocks = blocks;
    got++;
    journal_seq_++;
    journal_pos_ = (journal_pos_ + 1) % sb_.journal_blocks;
    if (blocks == 0 || got == blocks) {
      // A whole batch: the one before it was not the last. (An older ddfs's block is a batch
      // whose data was flushed before it: applied at once.)
      for (const Record& r : last) Apply(r);
      last.swap(batch);
      batch.clear();
      got = 0;
      if (blocks == 0) {
        for (const Record& r : last) Apply(r);
        last.clear();
      }
    }
  }
  for (const Record& r : last) if (!DataMatches(io, r)) return;
  for (const Record& r : last) Apply(r);
}

// Whether the blocks a put record points at hold what it says (other records: true).
bool Store::DataMatches(DeviceIo& io, const Record& r) {
  if (r.type != kPut || r.length == 0) return true;
  if (r.block < sb_.data_block || r.block + r.blocks > sb_.blocks || r.blocks != ExtentBlocks(r.length)) return false;
  uint64_t data_blocks = BlocksFor(r.length);
  if (r.length <= kSegmentSize) {
    AlignedBuffer data(data_blocks * kBlockSize);
    io.Read(r.block * kBlockSize, data.data(), data.size());
    return XXH64(data.data(), r.length, 0) == r.hash;
  }
  uint64_t segments = SegmentsFor(r.length);
  AlignedBuffer list(BlocksFor(segments * 8) * kBlockSize);
  io.Read((r.block + data_blocks) * kBlockSize, list.data(), list.size());
  if (XXH64(list.data(), segments * 8, 0) != r.hash) return false;
  AlignedBuffer segment(kSegmentSize);
  for (uint64_t s = 0; s < segments; s++) {
    uint64_t len = std::min<uint64_t>(kSegmentSize, r.length - s * kSegmentSize);
    io.Read(r.block * kBlockSize + s * kSegmentSize, segment.data(), BlocksFor(len) * kBlockSize);
    uint64_t want;
    memcpy(&want, list.data() + s * 8, 8);
    if (XXH64(segment.data(), len, 0) != want) return false;
  }
  return true;
}

// ---- allocation -------------------------------------------------------------------------------

uint64_t Store::Allocate(uint64_t n) {
  if (n == 0) return 0;
  uint64_t total = sb_.blocks;
  // Next-fit over the bitmap, skipping full words, so a large entry gets one contiguous extent.
  for (int pass = 0; pass < 2; pass++) {
    uint64_t start = pass == 0 ? std::max(alloc_hint_, sb_.data_block) : sb_.data_block;
    uint64_t end = pass == 0 ? total : std::min(total, std::max(alloc_hint_, sb_.data_block) + n);
    uint64_t run = 0, run_start = start;
    for (uint64_t b = start; b < end;) {
      if (b % 64 == 0 && bitmap_[b / 64] == ~0ULL) { run = 0; b += 64; run_start = b; continue; }
      if (bitmap_[b / 64] & (1ULL << (b % 64))) { run = 0; b++; run_start = b; continue; }
      if (++run == n) {
        MarkUsed(run_start, n, true);
        alloc_hint_ = run_start + n;
        return run_start;
      }
      b++;
    }
  }
  throw StoreError("DEVICE_FULL: " + io_->path() + " has no free extent of " + std::to_string(n) + " blocks (" +
                   std::to_string(sb_.blocks - used_blocks_) + " blocks free); add a device or delete objects");
}

std::vector<std::pair<uint64_t, uint64_t>> Store::AllocateExtents(uint64_t n) {
  try {
    return {{Allocate(n), n}};
  } catch (const StoreError&) {
  }
  // No contiguous run: gather free runs from the start of the data area.
  std::vector<std::pair<uint64_t, uint64_t>> out;
  uint64_t got = 0;
  for (uint64_t b = sb_.data_block; b < sb_.blocks && got < n;) {
    if (bitmap_[b / 64] & (1ULL << (b % 64))) { b++; continue; }
    uint64_t s = b;
    while (b < sb_.blocks && got + (b - s) < n && !(bitmap_[b / 64] & (1ULL << (b % 64)))) b++;
    out.emplace_back(s, b - s);
    got += b - s;
  }
  if (got < n) throw StoreError("DEVICE_FULL: " + io_->path() + " has no room for its index (" + std::to_string(n) + " blocks); delete objects or add a device");
  for (auto& [s, len] : out) MarkUsed(s, len, true);
  return out;
}

// ---- writes -----------------------------------------------------------------------------------

void Store::CheckOpen() {
  if (closed_) throw StoreError("CLOSED: the store on " + io_->path() + " is closed");
}

uint64_t Store::BeginWrite(const Key& key, uint64_t length) {
  std::lock_guard<std::mutex> g(mu_);
  CheckOpen();
  PendingWrite w;
  w.key = key;
  w.length = length;
  w.blocks = ExtentBlocks(length);
  // Keep room for the next index checkpoint (written before the old one is freed), so a full
  // device can still checkpoint, close and delete.
  uint64_t reserve = (index_.size() + pending_.size() + 1) / kRecordsPerBlock + 8;
  if (sb_.blocks - used_blocks_ < w.blocks + reserve)
    throw StoreError("DEVICE_FULL: " + io_->path() + " is full (" + std::to_string(sb_.blocks - used_blocks_) + " blocks free, " +
                     std::to_string(w.blocks) + " needed); add a device or delete objects");
  w.block = Allocate(w.blocks);
  if (length > kSegmentSize) w.segment_hashes.assign(SegmentsFor(length), 0);
  uint64_t id = next_write_id_++;
  pending_.emplace(id, std::move(w));
  return id;
}

void Store::Write(uint64_t write_id, uint64_t offset, const uint8_t* data, size_t len) {
  PendingWrite* w;
  {
    std::lock_guard<std::mutex> g(mu_);
    CheckOpen();
    auto it = pending_.find(write_id);
    if (it == pending_.end() || it->second.committing) throw StoreError("BAD_ARGUMENT: no such write in progress");
    w = &it->second;  // stable: unordered_map nodes do not move, and only Abort/Commit erase it
  }
  if (offset % kSegmentSize != 0) throw StoreError("BAD_ARGUMENT: write offsets must be multiples of 1 MiB");
  if (offset + len > w->length) throw StoreError("BAD_ARGUMENT: write past the entry's length");
  if (offset + len != w->length && len % kSegmentSize != 0) throw StoreError("BAD_ARGUMENT: only the last write may end inside a segment");
  if (w->length <= kSegmentSize && len != w->length) throw StoreError("BAD_ARGUMENT: an entry of one segment is written in one piece");
  if (len == 0) return;
  // Hash before writing, segment by segment.
  if (w->length <= kSegmentSize) {
    w->hash = XXH64(data, len, 0);
  } else {
    for (uint64_t o = 0; o < len; o += kSegmentSize)
      w->segment_hashes[(offset + o) / kSegmentSize] = XXH64(data + o, std::min<uint64_t>(kSegmentSize, len - o), 0);
  }
  uint64_t disk = w->block * kBlockSize + offset;
  size_t whole = len & ~size_t(kBlockSize - 1);
  bool aligned = (reinterpret_cast<uintptr_t>(data) % kBlockSize) == 0;
  if (aligned && whole > 0) {
    io_->Write(disk, data, whole);
  } else if (whole > 0) {
    // Not aligned in memory: copy through an aligned bounce buffer, 4 MiB at a time.
    AlignedBuffer bounce(std::min<size_t>(whole, 4 << 20));
    for (size_t o = 0; o < whole; o += bounce.size()) {
      size_t n = std::min(bounce.size(), whole - o);
      memcpy(bounce.data(), data + o, n);
      io_->Write(disk + o, bounce.data(), n);
    }
  }
  if (whole < len) {  // the last partial block, zero padded
    AlignedBuffer tail(kBlockSize);
    memset(tail.data(), 0, kBlockSize);
    memcpy(tail.data(), data + whole, len - whole);
    io_->Write(disk + whole, tail.data(), kBlockSize);
  }
  std::lock_guard<std::mutex> g(mu_);
  w->bytes_written += len;
}

std::vector<uint64_t> Store::WriteWhole(const std::vector<WholeEntry>& entries) {
  // Entries up to this size are copied into one aligned buffer with their neighbours; larger
  // ones (fragments) are written from their own memory, as Write does (a copy of every 1 MiB
  // fragment cost a receiving node ~10% of its CPU).
  constexpr size_t kMergeMax = 64 * 1024;
  std::vector<uint64_t> wids;
  std::vector<PendingWrite*> writes;
  try {
    for (const WholeEntry& e : entries) {
      if (e.size > kSegmentSize) throw StoreError("BAD_ARGUMENT: a whole entry is at most one segment");
      wids.push_back(BeginWrite(e.key, e.size));
      std::lock_guard<std::mutex> g(mu_);
      writes.push_back(&pending_.at(wids.back()));  // stable: see Write
    }
    // One aligned buffer and one write per run of small entries with adjacent extents: a
    // create's manifest and name record took three writes (the manifest's whole blocks, its
    // tail, the record), each a wait for the device, before the batch's flush.
    for (size_t first = 0; first < entries.size();) {
      if (entries[first].size > kMergeMax) {
        Write(wids[first], 0, entries[first].data, entries[first].size);
        first++;
        continue;
      }
      size_t end = first + 1;
      while (end < entries.size() && entries[end].size <= kMergeMax && writes[end]->block == writes[end - 1]->block + writes[end - 1]->blocks) end++;
      uint64_t blocks = writes[end - 1]->block + writes[end - 1]->blocks - writes[first]->block;
      if (blocks > 0) {
        AlignedBuffer buf(blocks * kBlockSize);
        for (size_t i = first; i < end; i++) {
          uint8_t* at = buf.data() + (writes[i]->block - writes[first]->block) * kBlockSize;
          memcpy(at, entries[i].data, entries[i].size);
          memset(at + entries[i].size, 0, writes[i]->blocks * kBlockSize - entries[i].size);  // zero padded
          writes[i]->hash = XXH64(at, entries[i].size, 0);  // of the bytes written
        }
        io_->Write(writes[first]->block * kBlockSize, buf.data(), buf.size());
      }
      std::lock_guard<std::mutex> g(mu_);
      for (size_t i = first; i < end; i++) writes[i]->bytes_written = entries[i].size;
      first = end;
    }
  } catch (...) {
    for (uint64_t wid : wids) Abort(wid);
    throw;
  }
  return wids;
}

// Everything of a commit but the journal record: the hash list of a large entry is written and
// the record built. Throws (after aborting the write) when that fails.
bool Store::PrepareCommit(uint64_t write_id, Record* r, Entry* e) {
  PendingWrite w;
  {
    std::lock_guard<std::mutex> g(mu_);
    CheckOpen();
    auto it = pending_.find(write_id);
    if (it == pending_.end() || it->second.committing) throw StoreError("BAD_ARGUMENT: no such write in progress");
    if (it->second.bytes_written != it->second.length)
      throw StoreError("BAD_ARGUMENT: commit after " + std::to_string(it->second.bytes_written) + " of " + std::to_string(it->second.length) + " bytes");
    it->second.committing = true;
    w = it->second;
  }
  uint64_t hash = w.hash;
  if (w.length > kSegmentSize) {
    // The hash list follows the data in the same extent; the record holds its hash.
    size_t list_bytes = w.segment_hashes.size() * 8;
    AlignedBuffer list(BlocksFor(list_bytes) * kBlockSize);
    memset(list.data(), 0, list.size());
    memcpy(list.data(), w.segment_hashes.data(), list_bytes);
    hash = XXH64(list.data(), list_bytes, 0);
    try {
      io_->Write((w.block + BlocksFor(w.length)) * kBlockSize, list.data(), list.size());
    } catch (...) { Abort(write_id); throw; }
  } else if (w.length == 0) {
    hash = XXH64(nullptr, 0, 0);
  }
  *r = Record{};
  r->type = kPut;
  memcpy(r->key, w.key.data(), kKeyBytes);
  r->block = w.block;
  r->blocks = static_cast<uint32_t>(w.blocks);
  r->length = w.length;
  r->hash = hash;
  *e = Entry{w.block, w.blocks, w.length, hash};
  return true;
}

Entry Store::Commit(uint64_t write_id) {
  Record r;
  Entry e;
  PrepareCommit(write_id, &r, &e);
  try {
    CommitRecords({r});
  } catch (...) {
    Abort(write_id);
    throw;
  }
  std::lock_guard<std::mutex> g(mu_);
  pending_.erase(write_id);
  return e;
}

void Store::CommitManyAsync(const std::vector<uint64_t>& write_ids, CommitDone done) {
  std::vector<Record> records(write_ids.size());
  Entry last{};
  try {
    for (size_t i = 0; i < write_ids.size(); i++) PrepareCommit(write_ids[i], &records[i], &last);
  } catch (...) {
    for (uint64_t wid : write_ids) Abort(wid);
    throw;
  }
  auto finish = [this, write_ids, last, done](const std::string& error) {
    for (uint64_t wid : write_ids) {
      if (error.empty()) {
        std::lock_guard<std::mutex> g(mu_);
        pending_.erase(wid);
      } else {
        Abort(wid);
      }
    }
    done(error, last);
  };
  std::unique_lock<std::mutex> lk(commit_mu_);
  if (failed_batch_ != 0) {
    std::string error = batch_error_;
    lk.unlock();
    finish(error);
    return;
  }
  Enqueue(records, finish, lk);
  if (!flushing_) LeadFlushes(lk);
}

void Store::Abort(uint64_t write_id) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = pending_.find(write_id);
  if (it == pending_.end()) return;
  MarkUsed(it->second.block, it->second.blocks, false);
  pending_.erase(it);
}

bool Store::Remove(const Key& key) {
  {
    std::lock_guard<std::mutex> g(mu_);
    CheckOpen();
    if (index_.find(key) == index_.end()) return false;
  }
  Record r{};
  r.type = kRemove;
  memcpy(r.key, key.data(), kKeyBytes);
  CommitRecords({r});
  return true;
}

uint64_t Store::RemoveId(const uint8_t* id16, const Key* mark) {
  {
    std::lock_guard<std::mutex> g(mu_);
    CheckOpen();
  }
  std::vector<Record> records(mark == nullptr ? 1 : 2);
  records[0].type = kRemoveId;
  memcpy(records[0].key, id16, 16);
  if (mark != nullptr) {
    // Applied after the removal (records apply in order, at commit and on replay).
    records[1].type = kPut;
    memcpy(records[1].key, mark->data(), kKeyBytes);
    records[1].hash = XXH64(nullptr, 0, 0);
  }
  uint64_t before = List(id16).size();
  CommitRecords(std::move(records));
  return before;
}

// Group commit. Callers queue records; whoever finds no flush running leads: it flushes the
// whole queue as one batch, and again while more arrived meanwhile, so many concurrent commits
// share two fdatasyncs. Synchronous callers wait for their batch; asynchronous ones (CommitManyAsync)
// return at once and are completed by the leader.
uint64_t Store::Enqueue(const std::vector<Record>& records, std::function<void(const std::string&)> done, std::unique_lock<std::mutex>& lk) {
  (void)lk;
  queue_.insert(queue_.end(), records.begin(), records.end());
  if (done) queue_done_.push_back(std::move(done));
  return queued_batch_;
}

void Store::LeadFlushes(std::unique_lock<std::mutex>& lk) {
  flushing_ = true;
  while (!queue_.empty()) {
    std::vector<Record> batch;
    std::vector<std::function<void(const std::string&)>> dones;
    batch.swap(queue_);
    dones.swap(queue_done_);
    uint64_t batch_no = queued_batch_++;
    lk.unlock();
    std::string error;
    try {
      FlushBatch(batch);
    } catch (const std::exception& e) {
      error = e.what();
    }
    lk.lock();
    if (!error.empty() && failed_batch_ == 0) { failed_batch_ = batch_no; batch_error_ = error; }
    durable_batch_ = batch_no;
    std::string outcome = failed_batch_ != 0 ? batch_error_ : "";
    if (failed_batch_ != 0) {
      // Nothing queued can become durable any more.
      for (auto& d : queue_done_) dones.push_back(std::move(d));
      queue_.clear();
      queue_done_.clear();
    }
    commit_cv_.notify_all();
    lk.unlock();
    for (auto& d : dones) d(outcome);
    lk.lock();
  }
  flushing_ = false;
  commit_cv_.notify_all();
}

void Store::CommitRecords(std::vector<Record> records) {
  std::unique_lock<std::mutex> lk(commit_mu_);
  if (failed_batch_ != 0) throw StoreError(batch_error_);
  uint64_t my_batch = Enqueue(records, nullptr, lk);
  for (;;) {
    if (failed_batch_ != 0 && my_batch >= failed_batch_) throw StoreError(batch_error_);
    if (durable_batch_ >= my_batch) return;
    if (!flushing_) LeadFlushes(lk);
    else commit_cv_.wait(lk);
  }
}

void Store::FlushBatch(std::vector<Record>& records) {
  {
    std::lock_guard<std::mutex> g(mu_);
    CheckOpen();
  }
  uint64_t nblocks = (records.size() + kRecordsPerBlock - 1) / kRecordsPerBlock;
  // Keep a quarter of the journal as headroom: checkpoint first when this batch would pass it.
  uint64_t used = journal_seq_ - sb_.journal_head_seq;
  if (used + nblocks > sb_.journal_blocks * 3 / 4) Checkpoint();
  if (nblocks > sb_.journal_blocks / 4) throw StoreError("INTERNAL: a commit batch larger than the journal");
  // One flush for the batch's data and its records (a second one before the records cost each
  // small commit ~0.13 ms): replay takes the last batch only if its data matches (ReplayJournal).
  AlignedBuffer buf(nblocks * kBlockSize);
  memset(buf.data(), 0, buf.size());
  for (uint64_t i = 0; i < nblocks; i++) {
    uint8_t* b = buf.data() + i * kBlockSize;
    uint32_t count = static_cast<uint32_t>(std::min<uint64_t>(kRecordsPerBlock, records.size() - i * kRecordsPerBlock));
    BlockHeader h{kJournalMagic, count, journal_seq_ + i, sb_.generation, PackBatch(nblocks, i)};
    memcpy(b, &h, sizeof h);
    memcpy(b + kBlockHeaderBytes, &records[i * kRecordsPerBlock], count * kRecordBytes);
    SealBlock(b);
  }
  // The journal blocks, wrapping around the circular region
  for (uint64_t i = 0; i < nblocks;) {
    uint64_t pos = (journal_pos_ + i) % sb_.journal_blocks;
    uint64_t n = std::min(nblocks - i, sb_.journal_blocks - pos);
    io_->Write((sb_.journal_block + pos) * kBlockSize, buf.data() + i * kBlockSize, n * kBlockSize);
    i += n;
  }
  io_->Flush();  // durable: now visible
  journal_seq_ += nblocks;
  journal_pos_ = (journal_pos_ + nblocks) % sb_.journal_blocks;
  std::lock_guard<std::mutex> g(mu_);
  for (auto& r : records) {
    if (r.type == kPut) {
      // The extent was reserved at BeginWrite; Apply marks it used again (no-op) and frees
      // the extent of an entry it replaces.
      Key k;
      memcpy(k.data(), r.key, kKeyBytes);
      auto it = index_.find(k);
      if (it != index_.end()) MarkUsed(it->second.block, it->second.blocks, false);
      index_[k] = Entry{r.block, r.blocks, r.length, r.hash};
    } else {
      Apply(r);
    }
  }
}

// Copy-on-write checkpoint: the sorted index into fresh blocks, the bitmap into the other
// region, then the superblock of the next generation into the other slot. Until that last
// write is durable, the previous generation stays whole on disk.
void Store::Checkpoint() {
  uint64_t gen = sb_.generation + 1;
  std::unique_lock<std::mutex> g(mu_);
  uint64_t entries = index_.size();
  uint64_t nblocks = std::max<uint64_t>(1, (entries + kRecordsPerBlock - 1) / kRecordsPerBlock);
  auto extents = AllocateExtents(nblocks);
  AlignedBuffer idx(nblocks * kBlockSize);
  memset(idx.data(), 0, idx.size());
  auto it = index_.begin();
  for (uint64_t i = 0; i < nblocks; i++) {
    uint8_t* b = idx.data() + i * kBlockSize;
    uint32_t count = 0;
    for (; count < kRecordsPerBlock && it != index_.end(); count++, ++it) {
      Record r{};
      r.type = kPut;
      memcpy(r.key, it->first.data(), kKeyBytes);
      r.block = it->second.block;
      r.blocks = static_cast<uint32_t>(it->second.blocks);
      r.length = it->second.length;
      r.hash = it->second.hash;
      memcpy(b + kBlockHeaderBytes + count * kRecordBytes, &r, kRecordBytes);
    }
    BlockHeader h{kIndexMagic, count, i, gen, 0};
    memcpy(b, &h, sizeof h);
  }
  // Chain the extents, then seal every block.
  for (uint64_t e = 0, first = 0; e < extents.size(); first += extents[e].second, e++) {
    BlockHeader h;
    memcpy(&h, idx.data() + first * kBlockSize, sizeof h);
    h.reserved = e + 1 < extents.size() ? PackExtent(extents[e + 1].first, extents[e + 1].second) : 0;
    memcpy(idx.data() + first * kBlockSize, &h, sizeof h);
  }
  for (uint64_t i = 0; i < nblocks; i++) SealBlock(idx.data() + i * kBlockSize);
  // Bitmap as it will be once the old checkpoint is released: in-flight reservations are
  // left out (they are not in the index, so they are free after a crash anyway).
  std::vector<uint64_t> bits = bitmap_;
  auto clear = [&](uint64_t b0, uint64_t n) { for (uint64_t b = b0; b < b0 + n; b++) bits[b / 64] &= ~(1ULL << (b % 64)); };
  for (auto& [b0, n] : index_extents_) clear(b0, n);
  for (auto& [id, w] : pending_) clear(w.block, w.blocks);
  g.unlock();

  uint64_t region = sb_.bm_block[gen % 2];
  AlignedBuffer bm(sb_.bm_blocks * kBlockSize);
  memset(bm.data(), 0, bm.size());
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(bits.data());
  uint64_t total_bytes = (sb_.blocks + 7) / 8;
  for (uint64_t i = 0; i < sb_.bm_blocks; i++) {
    uint8_t* b = bm.data() + i * kBlockSize;
    BlockHeader h{kBitmapMagic, 0, i, gen, 0};
    memcpy(b, &h, sizeof h);
    uint64_t from = i * (kBitsPerBitmapBlock / 8);
    if (from < total_bytes) memcpy(b + kBlockHeaderBytes, bytes + from, std::min<uint64_t>(kBitsPerBitmapBlock / 8, total_bytes - from));
    SealBlock(b);
  }
  try {
    for (uint64_t e = 0, first = 0; e < extents.size(); first += extents[e].second, e++)
      io_->Write(extents[e].first * kBlockSize, idx.data() + first * kBlockSize, extents[e].second * kBlockSize);
    io_->Write(region * kBlockSize, bm.data(), bm.size());
    io_->Flush();
    Superblock next = sb_;
    next.generation = gen;
    next.index_block = extents[0].first;
    next.index_first_len = extents[0].second;
    next.index_blocks = nblocks;
    next.index_entries = entries;
    next.journal_head_seq = journal_seq_;
    next.journal_head_pos = journal_pos_;
    WriteSuperblock(next);
    io_->Flush();
    g.lock();
    for (auto& [b0, n] : index_extents_) MarkUsed(b0, n, false);
    index_extents_ = extents;
    sb_ = next;
  } catch (...) {
    if (!g.owns_lock()) g.lock();
    for (auto& [b0, n] : extents) MarkUsed(b0, n, false);
    throw;
  }
}

void Store::WriteSuperblock(const Superblock& sb) {
  AlignedBuffer blk(kBlockSize);
  memset(blk.data(), 0, kBlockSize);
  memcpy(blk.data(), &sb, sizeof sb);
  SealBlock(blk.data());
  io_->Write((sb.generation % 2) * kBlockSize, blk.data(), kBlockSize);
}

// ---- reads and queries --------------------------------------------------------------------

size_t Store::Read(const Key& key, uint64_t offset, uint64_t len, AlignedBuffer* out) {
  Entry e;
  {
    std::lock_guard<std::mutex> g(mu_);
    CheckOpen();
    auto it = index_.find(key);
    if (it == index_.end()) throw StoreError("NOT_FOUND: no entry " + KeyText(key) + " on " + io_->path());
    e = it->second;
  }
  if (offset > e.length || len > e.length - offset) throw StoreError("BAD_ARGUMENT: read past the end of entry " + KeyText(key));
  auto corrupt = [&](uint64_t block) {
    return StoreError("CORRUPT: entry " + KeyText(key) + " on " + io_->path() + " fails its XXH64 at block " + std::to_string(block) + "; its bytes are not returned");
  };
  if (e.length <= kSegmentSize) {
    uint64_t nb = BlocksFor(e.length);
    *out = AlignedBuffer(std::max<uint64_t>(nb, 1) * kBlockSize);
    if (nb > 0) io_->Read(e.block * kBlockSize, out->data(), nb * kBlockSize);
    if (XXH64(out->data(), e.length, 0) != e.hash) throw corrupt(e.block);
    return offset;
  }
  // Large entry: check the hash list, then only the segments the range touches.
  uint64_t nseg = SegmentsFor(e.length);
  uint64_t list_block = e.block + BlocksFor(e.length);
  AlignedBuffer list(BlocksFor(nseg * 8) * kBlockSize);
  io_->Read(list_block * kBlockSize, list.data(), list.size());
  if (XXH64(list.data(), nseg * 8, 0) != e.hash) throw corrupt(list_block);
  if (len == 0) { *out = AlignedBuffer(kBlockSize); return 0; }
  uint64_t s0 = offset / kSegmentSize, s1 = (offset + len - 1) / kSegmentSize;
  uint64_t from = s0 * kSegmentSize, to = std::min(e.length, (s1 + 1) * kSegmentSize);
  *out = AlignedBuffer(BlocksFor(to - from) * kBlockSize);
  io_->Read(e.block * kBlockSize + from, out->data(), BlocksFor(to - from) * kBlockSize);
  for (uint64_t s = s0; s <= s1; s++) {
    uint64_t h;
    memcpy(&h, list.data() + s * 8, 8);
    uint64_t a = s * kSegmentSize - from, n = std::min(kSegmentSize, e.length - s * kSegmentSize);
    if (XXH64(out->data() + a, n, 0) != h) throw corrupt(e.block + (s * kSegmentSize) / kBlockSize);
  }
  return offset - from;
}

bool Store::Stat(const Key& key, Entry* out) {
  std::lock_guard<std::mutex> g(mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  *out = it->second;
  return true;
}

std::vector<std::pair<Key, Entry>> Store::List(const uint8_t* id16) {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<std::pair<Key, Entry>> out;
  Key lo{};
  memcpy(lo.data(), id16, 16);
  for (auto it = index_.lower_bound(lo); it != index_.end() && memcmp(it->first.data(), id16, 16) == 0; ++it) out.emplace_back(it->first, it->second);
  return out;
}

std::vector<std::array<uint8_t, 16>> Store::Ids(const uint8_t* after16, size_t limit) {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<std::array<uint8_t, 16>> out;
  auto it = index_.begin();
  if (after16 != nullptr) {
    Key lo{};
    memcpy(lo.data(), after16, 16);
    memset(lo.data() + 16, 0xff, 8);
    it = index_.upper_bound(lo);
  }
  while (it != index_.end() && out.size() < limit) {
    std::array<uint8_t, 16> id;
    memcpy(id.data(), it->first.data(), 16);
    out.push_back(id);
    Key next{};
    memcpy(next.data(), id.data(), 16);
    memset(next.data() + 16, 0xff, 8);
    it = index_.upper_bound(next);
  }
  return out;
}

DeviceSummary Store::Summary() {
  std::lock_guard<std::mutex> g(mu_);
  CheckOpen();
  DeviceSummary s;
  // Reservations of writes in flight are not "used" until committed.
  uint64_t reserved = 0;
  for (auto& [id, w] : pending_) reserved += w.blocks;
  FillSummary(sb_, *io_, used_blocks_ - reserved, index_.size(), &s);
  return s;
}

void Store::Close() {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (closed_) return;
  }
  {
    // Wait for any batch in flight, then checkpoint so the next open replays nothing.
    std::unique_lock<std::mutex> lk(commit_mu_);
    commit_cv_.wait(lk, [&] { return !flushing_ && queue_.empty(); });
    flushing_ = true;
  }
  std::string error;
  try { Checkpoint(); } catch (const std::exception& e) { error = e.what(); }
  {
    std::lock_guard<std::mutex> g(mu_);
    closed_ = true;
  }
  const std::string closed_error = "CLOSED: the store on " + io_->path() + " closed before the write was durable";
  std::vector<std::function<void(const std::string&)>> orphans;  // queued during the close
  {
    std::lock_guard<std::mutex> lk(commit_mu_);
    flushing_ = false;
    queue_.clear();
    orphans.swap(queue_done_);
    // A synchronous commit that passed CheckOpen before closed_ was set may have queued during
    // the checkpoint; failing every batch from here on wakes it with CLOSED instead of leaving
    // it waiting for a flush that will never come.
    if (failed_batch_ == 0) {
      failed_batch_ = queued_batch_;
      batch_error_ = closed_error;
    }
    commit_cv_.notify_all();
  }
  for (auto& d : orphans) d(closed_error);
  io_.reset();
  if (!error.empty()) throw StoreError(error);
}

}  // namespace ddfs
