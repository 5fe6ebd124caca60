// AES-256-GCM for the transport, through the OpenSSL that Node itself links and exports (no
// second copy of OpenSSL, same AES-NI/VAES code as node:crypto). node:crypto's update() returns
// a new buffer for every piece; here the caller names the destination, so a frame is decrypted
// straight into its plaintext buffer (or in place) and sealed straight into its wire buffer.
// Every new ArrayBuffer counts towards V8's external-memory pressure, which started a full
// mark-compact for every 64 MB a node received; fewer buffers mean fewer of them.
#include <openssl/evp.h>
#include <string>
#include "addon.h"

namespace ddfs {
namespace {

constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;

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
    ctx_ = EVP_CIPHER_CTX_new();
    if (ctx_ == nullptr || EVP_CipherInit_ex(ctx_, EVP_aes_256_gcm(), nullptr, key, nullptr, encrypt_ ? 1 : 0) != 1) {
      throw Napi::Error::New(env, "INTERNAL: AES-256-GCM setup failed");
    }
  }

  ~Gcm() override { EVP_CIPHER_CTX_free(ctx_); }

 private:
  // begin(nonce: Buffer(12), aad: Buffer): starts a frame.
  Napi::Value Begin(const Napi::CallbackInfo& info) {
    size_t nonceLen = 0, aadLen = 0;
    const uint8_t* nonce = Bytes(info[0], &nonceLen, "nonce");
    const uint8_t* aad = Bytes(info[1], &aadLen, "aad");
    if (nonceLen != kNonceBytes) throw Napi::RangeError::New(info.Env(), "the nonce must be 12 bytes");
    int out = 0;
    if (EVP_CipherInit_ex(ctx_, nullptr, nullptr, nullptr, nonce, -1) != 1 ||
        (aadLen > 0 && EVP_CipherUpdate(ctx_, nullptr, &out, aad, static_cast<int>(aadLen)) != 1)) {
      throw Napi::Error::New(info.Env(), "INTERNAL: AES-256-GCM frame start failed");
    }
    return info.Env().Undefined();
  }

  // update(src: Buffer, dst: Buffer): src's bytes, encrypted or decrypted, into dst (the same
  // length; dst may be src itself).
  Napi::Value Update(const Napi::CallbackInfo& info) {
    size_t srcLen = 0, dstLen = 0;
    const uint8_t* src = Bytes(info[0], &srcLen, "src");
    uint8_t* dst = Bytes(info[1], &dstLen, "dst");
    if (srcLen != dstLen) throw Napi::RangeError::New(info.Env(), "src and dst must have the same length");
    int out = 0;
    if (srcLen > 0 && (EVP_CipherUpdate(ctx_, dst, &out, src, static_cast<int>(srcLen)) != 1 || size_t(out) != srcLen)) {
      throw Napi::Error::New(info.Env(), "INTERNAL: AES-256-GCM update failed");
    }
    return info.Env().Undefined();
  }

  // sealFinal(tag: Buffer(16)): ends an encrypted frame and writes its tag.
  Napi::Value SealFinal(const Napi::CallbackInfo& info) {
    size_t tagLen = 0;
    uint8_t* tag = Bytes(info[0], &tagLen, "tag");
    uint8_t none[16];
    int out = 0;
    if (!encrypt_ || tagLen != kTagBytes || EVP_CipherFinal_ex(ctx_, none, &out) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) != 1) {
      throw Napi::Error::New(info.Env(), "INTERNAL: AES-256-GCM seal failed");
    }
    return info.Env().Undefined();
  }

  // openFinal(tag: Buffer(16)) -> boolean: ends a decrypted frame; false when it is not authentic
  // (its plaintext must then be thrown away).
  Napi::Value OpenFinal(const Napi::CallbackInfo& info) {
    size_t tagLen = 0;
    uint8_t* tag = Bytes(info[0], &tagLen, "tag");
    if (encrypt_ || tagLen != kTagBytes) throw Napi::Error::New(info.Env(), "INTERNAL: AES-256-GCM open misused");
    uint8_t none[16];
    int out = 0;
    bool ok = EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_SET_TAG, kTagBytes, tag) == 1 && EVP_CipherFinal_ex(ctx_, none, &out) == 1;
    return Napi::Boolean::New(info.Env(), ok);
  }

  EVP_CIPHER_CTX* ctx_ = nullptr;
  bool encrypt_ = false;
};

}  // namespace

void InitAead(Napi::Env env, Napi::Object exports) {
  exports.Set("Gcm", Gcm::Define(env));
}

}  // namespace ddfs
