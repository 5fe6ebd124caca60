#pragma once
#include <napi.h>

namespace ddfs {
// native/hash.cc: XXH64 (one-shot and streaming), aligned buffers.
void InitHash(Napi::Env env, Napi::Object exports);
// native/erasure.cc: Reed-Solomon through ISA-L.
void InitErasure(Napi::Env env, Napi::Object exports);
// native/store/*.cc: the raw-block store.
void InitStore(Napi::Env env, Napi::Object exports);
// native/aead.cc: AES-256-GCM into caller-chosen buffers, for the transport.
void InitAead(Napi::Env env, Napi::Object exports);
// native/memory.cc: malloc keeps freed buffers for reuse (set once, at load).
void InitMemory(Napi::Env env, Napi::Object exports);
// native/fuse3.cc: a FUSE 3 mount served from JS (libfuse 3, high-level API).
void InitFuse3(Napi::Env env, Napi::Object exports);
}  // namespace ddfs
