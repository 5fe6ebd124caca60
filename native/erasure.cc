// Reed-Solomon erasure coding through ISA-L: a systematic Cauchy code (the first k fragments
// are the data itself), any 1 <= k, 0 <= m, k + m <= 64. Coding runs on the libuv thread pool
// directly on the callers' Buffers (no copies); encode tables are cached per (k, m) and decode
// tables per erasure pattern.
#include <dlfcn.h>

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "addon.h"

namespace ddfs {
namespace {

constexpr int kMaxFragments = 64;

// ISA-L is loaded with RTLD_DEEPBIND rather than linked: the node binary exports a `gf_mul` of
// its own, and ISA-L's internal calls to gf_mul would otherwise bind to it and crash.
struct Isal {
  void (*gf_gen_cauchy1_matrix)(unsigned char*, int, int);
  void (*ec_init_tables)(int, int, unsigned char*, unsigned char*);
  void (*ec_encode_data)(int, int, int, unsigned char*, unsigned char**, unsigned char**);
  int (*gf_invert_matrix)(unsigned char*, unsigned char*, const int);
  unsigned char (*gf_mul)(unsigned char, unsigned char);
};

const Isal& isal() {
  static const Isal lib = [] {
    void* h = dlopen("libisal.so.2", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (h == nullptr) throw std::runtime_error(std::string("INTERNAL: cannot load ISA-L (libisal.so.2; apt-get install libisal2): ") + dlerror());
    Isal l;
    auto sym = [h](const char* name) {
      void* p = dlsym(h, name);
      if (p == nullptr) throw std::runtime_error(std::string("INTERNAL: ISA-L lacks ") + name);
      return p;
    };
    l.gf_gen_cauchy1_matrix = reinterpret_cast<decltype(l.gf_gen_cauchy1_matrix)>(sym("gf_gen_cauchy1_matrix"));
    l.ec_init_tables = reinterpret_cast<decltype(l.ec_init_tables)>(sym("ec_init_tables"));
    l.ec_encode_data = reinterpret_cast<decltype(l.ec_encode_data)>(sym("ec_encode_data"));
    l.gf_invert_matrix = reinterpret_cast<decltype(l.gf_invert_matrix)>(sym("gf_invert_matrix"));
    l.gf_mul = reinterpret_cast<decltype(l.gf_mul)>(sym("gf_mul"));
    return l;
  }();
  return lib;
}

struct Code {
  int k, m;
  std::vector<uint8_t> matrix;  // (k + m) x k, the top k rows the identity
  std::vector<uint8_t> tables;  // ec_init_tables of the m parity rows
};

std::mutex cache_mu;
std::map<std::pair<int, int>, std::shared_ptr<Code>> codes;
// Decode tables by (k, m, present mask, wanted mask): rows that rebuild the wanted fragments
// from the first k present ones.
std::map<std::tuple<int, int, uint64_t, uint64_t>, std::shared_ptr<std::vector<uint8_t>>> decoders;

std::shared_ptr<Code> GetCode(int k, int m) {
  std::lock_guard<std::mutex> g(cache_mu);
  auto& c = codes[{k, m}];
  if (!c) {
    c = std::make_shared<Code>();
    c->k = k;
    c->m = m;
    c->matrix.resize(size_t(k + m) * k);
    isal().gf_gen_cauchy1_matrix(c->matrix.data(), k + m, k);
    c->tables.resize(size_t(32) * k * std::max(m, 1));
    if (m > 0) isal().ec_init_tables(k, m, c->matrix.data() + size_t(k) * k, c->tables.data());
  }
  return c;
}

// Tables that compute the `wanted` fragments from the first k fragments in `present`.
std::shared_ptr<std::vector<uint8_t>> GetDecoder(const Code& c, uint64_t present, uint64_t wanted) {
  auto key = std::make_tuple(c.k, c.m, present, wanted);
  {
    std::lock_guard<std::mutex> g(cache_mu);
    auto it = decoders.find(key);
    if (it != decoders.end()) return it->second;
  }
  int k = c.k;
  std::vector<int> rows;
  for (int i = 0; i < c.k + c.m && int(rows.size()) < k; i++) if (present & (1ULL << i)) rows.push_back(i);
  std::vector<uint8_t> b(size_t(k) * k), inv(size_t(k) * k);
  for (int r = 0; r < k; r++) memcpy(&b[size_t(r) * k], &c.matrix[size_t(rows[r]) * k], k);
  if (isal().gf_invert_matrix(b.data(), inv.data(), k) != 0) throw std::runtime_error("INTERNAL: the erasure code matrix is singular");
  std::vector<uint8_t> out_rows;
  int nwanted = 0;
  for (int i = 0; i < c.k + c.m; i++) {
    if (!(wanted & (1ULL << i))) continue;
    nwanted++;
    if (i < k) {
      out_rows.insert(out_rows.end(), &inv[size_t(i) * k], &inv[size_t(i) * k] + k);
    } else {
      // A parity row: its encode row times the inverse.
      for (int col = 0; col < k; col++) {
        uint8_t s = 0;
        for (int j = 0; j < k; j++) s ^= isal().gf_mul(c.matrix[size_t(i) * k + j], inv[size_t(j) * k + col]);
        out_rows.push_back(s);
      }
    }
  }
  auto tables = std::make_shared<std::vector<uint8_t>>(size_t(32) * k * nwanted);
  isal().ec_init_tables(k, nwanted, out_rows.data(), tables->data());
  std::lock_guard<std::mutex> g(cache_mu);
  if (decoders.size() > 4096) decoders.clear();  // bounded: patterns are few in practice
  decoders[key] = tables;
  return tables;
}

[[noreturn]] void Bad(Napi::Env env, const std::string& msg) { throw Napi::Error::New(env, "BAD_ARGUMENT: " + msg); }

struct Job {
  int k = 0, m = 0;
  size_t len = 0;
  std::vector<uint8_t*> shards;  // n pointers
  uint64_t present = 0;          // reconstruct: fragments that hold data
  uint64_t wanted = 0;           // reconstruct: the absent ones to rebuild (0: all of them)
  std::vector<Napi::ObjectReference> refs;
};

// Validates (k, m, shards) and collects pointers; shards must all be Buffers of one length.
Job Collect(const Napi::CallbackInfo& info, size_t first_shard_arg, int count_expected, bool keep) {
  Napi::Env env = info.Env();
  if (info.Length() < first_shard_arg + 1 || !info[0].IsNumber() || !info[1].IsNumber()) Bad(env, "k and m must be numbers");
  Job j;
  j.k = info[0].As<Napi::Number>().Int32Value();
  j.m = info[1].As<Napi::Number>().Int32Value();
  if (j.k < 1 || j.m < 0 || j.k + j.m > kMaxFragments) Bad(env, "need 1 <= k, 0 <= m, k + m <= 64");
  bool first = true;
  for (size_t a = first_shard_arg; a < first_shard_arg + (count_expected < 0 ? 1 : 2); a++) {
    if (!info[a].IsArray()) Bad(env, "fragments must be arrays of Buffers");
    auto arr = info[a].As<Napi::Array>();
    int want = count_expected < 0 ? j.k + j.m : (a == first_shard_arg ? j.k : j.m);
    if (int(arr.Length()) != want) Bad(env, "expected " + std::to_string(want) + " fragments, got " + std::to_string(arr.Length()));
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Value v = arr.Get(i);
      if (!v.IsTypedArray()) Bad(env, "every fragment must be a Buffer");
      auto b = v.As<Napi::Uint8Array>();
      if (first) { j.len = b.ByteLength(); first = false; }
      if (b.ByteLength() != j.len) Bad(env, "every fragment must have the same length");
      j.shards.push_back(b.Data());
      if (keep) j.refs.push_back(Napi::Persistent(v.As<Napi::Object>()));  // async: hold the buffers
    }
  }
  return j;
}

void DoEncode(Job& j) {
  if (j.m == 0 || j.len == 0) return;
  auto c = GetCode(j.k, j.m);
  isal().ec_encode_data(static_cast<int>(j.len), j.k, j.m, c->tables.data(), j.shards.data(), j.shards.data() + j.k);
}

void DoReconstruct(Job& j) {
  int n = j.k + j.m;
  uint64_t all = n == 64 ? ~0ULL : ((1ULL << n) - 1);
  uint64_t wanted = (j.wanted != 0 ? j.wanted : all) & all & ~j.present;
  if (wanted == 0 || j.len == 0) return;
  if (__builtin_popcountll(j.present & all) < j.k)
    throw std::runtime_error("UNAVAILABLE: " + std::to_string(__builtin_popcountll(j.present & all)) + " of " + std::to_string(n) + " fragments present, " + std::to_string(j.k) + " needed");
  auto c = GetCode(j.k, j.m);
  auto tables = GetDecoder(*c, j.present, wanted);
  std::vector<uint8_t*> src, dst;
  for (int i = 0; i < n && int(src.size()) < j.k; i++) if (j.present & (1ULL << i)) src.push_back(j.shards[i]);
  for (int i = 0; i < n; i++) if (wanted & (1ULL << i)) dst.push_back(j.shards[i]);
  isal().ec_encode_data(static_cast<int>(j.len), j.k, static_cast<int>(dst.size()), tables->data(), src.data(), dst.data());
}

class CodeWorker : public Napi::AsyncWorker {
 public:
  CodeWorker(Napi::Env env, Job job, bool reconstruct)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), job_(std::move(job)), reconstruct_(reconstruct) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try { reconstruct_ ? DoReconstruct(job_) : DoEncode(job_); } catch (const std::exception& e) { SetError(e.what()); }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Job job_;
  bool reconstruct_;
};

uint64_t PresentArg(const Napi::CallbackInfo& info, size_t i, int n, const char* what = "present") {
  if (info.Length() <= i || !info[i].IsArray()) Bad(info.Env(), std::string(what) + " must be an array of booleans");
  auto arr = info[i].As<Napi::Array>();
  if (int(arr.Length()) != n) Bad(info.Env(), std::string(what) + " must have k + m entries");
  uint64_t mask = 0;
  for (uint32_t k = 0; k < arr.Length(); k++) if (arr.Get(k).ToBoolean()) mask |= 1ULL << k;
  return mask;
}

// encode(k, m, data[k], parity[m]) -> Promise; encodeSync(...) on the calling thread.
Napi::Value Encode(const Napi::CallbackInfo& info) {
  auto* w = new CodeWorker(info.Env(), Collect(info, 2, 0, true), false);
  auto p = w->Promise();
  w->Queue();
  return p;
}
Napi::Value EncodeSync(const Napi::CallbackInfo& info) {
  Job j = Collect(info, 2, 0, false);
  DoEncode(j);
  return info.Env().Undefined();
}
// reconstruct(k, m, shards[n], present[n], wanted[n]?) -> Promise: rebuilds the missing shards
// in place; with `wanted`, only those (the other absent shards are neither read nor written).
Napi::Value Reconstruct(const Napi::CallbackInfo& info) {
  Job j = Collect(info, 2, -1, true);
  j.present = PresentArg(info, 3, j.k + j.m);
  if (info.Length() > 4 && !info[4].IsUndefined()) j.wanted = PresentArg(info, 4, j.k + j.m, "wanted");
  auto* w = new CodeWorker(info.Env(), std::move(j), true);
  auto p = w->Promise();
  w->Queue();
  return p;
}
Napi::Value ReconstructSync(const Napi::CallbackInfo& info) {
  Job j = Collect(info, 2, -1, false);
  j.present = PresentArg(info, 3, j.k + j.m);
  try { DoReconstruct(j); } catch (const std::exception& e) { throw Napi::Error::New(info.Env(), e.what()); }
  return info.Env().Undefined();
}

}  // namespace

void InitErasure(Napi::Env env, Napi::Object exports) {
  exports.Set("rsEncode", Napi::Function::New(env, Encode));
  exports.Set("rsEncodeSync", Napi::Function::New(env, EncodeSync));
  exports.Set("rsReconstruct", Napi::Function::New(env, Reconstruct));
  exports.Set("rsReconstructSync", Napi::Function::New(env, ReconstructSync));
}

}  // namespace ddfs
