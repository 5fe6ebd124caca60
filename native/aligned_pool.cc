#include "aligned_pool.h"

#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace ddfs {

namespace {
// Below this, malloc's own bins reuse memory well; above the upper bound buffers are rare.
constexpr size_t kMinCached = 64 * 1024;
constexpr size_t kMaxCached = 16 * 1024 * 1024;
// Enough for the fragments in flight of a few objects (8 stripes x 6 fragments x 1 MiB).
constexpr size_t kMaxCachedBytes = 64 * 1024 * 1024;

std::mutex mu;
std::unordered_map<size_t, std::vector<uint8_t*>> free_lists;
size_t cached_bytes = 0;
}  // namespace

size_t AlignedCapacity(size_t size) {
  size_t cap = (size + 4095) & ~size_t(4095);
  return cap == 0 ? 4096 : cap;
}

uint8_t* AlignedAlloc(size_t cap) {
  if (cap >= kMinCached && cap <= kMaxCached) {
    std::lock_guard<std::mutex> g(mu);
    auto it = free_lists.find(cap);
    if (it != free_lists.end() && !it->second.empty()) {
      uint8_t* p = it->second.back();
      it->second.pop_back();
      cached_bytes -= cap;
      return p;
    }
  }
  void* p = nullptr;
  if (posix_memalign(&p, 4096, cap) != 0) return nullptr;
  return static_cast<uint8_t*>(p);
}

void AlignedFree(uint8_t* p, size_t cap) {
  if (p == nullptr) return;
  if (cap >= kMinCached && cap <= kMaxCached) {
    std::lock_guard<std::mutex> g(mu);
    if (cached_bytes + cap <= kMaxCachedBytes) {
      free_lists[cap].push_back(p);
      cached_bytes += cap;
      return;
    }
  }
  free(p);
}

}  // namespace ddfs
