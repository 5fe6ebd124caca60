// The raw-block store of one device: extents for entries, an ordered in-memory index made
// durable by a write-ahead journal and copy-on-write checkpoints, group commit.
// Thread-safe: every public method may run on any libuv pool thread.
#pragma once
#include <array>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "store/device_io.h"
#include "store/format.h"

namespace ddfs {

using Key = std::array<uint8_t, fmt::kKeyBytes>;

struct Entry {
  uint64_t block = 0;
  uint64_t blocks = 0;
  uint64_t length = 0;
  uint64_t hash = 0;
};

struct DeviceSummary {
  std::string path;
  uint32_t major = 0, minor = 0;
  uint8_t sb_id[16] = {};
  uint64_t size = 0, blocks = 0, used_blocks = 0;
  uint64_t index_block = 0, bm_block = 0, bm_blocks = 0;
  uint64_t entries = 0, generation = 0;
};

// A write in progress: its extent is reserved, not yet in the index.
struct PendingWrite {
  Key key;
  uint64_t length = 0;
  uint64_t block = 0;
  uint64_t blocks = 0;
  std::vector<uint64_t> segment_hashes;  // one per 1 MiB segment (entries above one segment)
  uint64_t hash = 0;                     // XXH64 of the content (entries up to one segment)
  uint64_t bytes_written = 0;
  bool committing = false;
};

class Store {
 public:
  static void Format(const std::string& path, bool force, DeviceSummary* out);
  static bool Probe(const std::string& path, DeviceSummary* out);  // read-only, no lock
  static std::unique_ptr<Store> Open(const std::string& path, FaultOptions faults);
  ~Store();

  DeviceSummary Summary();
  uint64_t BeginWrite(const Key& key, uint64_t length);                // returns a write id
  void Write(uint64_t write_id, uint64_t offset, const uint8_t* data, size_t len);
  // Whole entries of at most one segment each, reserved and written: entries whose extents
  // follow each other (the next-fit allocator's usual case) go out in one write. Returns their
  // write ids, in order; on failure none is left pending.
  struct WholeEntry { Key key; const uint8_t* data; size_t size; };
  std::vector<uint64_t> WriteWhole(const std::vector<WholeEntry>& entries);
  Entry Commit(uint64_t write_id);                                     // durable on return
  // Commits without waiting: `done` runs on the thread that flushes the batch, with "" or an
  // error. The calling thread flushes only if no flush is running, so callers never wait idle.
  using CommitDone = std::function<void(const std::string& error, const Entry& entry)>;
  // Several writes made durable in one batch: one journal write and flush for all (done gets the
  // last one's entry). A failure before the batch aborts them all.
  void CommitManyAsync(const std::vector<uint64_t>& write_ids, CommitDone done);
  void Abort(uint64_t write_id);
  // Reads [offset, offset+len) of an entry into `out` (aligned, large enough: see ReadSpan), verified.
  // Returns the offset inside `out` where the requested bytes start.
  size_t Read(const Key& key, uint64_t offset, uint64_t len, AlignedBuffer* out);
  bool Stat(const Key& key, Entry* out);
  std::vector<std::pair<Key, Entry>> List(const uint8_t* id16);
  std::vector<std::array<uint8_t, 16>> Ids(const uint8_t* after16, size_t limit);
  bool Remove(const Key& key);
  // Removes every entry of an id and, when `mark` is given, puts it as an empty entry in the same
  // durable step (a delete's tombstone: there is never a moment with neither).
  uint64_t RemoveId(const uint8_t* id16, const Key* mark = nullptr);
  void Close();  // checkpoint, release the device

 private:
  Store() = default;
  struct Batch;
  void Load();
  void Apply(const fmt::Record& r);           // replay a record into index + free map (lock held)
  void ReplayJournal(DeviceIo& io);
  bool DataMatches(DeviceIo& io, const fmt::Record& r);
  uint64_t Allocate(uint64_t blocks);          // lock held; throws DEVICE_FULL
  std::vector<std::pair<uint64_t, uint64_t>> AllocateExtents(uint64_t blocks);  // lock held; any runs
  void MarkUsed(uint64_t block, uint64_t n, bool used);  // lock held
  void CommitRecords(std::vector<fmt::Record> records);  // group commit; durable on return
  // Queues records (with an optional completion) and flushes batches while this thread leads.
  uint64_t Enqueue(const std::vector<fmt::Record>& records, std::function<void(const std::string&)> done, std::unique_lock<std::mutex>& lk);
  void LeadFlushes(std::unique_lock<std::mutex>& lk);
  bool PrepareCommit(uint64_t write_id, fmt::Record* r, Entry* e);  // false: already failed (aborted)
  void FlushBatch(std::vector<fmt::Record>& records);    // leader only
  void Checkpoint();                                     // leader only, lock not held
  void WriteSuperblock(const fmt::Superblock& sb);
  void CheckOpen();

  std::unique_ptr<DeviceIo> io_;
  fmt::Superblock sb_{};

  std::mutex mu_;  // index, free map, pending writes
  std::map<Key, Entry> index_;
  std::vector<uint64_t> bitmap_;  // 1 = used
  std::vector<std::pair<uint64_t, uint64_t>> index_extents_;  // extents of the current checkpoint
  uint64_t used_blocks_ = 0;
  uint64_t alloc_hint_ = 0;
  std::unordered_map<uint64_t, PendingWrite> pending_;
  uint64_t next_write_id_ = 1;

  // Group commit: records queue up; one thread (the leader) flushes a whole batch while the
  // others wait for the batch their records went into.
  std::mutex commit_mu_;
  std::condition_variable commit_cv_;
  std::vector<fmt::Record> queue_;
  std::vector<std::function<void(const std::string&)>> queue_done_;  // completions of async commits
  uint64_t queued_batch_ = 1;    // batch number the queue will be flushed as
  uint64_t durable_batch_ = 0;   // highest batch known durable
  bool flushing_ = false;
  // After a failed flush the device's state is unknown (its cache may have dropped writes), so
  // the first failure is sticky: that batch and every later one fail; the store must be reopened.
  std::string batch_error_;
  uint64_t failed_batch_ = 0;    // first failed batch, 0 if none

  uint64_t journal_seq_ = 0;     // next journal sequence number
  uint64_t journal_pos_ = 0;     // next journal block position
  bool closed_ = false;
};

}  // namespace ddfs
