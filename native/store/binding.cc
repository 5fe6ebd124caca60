// N-API surface of the store: every call that touches the device runs on the libuv thread
// pool; the JS thread only validates arguments and converts results.
#include <functional>
#include <memory>
#include <optional>

#include "addon.h"
#include "aligned_pool.h"
#include "store/store.h"

namespace ddfs {
namespace {

// Runs `work` on the pool, then converts its result on the JS thread. Holds references to
// every JS value the work touches so nothing is collected under it.
class Task : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;
  Task(Napi::Env env, Work work, Done done)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), done_(std::move(done)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Keep(Napi::Value v) { refs_.push_back(Napi::Persistent(v.As<Napi::Object>())); }
  void Execute() override {
    try { work_(); } catch (const std::exception& e) { SetError(e.what()); }
  }
  void OnOK() override {
    if (always) always();
    try { deferred_.Resolve(done_(Env())); } catch (const Napi::Error& e) { deferred_.Reject(e.Value()); }
  }
  void OnError(const Napi::Error& e) override {
    if (always) always();
    if (onError) onError(Env(), e);
    else deferred_.Reject(e.Value());
  }
  std::function<void(Napi::Env, const Napi::Error&)> onError;  // replaces the rejection when set
  std::function<void()> always;                                // runs on the JS thread before settling

 private:
  Napi::Promise::Deferred deferred_;
  Work work_;
  Done done_;
  std::vector<Napi::ObjectReference> refs_;
};

Napi::Value Queue(Task* t) {
  auto p = t->Promise();
  t->Queue();
  return p;
}

[[noreturn]] void Fail(Napi::Env env, const std::string& msg) { throw Napi::Error::New(env, "BAD_ARGUMENT: " + msg); }

std::string PathArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsString()) Fail(info.Env(), "a device path is required");
  return info[i].As<Napi::String>().Utf8Value();
}

uint64_t U64Arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber()) Fail(info.Env(), std::string(what) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0 || d != static_cast<double>(static_cast<uint64_t>(d))) Fail(info.Env(), std::string(what) + " must be a non-negative integer");
  return static_cast<uint64_t>(d);
}

Napi::Uint8Array BufArg(const Napi::CallbackInfo& info, size_t i, size_t exact, const char* what) {
  if (info.Length() <= i || !info[i].IsTypedArray()) Fail(info.Env(), std::string(what) + " must be a Buffer");
  auto b = info[i].As<Napi::Uint8Array>();
  if (exact != 0 && b.ByteLength() != exact) Fail(info.Env(), std::string(what) + " must be " + std::to_string(exact) + " bytes");
  return b;
}

Key KeyArg(const Napi::CallbackInfo& info, size_t i) {
  auto b = BufArg(info, i, fmt::kKeyBytes, "key");
  Key k;
  memcpy(k.data(), b.Data(), fmt::kKeyBytes);
  return k;
}

Napi::Object SummaryObject(Napi::Env env, const DeviceSummary& s) {
  auto o = Napi::Object::New(env);
  static const char* d = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 16; i++) { id += d[s.sb_id[i] >> 4]; id += d[s.sb_id[i] & 15]; }
  o.Set("path", s.path);
  o.Set("major", s.major);
  o.Set("minor", s.minor);
  o.Set("sbId", id);
  o.Set("size", static_cast<double>(s.size));
  o.Set("blocks", static_cast<double>(s.blocks));
  o.Set("usedBlocks", static_cast<double>(s.used_blocks));
  o.Set("inodesTreeBlock", static_cast<double>(s.index_block));
  o.Set("bmBlock", static_cast<double>(s.bm_block));
  o.Set("bmBlocks", static_cast<double>(s.bm_blocks));
  o.Set("entries", static_cast<double>(s.entries));
  o.Set("generation", static_cast<double>(s.generation));
  return o;
}

Napi::Object EntryFields(Napi::Env env, const Entry& e) {
  auto o = Napi::Object::New(env);
  o.Set("block", static_cast<double>(e.block));
  o.Set("blocks", static_cast<double>(e.blocks));
  o.Set("length", static_cast<double>(e.length));
  o.Set("hash", Napi::BigInt::New(env, static_cast<uint64_t>(e.hash)));
  return o;
}

Napi::Object EntryObject(Napi::Env env, const Key& k, const Entry& e) {
  auto o = EntryFields(env, e);
  o.Set("key", Napi::Buffer<uint8_t>::Copy(env, k.data(), k.size()));
  return o;
}

// A put whose commit completes on another thread.
struct Completion {
  explicit Completion(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise::Deferred deferred;  // no N-API call in its destructor: may die on any thread
  std::string error;
  Entry entry;
};

class StoreWrap : public Napi::ObjectWrap<StoreWrap> {
 public:
  static Napi::FunctionReference* ctor;
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeStore", {
      InstanceMethod("summary", &StoreWrap::Summary),
      InstanceMethod("put", &StoreWrap::Put),
      InstanceMethod("putMany", &StoreWrap::PutMany),
      InstanceMethod("beginWrite", &StoreWrap::BeginWrite),
      InstanceMethod("write", &StoreWrap::Write),
      InstanceMethod("commit", &StoreWrap::Commit),
      InstanceMethod("abort", &StoreWrap::Abort),
      InstanceMethod("read", &StoreWrap::Read),
      InstanceMethod("stat", &StoreWrap::Stat),
      InstanceMethod("list", &StoreWrap::List),
      InstanceMethod("ids", &StoreWrap::Ids),
      InstanceMethod("remove", &StoreWrap::Remove),
      InstanceMethod("removeId", &StoreWrap::RemoveId),
      InstanceMethod("close", &StoreWrap::Close),
    });
  }
  explicit StoreWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StoreWrap>(info) {
    tsfn_ = Tsfn::New(info.Env(), "ddfs-commit", 0, 1, this);
    tsfn_.Unref(info.Env());  // referenced only while commits are in flight (CommitStarted)
  }
  // The thread-safe function is released when the store closes; one never closed is cleaned up
  // with the environment (it holds no reference on the event loop meanwhile).
  std::shared_ptr<Store> store;

 private:
  // Runs on the JS thread for every completed asynchronous commit.
  static void Deliver(Napi::Env env, Napi::Function, StoreWrap* owner, std::shared_ptr<Completion>* held) {
    std::shared_ptr<Completion> c = *held;
    delete held;
    if (env == nullptr) return;  // the environment is going away
    if (c->error.empty()) c->deferred.Resolve(EntryFields(env, c->entry));
    else c->deferred.Reject(Napi::Error::New(env, c->error).Value());
    owner->CommitEnded(env);
  }
  using Tsfn = Napi::TypedThreadSafeFunction<StoreWrap, std::shared_ptr<Completion>, Deliver>;
  Tsfn tsfn_;
  size_t inflight_ = 0;

  // The thread-safe function keeps the event loop alive only while commits are in flight.
  void ReleaseTsfn() {
    if (released_) return;
    released_ = true;
    tsfn_.Release();
  }
  bool released_ = false;
  void CommitStarted(Napi::Env env) { if (inflight_++ == 0) tsfn_.Ref(env); }
  void CommitEnded(Napi::Env env) { if (--inflight_ == 0) tsfn_.Unref(env); }

  std::shared_ptr<Store> Get(Napi::Env env) {
    if (!store) throw Napi::Error::New(env, "CLOSED: the store is closed");
    return store;
  }

  Napi::Value Summary(const Napi::CallbackInfo& info) {
    try { return SummaryObject(info.Env(), Get(info.Env())->Summary()); }
    catch (const StoreError& e) { throw Napi::Error::New(info.Env(), e.what()); }
  }
  Napi::Value BeginWrite(const Napi::CallbackInfo& info) {
    Key k = KeyArg(info, 0);
    uint64_t len = U64Arg(info, 1, "length");
    try { return Napi::Number::New(info.Env(), static_cast<double>(Get(info.Env())->BeginWrite(k, len))); }
    catch (const StoreError& e) { throw Napi::Error::New(info.Env(), e.what()); }
  }
  // A whole small entry: see QueuePuts.
  Napi::Value Put(const Napi::CallbackInfo& info) {
    Key k = KeyArg(info, 0);
    auto buf = BufArg(info, 1, 0, "data");
    if (buf.ByteLength() > fmt::kSegmentSize) Fail(info.Env(), "put takes at most one segment; use beginWrite for larger entries");
    return QueuePuts(info.Env(), {{k, buf.Data(), buf.ByteLength()}}, {buf});
  }

  // putMany(keys[], datas[]): whole small entries committed in one batch (one journal write and
  // flush for all: a create's manifest and name record on one node).
  Napi::Value PutMany(const Napi::CallbackInfo& info) {
    if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsArray()) Fail(info.Env(), "putMany(keys, datas)");
    auto keys = info[0].As<Napi::Array>();
    auto datas = info[1].As<Napi::Array>();
    if (keys.Length() != datas.Length() || keys.Length() == 0) Fail(info.Env(), "putMany takes as many keys as datas, at least one");
    std::vector<Store::WholeEntry> items;
    std::vector<Napi::Value> keep;
    for (uint32_t i = 0; i < keys.Length(); i++) {
      Napi::Value kv = keys.Get(i), dv = datas.Get(i);
      if (!kv.IsTypedArray() || kv.As<Napi::Uint8Array>().ByteLength() != fmt::kKeyBytes) Fail(info.Env(), "putMany: a key is a " + std::to_string(fmt::kKeyBytes) + "-byte Buffer");
      if (!dv.IsTypedArray()) Fail(info.Env(), "putMany: data must be a Buffer");
      auto d = dv.As<Napi::Uint8Array>();
      if (d.ByteLength() > fmt::kSegmentSize) Fail(info.Env(), "putMany takes entries of at most one segment");
      Key k;
      memcpy(k.data(), kv.As<Napi::Uint8Array>().Data(), fmt::kKeyBytes);
      items.push_back({k, d.Data(), d.ByteLength()});
      keep.push_back(dv);
    }
    return QueuePuts(info.Env(), std::move(items), keep);
  }

  // Reserves and writes the entries on a pool thread, then commits them in one batch without
  // holding that thread; the batch's leader completes the promise through a thread-safe function.
  // `keep`: the buffers `items` point into, alive until the writes are done.
  Napi::Value QueuePuts(Napi::Env env, std::vector<Store::WholeEntry> items, const std::vector<Napi::Value>& keep) {
    auto s = Get(env);
    auto c = std::make_shared<Completion>(env);
    CommitStarted(env);
    auto tsfn = tsfn_;
    auto* t = new Task(env, [s, items, c, tsfn] {
      std::vector<uint64_t> wids = s->WriteWhole(items);
      s->CommitManyAsync(wids, [c, tsfn](const std::string& error, const Entry& e) {
        c->error = error;
        c->entry = e;
        auto* held = new std::shared_ptr<Completion>(c);
        if (tsfn.BlockingCall(held) != napi_ok) delete held;
      });
    }, [](Napi::Env env) { return env.Undefined(); });
    // The task settles only failures before the commit; the commit settles the promise itself.
    t->onError = [this, c](Napi::Env env, const Napi::Error& err) { c->deferred.Reject(err.Value()); CommitEnded(env); };
    for (const auto& v : keep) t->Keep(v);
    Queue(t);
    return c->deferred.Promise();
  }

  Napi::Value Write(const Napi::CallbackInfo& info) {
    auto s = Get(info.Env());
    uint64_t wid = U64Arg(info, 0, "write id");
    uint64_t off = U64Arg(info, 1, "offset");
    auto buf = BufArg(info, 2, 0, "data");
    const uint8_t* p = buf.Data();
    size_t n = buf.ByteLength();
    auto* t = new Task(info.Env(), [s, wid, off, p, n] { s->Write(wid, off, p, n); }, [](Napi::Env env) { return env.Undefined(); });
    t->Keep(buf);
    return Queue(t);
  }
  Napi::Value Commit(const Napi::CallbackInfo& info) {
    auto s = Get(info.Env());
    uint64_t wid = U64Arg(info, 0, "write id");
    auto e = std::make_shared<Entry>();
    auto* t = new Task(info.Env(), [s, wid, e] { *e = s->Commit(wid); }, [e](Napi::Env env) -> Napi::Value { return EntryFields(env, *e); });
    return Queue(t);
  }
  Napi::Value Abort(const Napi::CallbackInfo& info) {
    auto s = Get(info.Env());
    s->Abort(U64Arg(info, 0, "write id"));
    return info.Env().Undefined();
  }
  Napi::Value Read(const Napi::CallbackInfo& info) {
    auto s = Get(info.Env());
    Key k = KeyArg(info, 0);
    uint64_t off = U64Arg(info, 1, "offset");
    uint64_t len = U64Arg(info, 2, "length");
    auto out = std::make_shared<AlignedBuffer>();
    auto start = std::make_shared<size_t>(0);
    auto* t = new Task(info.Env(), [s, k, off, len, out, start] { *start = s->Read(k, off, len, out.get()); },
      [out, start](Napi::Env env) -> Napi::Value {
        // Hand the aligned buffer to JS without a copy; the result is a view of the bytes asked for.
        size_t size = out->size();
        size_t cap = AlignedCapacity(size);
        uint8_t* data = out->release();
        Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(cap));
        auto whole = Napi::Buffer<uint8_t>::New(env, data, size, [cap](Napi::Env e, uint8_t* d) {
          AlignedFree(d, cap);
          Napi::MemoryManagement::AdjustExternalMemory(e, -static_cast<int64_t>(cap));
        });
        auto pair = Napi::Array::New(env, 2);  // [aligned buffer, start]: the wrapper takes the view
        pair.Set(uint32_t(0), whole);
        pair.Set(uint32_t(1), Napi::Number::New(env, static_cast<double>(*start)));
        return pair;
      });
    return Queue(t);
  }
  Napi::Value Stat(const Napi::CallbackInfo& info) {
    Key k = KeyArg(info, 0);
    Entry e;
    if (!Get(info.Env())->Stat(k, &e)) return info.Env().Null();
    return EntryObject(info.Env(), k, e);
  }
  Napi::Value List(const Napi::CallbackInfo& info) {
    auto id = BufArg(info, 0, 16, "id");
    auto rows = Get(info.Env())->List(id.Data());
    auto arr = Napi::Array::New(info.Env(), rows.size());
    for (size_t i = 0; i < rows.size(); i++) arr.Set(i, EntryObject(info.Env(), rows[i].first, rows[i].second));
    return arr;
  }
  Napi::Value Ids(const Napi::CallbackInfo& info) {
    const uint8_t* after = nullptr;
    if (info.Length() > 0 && !info[0].IsNull() && !info[0].IsUndefined()) after = BufArg(info, 0, 16, "after").Data();
    uint64_t limit = U64Arg(info, 1, "limit");
    auto ids = Get(info.Env())->Ids(after, limit);
    auto arr = Napi::Array::New(info.Env(), ids.size());
    for (size_t i = 0; i < ids.size(); i++) arr.Set(i, Napi::Buffer<uint8_t>::Copy(info.Env(), ids[i].data(), 16));
    return arr;
  }
  Napi::Value Remove(const Napi::CallbackInfo& info) {
    auto s = Get(info.Env());
    Key k = KeyArg(info, 0);
    auto r = std::make_shared<bool>(false);
    return Queue(new Task(info.Env(), [s, k, r] { *r = s->Remove(k); }, [r](Napi::Env env) { return Napi::Boolean::New(env, *r); }));
  }
  Napi::Value RemoveId(const Napi::CallbackInfo& info) {
    auto s = Get(info.Env());
    auto idb = BufArg(info, 0, 16, "id");
    std::array<uint8_t, 16> id;
    memcpy(id.data(), idb.Data(), 16);
    std::optional<Key> mark;
    if (info.Length() > 1 && !info[1].IsUndefined()) mark = KeyArg(info, 1);
    auto r = std::make_shared<uint64_t>(0);
    return Queue(new Task(info.Env(), [s, id, mark, r] { *r = s->RemoveId(id.data(), mark ? &*mark : nullptr); }, [r](Napi::Env env) { return Napi::Number::New(env, static_cast<double>(*r)); }));
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (!store) return Queue(new Task(info.Env(), [] {}, [](Napi::Env env) { return env.Undefined(); }));
    auto s = store;
    store.reset();
    auto* t = new Task(info.Env(), [s] { s->Close(); }, [](Napi::Env env) { return env.Undefined(); });
    t->always = [this] { ReleaseTsfn(); };  // every completion has been delivered by now
    return Queue(t);
  }
};
Napi::FunctionReference* StoreWrap::ctor = nullptr;

Napi::Value Format(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0);
  bool force = info.Length() > 1 && info[1].ToBoolean();
  auto s = std::make_shared<DeviceSummary>();
  return Queue(new Task(info.Env(), [path, force, s] { Store::Format(path, force, s.get()); },
                        [s](Napi::Env env) -> Napi::Value { return SummaryObject(env, *s); }));
}

Napi::Value Probe(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0);
  auto s = std::make_shared<DeviceSummary>();
  auto found = std::make_shared<bool>(false);
  return Queue(new Task(info.Env(), [path, s, found] { *found = Store::Probe(path, s.get()); },
                        [s, found](Napi::Env env) -> Napi::Value { return *found ? Napi::Value(SummaryObject(env, *s)) : env.Null(); }));
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0);
  FaultOptions f;
  if (info.Length() > 1 && info[1].IsObject()) {
    auto o = info[1].As<Napi::Object>();
    f.enabled = true;
    f.seed = static_cast<uint64_t>(o.Get("seed").ToNumber().DoubleValue());
    f.crash_after_writes = static_cast<uint64_t>(o.Get("crashAfterWrites").ToNumber().DoubleValue());
    std::string mode = o.Has("mode") ? o.Get("mode").ToString().Utf8Value() : "mixed";
    f.mode = mode == "tear" ? 1 : mode == "drop" ? 2 : 0;
  }
  auto holder = std::make_shared<std::unique_ptr<Store>>();
  return Queue(new Task(info.Env(), [path, f, holder] { *holder = Store::Open(path, f); },
                        [holder](Napi::Env env) -> Napi::Value {
                          auto obj = StoreWrap::ctor->New({});
                          StoreWrap::Unwrap(obj)->store = std::shared_ptr<Store>(holder->release());
                          return obj;
                        }));
}

}  // namespace

void InitStore(Napi::Env env, Napi::Object exports) {
  auto cls = StoreWrap::Define(env);
  StoreWrap::ctor = new Napi::FunctionReference(Napi::Persistent(cls));
  exports.Set("storeFormat", Napi::Function::New(env, Format));
  exports.Set("storeProbe", Napi::Function::New(env, Probe));
  exports.Set("storeOpen", Napi::Function::New(env, Open));
}

}  // namespace ddfs
