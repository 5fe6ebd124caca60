// Aligned O_DIRECT I/O on one device (block device or regular file), with an optional fault
// layer for crash tests: writes since the last flush stay in an overlay until the flush, and
// at the chosen "power loss" each of them is applied whole, dropped, or torn into sectors.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace ddfs {

// Errors carry the project's stable code as a prefix ("CODE: text"); src/errors.ts lifts them.
struct StoreError : std::runtime_error {
  explicit StoreError(const std::string& m) : std::runtime_error(m) {}
};

struct FaultOptions {
  bool enabled = false;
  uint64_t seed = 0;
  uint64_t crash_after_writes = 0;  // power is lost at this write (counting from open)
  int mode = 0;                     // 0 mixed, 1 tear, 2 drop
};

class DeviceIo {
 public:
  // Opens exclusively: O_EXCL on block devices (the kernel refuses mounted or claimed devices)
  // and a non-blocking flock on the fd, so two nodes can never attach one device.
  DeviceIo(const std::string& path, bool read_only, FaultOptions faults);
  ~DeviceIo();
  DeviceIo(const DeviceIo&) = delete;
  DeviceIo& operator=(const DeviceIo&) = delete;

  void Read(uint64_t offset, void* buf, size_t len);         // buf and offset 4096-aligned
  void Write(uint64_t offset, const void* buf, size_t len);  // buf and offset 4096-aligned
  void Flush();                                              // fdatasync
  void Preallocate(uint64_t size);                           // regular files only

  uint64_t size() const { return size_; }
  bool is_block_device() const { return block_device_; }
  uint32_t major() const { return major_; }
  uint32_t minor() const { return minor_; }
  const std::string& path() const { return path_; }

 private:
  void PowerLoss();
  std::string path_;
  int fd_ = -1;
  int plain_fd_ = -1;  // fault mode: buffered fd that applies the overlay (any alignment)
  uint64_t size_ = 0;
  bool block_device_ = false;
  uint32_t major_ = 0, minor_ = 0;

  FaultOptions faults_;
  std::mutex fault_mu_;
  std::mt19937_64 rng_;
  uint64_t writes_ = 0;
  bool dead_ = false;
  std::map<uint64_t, std::vector<uint8_t>> overlay_;  // unflushed writes by offset (fault mode)
};

// 4096-aligned heap buffer for O_DIRECT (from aligned_pool: freed ones are reused).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t size);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr; o.size_ = 0; }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  uint8_t* data() { return data_; }
  size_t size() const { return size_; }
  /** Hands the memory over; give it back with AlignedFree(p, AlignedCapacity(size())). */
  uint8_t* release() { uint8_t* d = data_; data_ = nullptr; size_ = 0; return d; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ddfs
