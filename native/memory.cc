// How this process's malloc keeps freed memory. Fragment buffers of about 1 MiB come and go at
// hundreds of MB/s; with glibc's defaults a freed one is often returned to the kernel (a 1 MiB
// block above the mmap threshold is unmapped, a heap top past the trim threshold is trimmed),
// and the next one is faulted in again page by page, each page zeroed by the kernel (perf:
// clear_page ~4% of a rebuild's CPU). Kept, it is reused as it is.
#include <malloc.h>

#include "addon.h"

namespace ddfs {

namespace {
// Fragments (1 MiB + a trailer) and transport frames (up to 8 MiB) stay on the heap.
constexpr int kMmapThreshold = 16 * 1024 * 1024;
// Freed memory kept for reuse before the heap top is given back.
constexpr int kTrimThreshold = 256 * 1024 * 1024;
}  // namespace

void InitMemory(Napi::Env env, Napi::Object exports) {
  (void)env;
  (void)exports;
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
}

}  // namespace ddfs
