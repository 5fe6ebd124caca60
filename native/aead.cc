// AES-256-GCM for the transport, through Intel's Multi-Buffer Crypto library (Debian's
// libipsec-mb): its VAES/AVX-512 code seals and opens 1 MiB at 9.7 GB/s on this machine, where
// the OpenSSL 3.0 that Node links (and node:crypto) reaches 2.3 GB/s; the ciphertext and tags
// are the same bytes, so nodes of either build talk to each other. A 1 GiB write through the
// mount seals and opens 2.5 GiB of fragments between processes, so this was 1.2 CPU s of it.
// node:crypto's update() also returns a new buffer for every piece; here the caller names the
// destination, so a frame is decrypted straight into its plaintext buffer (or in place) and
// sealed straight into its wire buffer. Every new ArrayBuffer counts towards V8's
// external-memory pressure, which started a full mark-compact for every 64 MB a node received;
// fewer buffers mean fewer of them.
// The library's header declares its key and context structures 64-byte aligned (as the
// library's AVX-512 code needs) only when LINUX is defined.
#ifndef LINUX
#define LINUX
#endif
#include <intel-ipsec-mb.h>
#include <string.h>
#include <string>
#include "addon.h"

namespace ddfs {
namespace {

constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;

// The library's dispatch table for this CPU (AVX-512, AVX2, SSE): read-only once set up, so
// every thread may use it.
IMB_MGR* Mgr() {
  static IMB_MGR* mgr = [] {
    IMB_MGR* m = alloc_mb_mgr(0);
    if (m != nullptr) init_mb_mgr_auto(m, nullptr);
    return m;
  }();
  return mgr;
}

uint8_t* Bytes(const Napi::Value& v, size_t* len, const char* what) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Buffer");
  auto b = v.As<Napi::Uint8Array>();
  *len = b.ByteLength();
  return b.Data();
}

// One direction of one connection: the key schedule is set up once; each frame sets its nonce.
class Gcm : public Napi::ObjectWrap<Gcm> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Gcm", {
      InstanceMethod("begin", &Gcm::Begin),
      InstanceMethod("update", &Gcm::Update),
      InstanceMethod("sealFinal", &Gcm::SealFinal),
      InstanceMethod("openFinal", &Gcm::OpenFinal),
    });
  }

  // new Gcm(key: Buffer(32), encrypt: boolean)
  explicit Gcm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Gcm>(info) {
    Napi::Env env = info.Env();
    size_t keyLen = 0;
    const uint8_t* key = Bytes(info[0], &keyLen, "key");
    if (keyLen != kKeyBytes) throw Napi::RangeError::New(env, "AES-256-GCM needs a 32-byte key");
    encrypt_ = info[1].ToBoolean();
    if (Mgr() == nullptr) throw Napi::Error::New(env, "INTERNAL: AES-256-GCM setup failed (libIPSec_MB)");
    IMB_AES256_GCM_PRE(Mgr(), key, &key_);
  }

  ~Gcm() override {
    explicit_bzero(&key_, sizeof(key_));
    explicit_bzero(&ctx_, sizeof(ctx_));
  }

 private:
  // begin(nonce: Buffer(12), aad: Buffer): starts a frame.
  Napi::Value Begin(const Napi::CallbackInfo& info) {
    size_t nonceLen = 0, aadLen = 0;
    const uint8_t* nonce = Bytes(info[0], &nonceLen, "nonce");
    const uint8_t* aad = Bytes(info[1], &aadLen, "aad");
    if (nonceLen != kNonceBytes) throw Napi::RangeError::New(info.Env(), "the nonce must be 12 bytes");
    IMB_AES256_GCM_INIT(Mgr(), &key_, &ctx_, nonce, aad, aadLen);
    return info.Env().Undefined();
  }

  // update(src: Buffer, dst: Buffer): src's bytes, encrypted or decrypted, into dst (the same
  // length; dst may be src itself).
  Napi::Value Update(const Napi::CallbackInfo& info) {
    size_t srcLen = 0, dstLen = 0;
    const uint8_t* src = Bytes(info[0], &srcLen, "src");
    uint8_t* dst = Bytes(info[1], &dstLen, "dst");
    if (srcLen != dstLen) throw Napi::RangeError::New(info.Env(), "src and dst must have the same length");
    if (srcLen == 0) return info.Env().Undefined();
    if (encrypt_) IMB_AES256_GCM_ENC_UPDATE(Mgr(), &key_, &ctx_, dst, src, srcLen);
    else IMB_AES256_GCM_DEC_UPDATE(Mgr(), &key_, &ctx_, dst, src, srcLen);
    return info.Env().Undefined();
  }

  // sealFinal(tag: Buffer(16)): ends an encrypted frame and writes its tag.
  Napi::Value SealFinal(const Napi::CallbackInfo& info) {
    size_t tagLen = 0;
    uint8_t* tag = Bytes(info[0], &tagLen, "tag");
    if (!encrypt_ || tagLen != kTagBytes) throw Napi::Error::New(info.Env(), "INTERNAL: AES-256-GCM seal misused");
    IMB_AES256_GCM_ENC_FINALIZE(Mgr(), &key_, &ctx_, tag, kTagBytes);
    return info.Env().Undefined();
  }

  // openFinal(tag: Buffer(16)) -> boolean: ends a decrypted frame; false when it is not authentic
  // (its plaintext must then be thrown away).
  Napi::Value OpenFinal(const Napi::CallbackInfo& info) {
    size_t tagLen = 0;
    uint8_t* tag = Bytes(info[0], &tagLen, "tag");
    if (encrypt_ || tagLen != kTagBytes) throw Napi::Error::New(info.Env(), "INTERNAL: AES-256-GCM open misused");
    uint8_t computed[kTagBytes];
    IMB_AES256_GCM_DEC_FINALIZE(Mgr(), &key_, &ctx_, computed, kTagBytes);
    uint8_t diff = 0;  // in constant time: how far a forged tag matches must not show
    for (size_t i = 0; i < kTagBytes; i++) diff |= static_cast<uint8_t>(computed[i] ^ tag[i]);
    return Napi::Boolean::New(info.Env(), diff == 0);
  }

  struct gcm_key_data key_;  // 64-byte aligned: C++17's new honours it for the whole object
  struct gcm_context_data ctx_;
  bool encrypt_ = false;
};

}  // namespace

void InitAead(Napi::Env env, Napi::Object exports) {
  exports.Set("Gcm", Gcm::Define(env));
}

}  // namespace ddfs
