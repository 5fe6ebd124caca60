// The one entry point of the native addon. Each area registers its functions here;
// src/native.ts is the only TypeScript module that loads the addon.
#include <napi.h>
#include "addon.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  ddfs::InitMemory(env, exports);
  ddfs::InitHash(env, exports);
  ddfs::InitErasure(env, exports);
  ddfs::InitStore(env, exports);
  ddfs::InitAead(env, exports);
  ddfs::InitFuse3(env, exports);
  return exports;
}

NODE_API_MODULE(ddfs_native, Init)
