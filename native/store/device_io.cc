#include "store/device_io.h"

#include "aligned_pool.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace ddfs {

namespace {
std::string Errno(const std::string& what, int err) { return what + ": " + strerror(err); }
}  // namespace

AlignedBuffer::AlignedBuffer(size_t size) : size_(size) {
  data_ = AlignedAlloc(AlignedCapacity(size));
  if (data_ == nullptr) throw StoreError("IO: out of memory");
}
AlignedBuffer::~AlignedBuffer() { if (data_ != nullptr) AlignedFree(data_, AlignedCapacity(size_)); }
AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) AlignedFree(data_, AlignedCapacity(size_));
    data_ = o.data_; size_ = o.size_; o.data_ = nullptr; o.size_ = 0;
  }
  return *this;
}

DeviceIo::DeviceIo(const std::string& path, bool read_only, FaultOptions faults)
    : path_(path), faults_(faults), rng_(faults.seed) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    int e = errno;
    if (e == ENOENT) throw StoreError("NOT_FOUND: no such device or file: " + path);
    throw StoreError("IO: " + Errno("cannot stat " + path, e));
  }
  block_device_ = S_ISBLK(st.st_mode);
  if (!block_device_ && !S_ISREG(st.st_mode)) throw StoreError("BAD_ARGUMENT: " + path + " is neither a block device nor a regular file");
  int flags = (read_only ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC;
  if (block_device_ && !read_only) flags |= O_EXCL;
  fd_ = open(path.c_str(), flags);
  if (fd_ < 0) {
    int e = errno;
    if (e == EBUSY) throw StoreError("DEVICE_IN_USE: " + path + " is mounted or held by another program; unmount it or detach it first");
    if (e == EACCES || e == EPERM) throw StoreError("PERMISSION: " + Errno("cannot open " + path, e) + " (run as root?)");
    throw StoreError("IO: " + Errno("cannot open " + path, e));
  }
  if (!read_only && flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd_);
    fd_ = -1;
    if (e == EWOULDBLOCK) throw StoreError("DEVICE_IN_USE: " + path + " is attached to another ddfs node or process; detach it there first");
    throw StoreError("IO: " + Errno("cannot lock " + path, e));
  }
  if (faults_.enabled) plain_fd_ = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (block_device_) {
    uint64_t bytes = 0;
    if (ioctl(fd_, BLKGETSIZE64, &bytes) != 0) { int e = errno; close(fd_); fd_ = -1; throw StoreError("IO: " + Errno("cannot size " + path, e)); }
    size_ = bytes;
    major_ = ::major(st.st_rdev);
    minor_ = ::minor(st.st_rdev);
  } else {
    size_ = static_cast<uint64_t>(st.st_size);
  }
}

DeviceIo::~DeviceIo() {
  if (plain_fd_ >= 0) close(plain_fd_);
  if (fd_ >= 0) close(fd_);  // closing the fd releases the flock and the O_EXCL claim
}

void DeviceIo::Preallocate(uint64_t size) {
  if (block_device_ || faults_.enabled) return;
  int r = posix_fallocate(fd_, 0, static_cast<off_t>(size));
  if (r != 0 && r != EOPNOTSUPP) throw StoreError("IO: " + Errno("cannot preallocate " + path_, r));
}

void DeviceIo::Read(uint64_t offset, void* buf, size_t len) {
  if (faults_.enabled) {
    std::lock_guard<std::mutex> g(fault_mu_);
    if (dead_) throw StoreError("IO: device lost power (fault injection)");
  }
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd_, static_cast<uint8_t*>(buf) + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw StoreError("IO: " + Errno("read failed on " + path_ + " at byte " + std::to_string(offset + done), errno));
    }
    if (n == 0) throw StoreError("IO: short read on " + path_ + " at byte " + std::to_string(offset + done));
    done += static_cast<size_t>(n);
  }
  if (faults_.enabled) {
    // Unflushed writes are visible to reads, as in a drive's cache.
    std::lock_guard<std::mutex> g(fault_mu_);
    for (auto& [off, data] : overlay_) {
      uint64_t a = std::max<uint64_t>(off, offset), b = std::min<uint64_t>(off + data.size(), offset + len);
      if (a < b) memcpy(static_cast<uint8_t*>(buf) + (a - offset), data.data() + (a - off), b - a);
    }
  }
}

void DeviceIo::Write(uint64_t offset, const void* buf, size_t len) {
  if (offset + len > size_) throw StoreError("IO: write beyond the end of " + path_);
  if (faults_.enabled) {
    std::lock_guard<std::mutex> g(fault_mu_);
    if (dead_) throw StoreError("IO: device lost power (fault injection)");
    writes_++;
    auto p = static_cast<const uint8_t*>(buf);
    overlay_[offset] = std::vector<uint8_t>(p, p + len);  // later writes to the same offset replace earlier ones
    if (faults_.crash_after_writes != 0 && writes_ >= faults_.crash_after_writes) {
      PowerLoss();
      throw StoreError("IO: device lost power (fault injection)");
    }
    return;
  }
  size_t done = 0;
  while (done < len) {
    ssize_t n = pwrite(fd_, static_cast<const uint8_t*>(buf) + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      if (e == ENOSPC) throw StoreError("DEVICE_FULL: the file system holding " + path_ + " is full");
      throw StoreError("IO: " + Errno("write failed on " + path_ + " at byte " + std::to_string(offset + done), e));
    }
    done += static_cast<size_t>(n);
  }
}

// Applies a write the way a disk might at power loss: whole, not at all, or some sectors.
void DeviceIo::PowerLoss() {
  for (auto& [off, data] : overlay_) {
    int choice = faults_.mode == 1 ? 2 : faults_.mode == 2 ? 1 : static_cast<int>(rng_() % 3);
    if (choice == 1) continue;  // dropped
    size_t sectors = data.size() / 512;
    for (size_t s = 0; s < sectors; s++) {
      if (choice == 2 && (rng_() & 1)) continue;  // torn: this sector never reached the platter
      ssize_t n = pwrite(plain_fd_, data.data() + s * 512, 512, static_cast<off_t>(off + s * 512));
      (void)n;  // a failure here only drops more of what was never flushed
    }
  }
  overlay_.clear();
  fdatasync(plain_fd_);
  dead_ = true;
}

void DeviceIo::Flush() {
  if (faults_.enabled) {
    std::lock_guard<std::mutex> g(fault_mu_);
    if (dead_) throw StoreError("IO: device lost power (fault injection)");
    for (auto& [off, data] : overlay_) {
      if (pwrite(plain_fd_, data.data(), data.size(), static_cast<off_t>(off)) != static_cast<ssize_t>(data.size()))
        throw StoreError("IO: " + Errno("write failed on " + path_, errno));
    }
    overlay_.clear();
    if (fdatasync(plain_fd_) != 0) throw StoreError("IO: " + Errno("fdatasync failed on " + path_, errno));
  }
  if (fdatasync(fd_) != 0) throw StoreError("IO: " + Errno("fdatasync failed on " + path_, errno));
}

}  // namespace ddfs
