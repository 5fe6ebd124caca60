// 4096-aligned buffers for O_DIRECT, with reuse of freed ones.
//
// Every fragment read hands JS a fresh aligned buffer, and fresh memory from the kernel is
// zeroed page by page on first touch: during a rebuild, clear_page was 12% of all CPU. Freed
// buffers of the sizes the data path uses are kept (up to kMaxCachedBytes per process) and
// handed out again instead.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ddfs {

/** The capacity actually allocated for `size` bytes: a multiple of 4096, at least 4096. */
size_t AlignedCapacity(size_t size);
/** `cap` bytes (from AlignedCapacity), 4096-aligned, contents undefined; nullptr when out of memory. */
uint8_t* AlignedAlloc(size_t cap);
/** Gives back a buffer from AlignedAlloc with the same `cap`; thread-safe. */
void AlignedFree(uint8_t* p, size_t cap);

}  // namespace ddfs
