// XXH64 for TypeScript (one-shot sync for small inputs, async on the thread pool for large ones,
// and a streaming state), and 4096-aligned Buffers for O_DIRECT I/O.
#include <cstdlib>
#include <cstring>
#define XXH_INLINE_ALL
#include <xxhash.h>
#include "addon.h"
#include "aligned_pool.h"

namespace ddfs {
namespace {

uint64_t SeedArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || info[i].IsUndefined()) return 0;
  bool lossless = true;
  return info[i].As<Napi::BigInt>().Uint64Value(&lossless);
}

Napi::Value Xxh64(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::Error::New(env, "BAD_ARGUMENT: xxh64 needs a Buffer");
  auto buf = info[0].As<Napi::Uint8Array>();
  return Napi::BigInt::New(env, static_cast<uint64_t>(XXH64(buf.Data(), buf.ByteLength(), SeedArg(info, 1))));
}

class HashWorker : public Napi::AsyncWorker {
 public:
  HashWorker(Napi::Env env, Napi::Uint8Array buf, uint64_t seed)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)),
        ref_(Napi::Persistent(buf)), data_(buf.Data()), len_(buf.ByteLength()), seed_(seed) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { result_ = XXH64(data_, len_, seed_); }
  void OnOK() override { deferred_.Resolve(Napi::BigInt::New(Env(), static_cast<uint64_t>(result_))); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Uint8Array> ref_;  // keeps the buffer alive while a worker reads it
  const uint8_t* data_;
  size_t len_;
  uint64_t seed_;
  uint64_t result_ = 0;
};

Napi::Value Xxh64Async(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::Error::New(env, "BAD_ARGUMENT: xxh64Async needs a Buffer");
  auto* w = new HashWorker(env, info[0].As<Napi::Uint8Array>(), SeedArg(info, 1));
  auto p = w->Promise();
  w->Queue();
  return p;
}

// Streaming XXH64. update() runs on the JS thread; callers with large pieces should keep them
// to a few MiB (about 0.1 ms per MiB) or hash per segment with xxh64Async instead.
class Xxh64State : public Napi::ObjectWrap<Xxh64State> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Xxh64State", {InstanceMethod("update", &Xxh64State::Update),
                                           InstanceMethod("digest", &Xxh64State::Digest),
                                           InstanceMethod("reset", &Xxh64State::Reset)});
  }
  explicit Xxh64State(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Xxh64State>(info) {
    seed_ = SeedArg(info, 0);
    XXH64_reset(&state_, seed_);
  }

 private:
  Napi::Value Update(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::Error::New(info.Env(), "BAD_ARGUMENT: update needs a Buffer");
    auto buf = info[0].As<Napi::Uint8Array>();
    XXH64_update(&state_, buf.Data(), buf.ByteLength());
    return info.This();
  }
  Napi::Value Digest(const Napi::CallbackInfo& info) {
    return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(XXH64_digest(&state_)));
  }
  Napi::Value Reset(const Napi::CallbackInfo& info) {
    XXH64_reset(&state_, seed_);
    return info.This();
  }
  XXH64_state_t state_;
  uint64_t seed_ = 0;
};

Napi::Value AllocAligned(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::Error::New(env, "BAD_ARGUMENT: allocAligned needs a size");
  int64_t size = info[0].As<Napi::Number>().Int64Value();
  if (size < 0 || size > (int64_t(1) << 34)) throw Napi::Error::New(env, "BAD_ARGUMENT: allocAligned size out of range");
  size_t cap = AlignedCapacity(static_cast<size_t>(size));
  uint8_t* p = AlignedAlloc(cap);
  if (p == nullptr) throw Napi::Error::New(env, "IO: out of memory for an aligned buffer");
  Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(cap));
  return Napi::Buffer<uint8_t>::New(env, p, static_cast<size_t>(size),
                                    [cap](Napi::Env e, uint8_t* d) {
                                      AlignedFree(d, cap);
                                      Napi::MemoryManagement::AdjustExternalMemory(e, -static_cast<int64_t>(cap));
                                    });
}

// detach(buf) -> boolean: detaches the ArrayBuffer under `buf`, so its memory goes back now (to
// malloc or the aligned pool) instead of whenever V8 next collects, and V8's external-memory
// count drops at once. Every view of it reads as empty afterwards. False when it cannot be
// detached (already detached, or not detachable).
Napi::Value Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw Napi::Error::New(env, "BAD_ARGUMENT: detach needs a Buffer");
  Napi::ArrayBuffer ab = info[0].As<Napi::TypedArray>().ArrayBuffer();
  if (ab.IsDetached()) return Napi::Boolean::New(env, false);
  napi_status status = napi_detach_arraybuffer(env, ab);
  if (status != napi_ok) {
    // Clears the pending exception an unsuccessful call may leave.
    const napi_extended_error_info* ignored = nullptr;
    napi_get_last_error_info(env, &ignored);
    return Napi::Boolean::New(env, false);
  }
  return Napi::Boolean::New(env, true);
}

}  // namespace

void InitHash(Napi::Env env, Napi::Object exports) {
  exports.Set("detach", Napi::Function::New(env, Detach));
  exports.Set("xxh64", Napi::Function::New(env, Xxh64));
  exports.Set("xxh64Async", Napi::Function::New(env, Xxh64Async));
  exports.Set("Xxh64State", Xxh64State::Define(env));
  exports.Set("allocAligned", Napi::Function::New(env, AllocAligned));
}

}  // namespace ddfs
