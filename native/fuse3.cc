// A FUSE 3 mount served from JS: libfuse 3's high-level (path-based) API, its multi-threaded
// loop on its own threads, each request handed to JS through one thread-safe function while the
// FUSE thread that read it waits for the answer. Several requests are in flight at once (one per
// waiting FUSE thread), so an async file system (src/mount/ddfs-fs.ts) serves reads of several
// files together.
//
// Why this exists: fuse-native (libfuse 2) gets 128 KiB writes at best and has no readdirplus;
// libfuse 3 takes 1 MiB requests (max_pages) and answers `ls -l` from readdir alone
// (platform.md, "FUSE ceilings": 1.0-2.2 GB/s for a C file system on libfuse 3).
//
// Data path: a write to a handle JS gave a descriptor for (open/create's answer) is written
// there by the FUSE thread itself and reported to JS afterwards (see "direct writes"); any other
// write's bytes reach JS as a Buffer over libfuse's own receive buffer, and a read's answer is
// written by JS into libfuse's reply buffer; no copy here. Each such Buffer is
// detached on the JS thread before its request is answered, so JS can never touch that memory
// once libfuse reuses or frees it (a late write into it would be heap corruption).
//
// Every request gets exactly one answer: JS's (the first; later ones are ignored), EIO when JS
// throws or does not answer within the request timeout, EIO when the mount closes with it in
// flight. The mount's state and the table of requests in flight are guarded by one mutex; a
// request lives on the stack of the FUSE thread that waits for it.
#define FUSE_USE_VERSION 312
#include <fuse.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "addon.h"

namespace ddfs {
namespace {

// Request kinds, as JS sees them (src/mount/fuse3.ts mirrors these numbers).
enum Op : int {
  kInit = 0, kGetattr, kReaddir, kOpen, kCreate, kRead, kWrite, kFlush, kFsync, kRelease,
  kTruncate, kUnlink, kRename, kGetxattr, kListxattr, kStatfs, kUtimens, kChmod, kChown,
  kMkdir, kRmdir, kSymlink, kLink, kMknod, kSetxattr, kRemovexattr,
  kEnded,     // event: the loop ended (unmounted from outside, or closed)
  kTimedOut,  // event: a request JS did not answer in time was answered EIO
  kWritten,   // event: a FUSE thread wrote a request's bytes to the handle's descriptor itself
  kOpCount
};

const char* const kOpNames[kOpCount] = {
  "init", "getattr", "readdir", "open", "create", "read", "write", "flush", "fsync", "release",
  "truncate", "unlink", "rename", "getxattr", "listxattr", "statfs", "utimens", "chmod", "chown",
  "mkdir", "rmdir", "symlink", "link", "mknod", "setxattr", "removexattr", "ended", "timedout", "written"};

// A stat travels as 9 numbers: mode, nlink, uid, gid, size, atime ms, mtime ms, ctime ms, ino.
constexpr size_t kStatFields = 9;
// A statfs as 11: bsize, frsize, blocks, bfree, bavail, files, ffree, favail, fsid, flag, namemax.
constexpr size_t kStatfsFields = 11;
constexpr blksize_t kPreferredIo = 1 << 20;  // a regular file's st_blksize: the default max_write

struct Request {
  uint64_t id = 0;
  Op op = kInit;
  const char* path = "";
  const char* path2 = nullptr;  // rename/link/symlink target, xattr name
  double fh = -1;               // -1: no open file
  double a = 0, b = 0;
  char* data = nullptr;         // read target, write source (libfuse's memory)
  size_t size = 0;
  const char* value = nullptr;  // setxattr value (copied into a JS Buffer)
  size_t value_size = 0;

  // The answer.
  int result = -EIO;
  double nums[kStatfsFields] = {};
  std::vector<std::string> names;
  std::vector<double> stats;
  std::string bytes;
  bool has_bytes = false;
  bool has_stat = false;  // create: nums holds the new file's stat
  int write_fd = -1;  // open/create/write: the descriptor the handle's writes may go to directly from now on
  int write_direct_fd = -1;     // and one of the same file opened O_DIRECT, for aligned writes
  double write_direct_from = 0;  // at and past this offset
  uint64_t write_spool = 0;      // the spool's key (never reused; 0: none), for writes kept for its put

  // Synchronization (all under Fuse3Mount::mu_).
  std::condition_variable cv;
  bool answered = false;   // result is final
  std::atomic<bool> answered_seen{false};  // `answered`, for a waiter spinning without the lock
  bool js_holds = false;   // JS has a Buffer over `data` not yet detached
  bool released = true;    // false while a release job is pending
  napi_ref buf_ref = nullptr;  // JS thread only
};

// What the thread-safe function carries: a job kind in the low bits, a request id above them.
enum Job : uintptr_t { kCallJob = 0, kReleaseJob = 1, kInitJob = 2, kEndedJob = 3, kWrittenJob = 4 };
constexpr unsigned kJobBits = 3;
constexpr uintptr_t kJobMask = (1u << kJobBits) - 1;
inline void* Encode(Job job, uint64_t id) { return reinterpret_cast<void*>(static_cast<uintptr_t>((id << kJobBits) | job)); }

// A write a FUSE thread did itself (direct writes), reported to JS afterwards.
// bytes < 0: -errno of a write that was answered before it failed (see "writes behind").
struct Written { uint64_t fh; off_t off; int64_t bytes; };

class Fuse3Mount;
void CallJs(Napi::Env env, Napi::Function fn, Fuse3Mount* mount, void* data);
using Tsfn = Napi::TypedThreadSafeFunction<Fuse3Mount, void, CallJs>;

double Num(const Napi::Value& v, double fallback = 0) {
  if (!v.IsNumber()) return fallback;
  double d = v.As<Napi::Number>().DoubleValue();
  return std::isfinite(d) ? d : fallback;
}

void ToStat(const double* n, struct stat* st) {
  memset(st, 0, sizeof(*st));
  st->st_mode = static_cast<mode_t>(n[0]);
  st->st_nlink = static_cast<nlink_t>(n[1] > 0 ? n[1] : 1);
  st->st_uid = static_cast<uid_t>(n[2]);
  st->st_gid = static_cast<gid_t>(n[3]);
  st->st_size = static_cast<off_t>(n[4] > 0 ? n[4] : 0);
  auto ts = [](double ms, struct timespec* t) {
    double sec = std::floor(ms / 1000);
    t->tv_sec = static_cast<time_t>(sec);
    t->tv_nsec = static_cast<long>((ms - sec * 1000) * 1e6);
    if (t->tv_nsec < 0 || t->tv_nsec > 999999999) t->tv_nsec = 0;
  };
  ts(n[5], &st->st_atim);
  ts(n[6], &st->st_mtim);
  ts(n[7], &st->st_ctim);
  st->st_ino = static_cast<ino_t>(n[8] > 0 ? n[8] : 0);
  // The size a program should read and write in (cp's buffer): a request's most, so a copy into
  // the mount writes 1 MiB per request rather than 128 KiB.
  st->st_blksize = S_ISREG(st->st_mode) ? kPreferredIo : 4096;
  st->st_blocks = (st->st_size + 511) / 512;
}

// libfuse passes no path for an open file's operations (nullpath_ok), nor for a removed one.
const char* Str(const char* s) { return s != nullptr ? s : ""; }

Fuse3Mount* Self() { return static_cast<Fuse3Mount*>(fuse_get_context()->private_data); }

class Fuse3Mount : public Napi::ObjectWrap<Fuse3Mount> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Fuse3Mount", {
      InstanceMethod("reply", &Fuse3Mount::Reply),
      InstanceMethod("close", &Fuse3Mount::Close),
      InstanceMethod("info", &Fuse3Mount::Info),
      InstanceMethod("stopDirectWrites", &Fuse3Mount::StopDirectWrites),
      InstanceMethod("keepWrites", &Fuse3Mount::KeepWrites),
      InstanceMethod("takeWritten", &Fuse3Mount::TakeWritten),
    });
  }

  // new Fuse3Mount(mountpoint, options, ops: string[], dispatch): mounts and starts the loop.
  explicit Fuse3Mount(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Fuse3Mount>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsString() || !info[1].IsObject() || !info[2].IsArray() || !info[3].IsFunction()) {
      throw Napi::TypeError::New(env, "BAD_ARGUMENT: Fuse3Mount(mountpoint, options, ops, dispatch)");
    }
    mountpoint_ = info[0].As<Napi::String>().Utf8Value();
    auto opts = info[1].As<Napi::Object>();
    attr_timeout_ = Num(opts.Get("attrTimeout"), 1);
    entry_timeout_ = Num(opts.Get("entryTimeout"), 1);
    max_write_ = static_cast<unsigned>(Num(opts.Get("maxWrite"), 1 << 20));
    timeout_ms_ = static_cast<int64_t>(Num(opts.Get("requestTimeoutMs"), 0));
    max_threads_ = static_cast<unsigned>(Num(opts.Get("maxThreads"), 16));
    writeback_cache_ = opts.Get("writebackCache").ToBoolean();
    auto_cache_ = opts.Get("autoCache").ToBoolean();
    if (opts.Has("writeBehind")) write_behind_ = opts.Get("writeBehind").ToBoolean();
    std::string mount_opts = "fsname=ddfs,subtype=ddfs";
    if (opts.Get("fsname").IsString()) {
      std::string name = opts.Get("fsname").As<Napi::String>().Utf8Value();
      // Passed inside a comma-separated -o list: nothing that could add another option.
      for (char c : name) if (c == ',' || c == '\\' || c == '=' || static_cast<unsigned char>(c) < 32) throw Napi::TypeError::New(env, "BAD_ARGUMENT: fsname");
      mount_opts = "fsname=" + name + ",subtype=ddfs";
    }
    if (opts.Get("debug").ToBoolean()) debug_ = true;
    spin_ = getenv("DDFS_FUSE_SPIN") == nullptr || strcmp(getenv("DDFS_FUSE_SPIN"), "0") != 0;
    if (opts.Get("xattrPrefix").IsString()) xattr_prefix_ = opts.Get("xattrPrefix").As<Napi::String>().Utf8Value();

    struct fuse_operations ops;
    memset(&ops, 0, sizeof(ops));
    ops.init = &Fuse3Mount::OpInit;
    auto list = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Value v = list.Get(i);
      if (!v.IsString()) continue;
      Enable(&ops, v.As<Napi::String>().Utf8Value());
    }

    tsfn_ = Tsfn::New(env, info[3].As<Napi::Function>(), "ddfs-fuse3", 0, 1, this);
    std::vector<std::string> argv_s = {"ddfs", "-o", mount_opts};
    if (debug_) argv_s.push_back("-d");
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    struct fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
    fuse_ = fuse_new(&args, &ops, sizeof(ops), this);
    if (fuse_ == nullptr) {
      tsfn_.Release();
      throw Napi::Error::New(env, "IO: fuse_new failed (bad options?)");
    }
    if (fuse_mount(fuse_, mountpoint_.c_str()) != 0) {
      fuse_destroy(fuse_);
      fuse_ = nullptr;
      tsfn_.Release();
      throw Napi::Error::New(env, "IO: cannot mount " + mountpoint_ + " (is /dev/fuse there, and the mount point an empty directory?)");
    }
    // The loop and every worker it starts block all signals: Node's handlers (SIGINT, SIGTERM)
    // run on the JS thread, and a FUSE thread is never interrupted inside a request.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    loop_running_ = true;
    Ref();  // the loop uses this object until Close() completes
    loop_ = std::thread([this] { Loop(); });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  }

  ~Fuse3Mount() override {
    // Only reached after Close() completed (Ref() holds the object while mounted).
    if (loop_.joinable()) loop_.detach();
  }

  // ---- the FUSE side (libfuse's threads) ------------------------------------------------------

  // Hands `r` to JS and waits for its answer; returns the result (>= 0, or -errno).
  int Call(Request& r) {
    // Cancellation (libfuse cancels idle workers at exit) only while a worker reads /dev/fuse;
    // never while a request's state is in the table.
    int cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    int result = CallLocked(r);
    pthread_setcancelstate(cancel_state, nullptr);
    return result;
  }

  int CallLocked(Request& r) {
    DrainBehind();  // JS hears of every write before any later request
    std::unique_lock<std::mutex> lock(mu_);
    if (closing_) return -EIO;
    r.id = next_id_++;
    requests_[r.op]++;
    live_.emplace(r.id, &r);
    lock.unlock();
    if (tsfn_.NonBlockingCall(Encode(kCallJob, r.id)) != napi_ok) {
      lock.lock();
      live_.erase(r.id);
      return -EIO;
    }
    SpinForAnswer(r);
    lock.lock();
    auto answered = [&r] { return r.answered; };
    if (timeout_ms_ > 0) {
      r.cv.wait_for(lock, std::chrono::milliseconds(timeout_ms_), answered);
    } else {
      r.cv.wait(lock, answered);
    }
    if (!r.answered) {
      // JS never answered: EIO, and JS gives up the request's Buffer (and logs it) before
      // libfuse may reuse the memory.
      r.answered = true;
      r.result = -EIO;
      r.released = false;
      lock.unlock();
      bool posted = tsfn_.NonBlockingCall(Encode(kReleaseJob, r.id)) == napi_ok;
      lock.lock();
      if (!posted) r.released = true;  // JS is gone: nothing can touch the memory any more
      r.cv.wait(lock, [&r] { return r.released; });
    }
    live_.erase(r.id);
    return r.result;
  }

  // A request JS answers from memory (a lookup, an open) takes it ~20-40 µs; sleeping on the
  // condition variable and being woken costs this thread a context switch each way and the
  // answer a wake-up's latency. So such a request first yields the CPU in a loop for a while.
  static bool Quick(Op op) { return op == kGetattr || op == kOpen || op == kCreate || op == kRelease || op == kWrite || op == kTruncate; }
  static constexpr auto kSpin = std::chrono::microseconds(60);
  void SpinForAnswer(Request& r) {
    if (!spin_ || !Quick(r.op)) return;
    auto until = std::chrono::steady_clock::now() + kSpin;
    while (!r.answered_seen.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < until) sched_yield();
  }

  // ---- direct writes ----------------------------------------------------------------------------
  // A write handle's bytes go to its descriptor (the mount's spool file) from the FUSE thread
  // that received them: a 1 MiB write no longer waits for the JS thread (busy encoding and
  // sending the file's stripes while it is written) nor costs it the copy into the page cache.
  // JS learns of each write afterwards (kWritten), in order with the requests that follow it:
  // the report is queued before the write is answered, so before any later request.
  //
  // A large file's aligned writes past `direct_from` go to a second descriptor of the spool,
  // opened O_DIRECT: the page cache's cost for a new file is mostly the kernel allocating its
  // pages (1.3-1.4 s per GiB on ext4 here at times, against 0.1 s for a write to pages already
  // cached), and the node reads such a spool back with O_DIRECT too. O_DIRECT needs an aligned
  // buffer, so each FUSE thread copies the request into its own first (a copy of cached memory).

  static constexpr int kNotDirect = INT32_MIN;
  static constexpr size_t kDirectAlign = 4096;

  struct WriteTarget {
    int fd;
    int direct_fd;     // -1: none
    off_t direct_from;
    uint64_t spool;    // 0: none
  };

  // fd >= 0: fh's writes go to fd (aligned ones past direct_from to direct_fd) from now on;
  // -1: no more (the descriptors may close).
  void DirectWrites(uint64_t fh, int fd, int direct_fd = -1, double direct_from = 0, uint64_t spool = 0) {
    std::unique_lock<std::shared_mutex> g(direct_mu_);
    if (fd >= 0 && !stop_direct_) {
      direct_fds_[fh] = WriteTarget{fd, direct_fd, static_cast<off_t>(direct_from), spool};
    } else {
      direct_fds_.erase(fh);
      std::lock_guard<std::mutex> l(behind_mu_);
      behind_failed_.erase(fh);
    }
  }

  // This thread's aligned buffer of at least `size` bytes; null when memory is short.
  static char* Bounce(size_t size) {
    thread_local std::unique_ptr<char, void (*)(void*)> buf{nullptr, &free};
    thread_local size_t capacity = 0;
    if (size > capacity) {
      void* p = nullptr;
      if (posix_memalign(&p, kDirectAlign, size) != 0) return nullptr;
      buf.reset(static_cast<char*>(p));
      capacity = size;
    }
    return buf.get();
  }

  // pwrite of all `size` bytes; 0 or an errno.
  static int WriteAll(int fd, const char* buf, size_t size, off_t off) {
    size_t done = 0;
    while (done < size) {
      ssize_t n = pwrite(fd, buf + done, size - done, off + static_cast<off_t>(done));
      if (n > 0) done += static_cast<size_t>(n);
      else if (n < 0 && errno != EINTR) return errno;
      else if (n == 0) return EIO;
    }
    return 0;
  }

  // The write's result (bytes, or -errno), or kNotDirect when JS serves fh's writes.
  int WriteDirect(uint64_t fh, const char* buf, size_t size, off_t off) {
    int cancel_state;  // pwrite is a cancellation point: never cancelled holding the lock
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    int result = kNotDirect;
    {
      std::shared_lock<std::shared_mutex> g(direct_mu_);
      auto it = direct_fds_.find(fh);
      if (it != direct_fds_.end()) {
        const WriteTarget& t = it->second;
        int error = -1;
        bool aligned = t.direct_fd >= 0 && off >= t.direct_from && off % kDirectAlign == 0 && size % kDirectAlign == 0 && size > 0;
        int failed = FailedBehind(fh);
        if (failed != 0) return Uncancel(cancel_state, -failed);
        if (t.spool != 0) ForgetKept(t.spool, off, size);  // a rewrite: what is kept of that range is old
        if (aligned && WriteBehind(fh, t, buf, size, off)) return Uncancel(cancel_state, static_cast<int>(size));
        DrainBehind();  // what is behind lands first: this write must not be overtaken by an older one
        if (t.spool != 0) ForgetKept(t.spool, off, size);  // one of those may have been kept meanwhile
        if (aligned) {
          char* bounce = Bounce(size);
          if (bounce != nullptr) {
            memcpy(bounce, buf, size);
            error = WriteAll(t.direct_fd, bounce, size, off);
            if (error == EINVAL) error = -1;  // the file system refused O_DIRECT after all: buffered
          }
        }
        if (error == -1) error = WriteAll(t.fd, buf, size, off);
        if (error == 0) {
          NoteWritten({fh, off, static_cast<int64_t>(size)});
          result = static_cast<int>(size);
        } else {
          result = -WriteErrno(error);
        }
      }
    }
    pthread_setcancelstate(cancel_state, nullptr);
    return result;
  }

  static int WriteErrno(int error) { return error == ENOSPC || error == EDQUOT ? ENOSPC : EIO; }

  static int Uncancel(int cancel_state, int result) {
    pthread_setcancelstate(cancel_state, nullptr);
    return result;
  }

  // ---- writes behind ------------------------------------------------------------------------------
  // An aligned write to the O_DIRECT descriptor is answered once its bytes are copied into one
  // of kBehindBuffers buffers; kBehindThreads threads write them out. Why: on this VM a 1 MiB
  // O_DIRECT write waited 2-3 ms (up to 240 ms) for the disk while the nodes' fragment writes
  // shared it, and a writer (dd, cp) waits for each answer: half of a 1 GiB write's time went
  // there. Now the disk gets several at once and a writer waits only when every buffer is taken.
  // JS hears of them in the order they came (a put that follows the spool takes appends only),
  // and before any later request: every request for JS, and every write not behind, first waits
  // until none is left. A write that fails behind its answer is reported with -errno; JS then
  // fails the file's flush, fsync and close, and the handle's later writes fail here.
  static constexpr size_t kBehindBuffers = 16;
  static constexpr int kBehindThreads = 4;

  struct Behind {
    uint64_t fh = 0;
    uint64_t spool = 0;
    int fd = -1, direct_fd = -1;
    off_t off = 0;
    size_t size = 0;
    int error = 0;
    bool done = false;
    std::unique_ptr<char, void (*)(void*)> buf{nullptr, &free};
  };

  // True when the write was queued; false when it must be written now (overlaps one behind,
  // too large, off, or no memory).
  bool WriteBehind(uint64_t fh, const WriteTarget& t, const char* buf, size_t size, off_t off) {
    if (!write_behind_ || size > max_write_) return false;
    std::unique_lock<std::mutex> l(behind_mu_);
    if (behind_stop_) return false;
    if (behind_threads_.empty()) {
      for (int i = 0; i < kBehindThreads; i++) behind_threads_.emplace_back([this] { BehindLoop(); });
    }
    if (!FreeBehind(l)) return false;
    for (Behind* b : behind_order_) {
      if (b->fh == fh && b->off < off + static_cast<off_t>(size) && off < b->off + static_cast<off_t>(b->size)) return false;
    }
    Behind* b;
    if (!behind_idle_.empty()) {
      b = behind_idle_.back();
      behind_idle_.pop_back();
    } else {
      void* p = nullptr;
      if (posix_memalign(&p, kDirectAlign, max_write_) != 0) return false;
      behind_all_.emplace_back(new Behind());
      b = behind_all_.back().get();
      b->buf.reset(static_cast<char*>(p));
    }
    b->fh = fh;
    b->spool = t.spool;
    b->fd = t.fd;
    b->direct_fd = t.direct_fd;
    b->off = off;
    b->size = size;
    b->error = 0;
    b->done = false;
    behind_order_.push_back(b);  // seen by overlap checks and drains from now on
    l.unlock();
    memcpy(b->buf.get(), buf, size);
    l.lock();
    behind_todo_.push_back(b);
    behind_cv_.notify_all();
    return true;
  }

  void BehindLoop() {
    std::unique_lock<std::mutex> l(behind_mu_);
    for (;;) {
      behind_cv_.wait(l, [this] { return behind_stop_ || !behind_todo_.empty(); });
      if (behind_todo_.empty()) return;  // stopping, and nothing left to write
      Behind* b = behind_todo_.front();
      behind_todo_.pop_front();
      l.unlock();
      int error = WriteAll(b->direct_fd, b->buf.get(), b->size, b->off);
      if (error == EINVAL) error = WriteAll(b->fd, b->buf.get(), b->size, b->off);  // O_DIRECT refused after all
      l.lock();
      b->error = error;
      b->done = true;
      // Reported in arrival order: a write done early waits for the ones before it.
      while (!behind_order_.empty() && behind_order_.front()->done) {
        Behind* d = behind_order_.front();
        behind_order_.pop_front();
        if (d->error != 0) behind_failed_.emplace(d->fh, WriteErrno(d->error));
        NoteWritten({d->fh, d->off, d->error == 0 ? static_cast<int64_t>(d->size) : -static_cast<int64_t>(WriteErrno(d->error))});
        if (d->error == 0 && d->spool != 0 && d->size >= kKeptMin && kept_spools_.count(d->spool) != 0) behind_kept_.push_back(d);
        else behind_idle_.push_back(d);
      }
      behind_cv_.notify_all();
    }
  }

  // Waits (under l) until a buffer is idle or may be allocated; false when stopping. A buffer
  // kept for a put (below) is taken over only once the writer waited kKeptHold for the put.
  bool FreeBehind(std::unique_lock<std::mutex>& l) {
    std::chrono::steady_clock::time_point until{};
    for (;;) {
      if (behind_stop_) return false;
      if (!behind_idle_.empty() || behind_all_.size() < kBehindBuffers) return true;
      if (behind_kept_.empty()) {
        until = {};
        behind_cv_.wait(l);
        continue;
      }
      auto now = std::chrono::steady_clock::now();
      if (until == std::chrono::steady_clock::time_point{}) until = now + kKeptHold;
      if (now >= until) {  // the put is behind: it reads this range from the spool instead
        behind_idle_.push_back(behind_kept_.front());
        behind_kept_.pop_front();
        return true;
      }
      behind_cv_.wait_until(l, until);
    }
  }

  // ---- writes kept for a put ------------------------------------------------------------------
  // A large file's put follows its spool as it grows (the mount's `follow`), and it read every
  // range back from the disk: with the spool written O_DIRECT and the fragments written too, a
  // 1 GiB file cost the disk 3.5 GiB, and writes were bound by it. Now a buffer written behind
  // for a spool whose put follows it is kept, once written, until the put takes its bytes
  // (takeWritten: a copy). The writer waits up to kKeptHold for the put when every buffer is kept
  // (a put keeps pace with it); past that, or for a range it never got, the put reads the spool.
  // Only writes of kKeptMin or more are kept: the put takes a stripe at a time once the mount
  // announces 8 MiB more, so kBehindBuffers smaller writes never hold enough for it to take, and
  // the writer waited kKeptHold for every buffer (`cp`'s 128 KiB writes ran at 1.7 MB/s).
  static constexpr auto kKeptHold = std::chrono::milliseconds(100);
  static constexpr size_t kKeptMin = kPreferredIo;  // what st_blksize has cp write is kept

  // keepWrites(spool, on): keep (or no longer) the buffers written behind for the spool.
  Napi::Value KeepWrites(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "BAD_ARGUMENT: keepWrites(spool, on)");
    uint64_t spool = static_cast<uint64_t>(Num(info[0]));
    std::lock_guard<std::mutex> l(behind_mu_);
    if (info[1].ToBoolean()) {
      if (spool != 0) kept_spools_.insert(spool);
    } else {
      kept_spools_.erase(spool);
      FreeKept([spool](const Behind* b) { return b->spool == spool; });
    }
    return env.Undefined();
  }

  // takeWritten(spool, pos, dest) -> bytes: copies into dest what kept buffers hold of the spool
  // from pos on, up to the first byte none holds. Those wholly before the end of the range are
  // given back: the put has them, or reads that range from the spool.
  Napi::Value TakeWritten(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsBuffer()) throw Napi::TypeError::New(env, "BAD_ARGUMENT: takeWritten(spool, pos, dest)");
    uint64_t spool = static_cast<uint64_t>(Num(info[0]));
    off_t pos = static_cast<off_t>(Num(info[1], -1));
    auto dest = info[2].As<Napi::Buffer<char>>();
    size_t len = dest.Length(), done = 0;
    if (pos < 0) return Napi::Number::New(env, 0);
    std::unique_lock<std::mutex> l(behind_mu_);
    while (done < len) {
      off_t at = pos + static_cast<off_t>(done);
      auto it = behind_kept_.begin();
      while (it != behind_kept_.end() && !((*it)->spool == spool && (*it)->off <= at && at < (*it)->off + static_cast<off_t>((*it)->size))) ++it;
      if (it == behind_kept_.end()) break;
      Behind* b = *it;
      behind_kept_.erase(it);  // nobody reuses it while it is copied from
      taking_ = b;
      taking_stale_ = false;
      size_t from = static_cast<size_t>(at - b->off);
      size_t n = std::min(b->size - from, len - done);
      l.unlock();
      memcpy(dest.Data() + done, b->buf.get() + from, n);
      l.lock();
      taking_ = nullptr;
      done += n;
      bool rest = from + n < b->size && kept_spools_.count(spool) != 0 && !taking_stale_;
      if (rest) behind_kept_.push_front(b);  // the next range starts in it
      else behind_idle_.push_back(b);
    }
    off_t end = pos + static_cast<off_t>(len);
    FreeKept([spool, end](const Behind* b) { return b->spool == spool && b->off + static_cast<off_t>(b->size) <= end; });
    behind_cv_.notify_all();
    return Napi::Number::New(env, static_cast<double>(done));
  }

  // Kept buffers of the spool that overlap [off, off + size) become idle.
  void ForgetKept(uint64_t spool, off_t off, size_t size) {
    std::lock_guard<std::mutex> l(behind_mu_);
    if (behind_kept_.empty() && taking_ == nullptr) return;
    off_t end = off + static_cast<off_t>(size);
    auto overlaps = [spool, off, end](const Behind* b) { return b->spool == spool && b->off < end && off < b->off + static_cast<off_t>(b->size); };
    if (taking_ != nullptr && overlaps(taking_)) taking_stale_ = true;  // (a copy racing the rewrite: as if read just before it)
    FreeKept(overlaps);
  }

  // Under behind_mu_: kept buffers that `which` picks become idle.
  template <typename Pred>
  void FreeKept(Pred which) {
    bool any = false;
    for (auto it = behind_kept_.begin(); it != behind_kept_.end();) {
      if (which(*it)) {
        behind_idle_.push_back(*it);
        it = behind_kept_.erase(it);
        any = true;
      } else {
        ++it;
      }
    }
    if (any) behind_cv_.notify_all();
  }

  // Returns once every write behind is written and reported.
  void DrainBehind() {
    std::unique_lock<std::mutex> l(behind_mu_);
    behind_cv_.wait(l, [this] { return behind_order_.empty(); });
  }

  // The errno of a write of fh that failed behind its answer, or 0.
  int FailedBehind(uint64_t fh) {
    std::lock_guard<std::mutex> l(behind_mu_);
    auto it = behind_failed_.find(fh);
    return it == behind_failed_.end() ? 0 : it->second;
  }

  void StopBehind() {
    {
      std::lock_guard<std::mutex> l(behind_mu_);
      behind_stop_ = true;
      kept_spools_.clear();
      FreeKept([](const Behind*) { return true; });
      behind_cv_.notify_all();
    }
    for (auto& t : behind_threads_) t.join();
    behind_threads_.clear();
  }

  void NoteWritten(const Written& w) {
    bool first;
    {
      std::lock_guard<std::mutex> g(written_mu_);
      first = written_.empty();
      written_.push_back(w);
    }
    // One job drains every report queued until it runs.
    if (first) tsfn_.NonBlockingCall(Encode(kWrittenJob, 0));
  }

  static void* OpInit(struct fuse_conn_info* conn, struct fuse_config* cfg) {
    Fuse3Mount* m = Self();
    cfg->attr_timeout = m->attr_timeout_;
    cfg->entry_timeout = m->entry_timeout_;
    cfg->negative_timeout = 0;  // a name made by another mount shows up at once
    // A file removed while open stays usable through its descriptor (ddfs-fs keeps its spool);
    // no .fuse_hidden renames. Operations on such a file then come without a path.
    cfg->hard_remove = 1;
    cfg->nullpath_ok = 1;
    // auto_cache: a file's cached pages are kept across opens while its size and mtime are
    // unchanged, dropped otherwise. An object never changes under its id, and a name that
    // points at a new object shows a new mtime (its creation), so this is exact for ddfs;
    // kernel_cache (never drop) would serve another mount's replaced file stale.
    cfg->auto_cache = m->auto_cache_ ? 1 : 0;
    cfg->kernel_cache = 0;
    cfg->readdir_ino = 1;
    cfg->use_ino = 0;
    // 1 MiB requests: libfuse's buffer holds FUSE_MAX_MAX_PAGES (256) pages, and it asks the
    // kernel for max_pages to match.
    conn->max_write = m->max_write_;
    if (conn->capable & FUSE_CAP_READDIRPLUS) {
      // Every readdir carries the attributes (not only the first one of a directory): `ls -l`
      // then needs no lookup per file.
      conn->want |= FUSE_CAP_READDIRPLUS;
      conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
    }
    if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;  // open(O_TRUNC) in one request
    if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
    if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
    if (m->writeback_cache_ && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
      conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    } else {
      conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    }
    m->conn_ = conn;
    m->tsfn_.NonBlockingCall(Encode(kInitJob, 0));
    return m;
  }

  // What create's answer said of the new file: libfuse asks getattr for it next, on the same
  // thread (to fill the kernel's entry), and that answer comes from here instead of another
  // round trip to JS.
  struct Created {
    bool valid = false;
    uint64_t fh = 0;
    std::string path;
    double nums[kStatFields] = {};
  };
  static Created& LastCreated() {
    thread_local Created created;
    return created;
  }

  static int OpGetattr(const char* path, struct stat* st, struct fuse_file_info* fi) {
    Created& created = LastCreated();
    if (created.valid) {
      created.valid = false;
      if (fi != nullptr && fi->fh == created.fh && created.path == Str(path)) {
        ToStat(created.nums, st);
        return 0;
      }
    }
    Request r;
    r.op = kGetattr;
    r.path = Str(path);
    r.fh = fi != nullptr ? static_cast<double>(fi->fh) : -1;
    int res = Self()->Call(r);
    if (res == 0) ToStat(r.nums, st);
    return res;
  }

  // A listing, fetched from JS when a directory is read from its start and kept with its open
  // handle for the kernel's further readdir calls (one JS call per listing, not one per page).
  struct DirCache {
    std::string path;  // readdir gets none (nullpath_ok)
    std::vector<std::string> names;
    std::vector<double> stats;  // kStatFields per name, or empty
  };

  static int OpOpendir(const char* path, struct fuse_file_info* fi) {
    auto* dir = new DirCache();
    dir->path = Str(path);
    fi->fh = reinterpret_cast<uint64_t>(dir);
    return 0;
  }

  static int OpReleasedir(const char*, struct fuse_file_info* fi) {
    delete reinterpret_cast<DirCache*>(fi->fh);
    fi->fh = 0;
    return 0;
  }

  // Entries go out with their offsets (1-based positions): libfuse 3.14 then looks each one up
  // in its own node table and sends its attributes (readdirplus). Given offsets of 0 instead it
  // keeps the listing itself but sends the entries without attributes, and `ls -l` costs one
  // lookup (a getattr in JS) per file.
  static int OpReaddir(const char*, void* buf, fuse_fill_dir_t filler, off_t off, struct fuse_file_info* fi, enum fuse_readdir_flags flags) {
    auto* dir = fi != nullptr ? reinterpret_cast<DirCache*>(fi->fh) : nullptr;
    if (dir == nullptr) return -EBADF;
    if (off == 0) {
      Request r;
      r.op = kReaddir;
      r.path = dir->path.c_str();
      int res = Self()->Call(r);
      if (res != 0) return res;
      dir->names = std::move(r.names);
      dir->stats = std::move(r.stats);
    }
    bool plus = (flags & FUSE_READDIR_PLUS) != 0 && dir->stats.size() == dir->names.size() * kStatFields;
    auto none = static_cast<fuse_fill_dir_flags>(0);
    struct stat st;
    // Positions: 0 ".", 1 "..", 2.. the names; an entry's offset is the position after it.
    for (size_t i = static_cast<size_t>(off < 0 ? 0 : off); i < dir->names.size() + 2; i++) {
      int full;
      if (i < 2) {
        full = filler(buf, i == 0 ? "." : "..", nullptr, static_cast<off_t>(i + 1), none);
      } else {
        size_t k = i - 2;
        if (plus) ToStat(&dir->stats[k * kStatFields], &st);
        full = filler(buf, dir->names[k].c_str(), plus ? &st : nullptr, static_cast<off_t>(i + 1), plus ? FUSE_FILL_DIR_PLUS : none);
      }
      if (full != 0) break;
    }
    return 0;
  }

  static int OpOpen(const char* path, struct fuse_file_info* fi) {
    Request r;
    r.op = kOpen;
    r.path = Str(path);
    r.a = fi->flags;
    int res = Self()->Call(r);
    if (res < 0) return res;
    fi->fh = static_cast<uint64_t>(res);
    // A reader's close has nothing to commit: the kernel skips its FLUSH (one request less
    // per `cat`); its RELEASE still comes, without the closer waiting for it.
    if ((fi->flags & O_ACCMODE) == O_RDONLY) fi->noflush = 1;
    if (r.write_fd >= 0) Self()->DirectWrites(fi->fh, r.write_fd, r.write_direct_fd, r.write_direct_from, r.write_spool);
    return 0;
  }

  static int OpCreate(const char* path, mode_t mode, struct fuse_file_info* fi) {
    Request r;
    r.op = kCreate;
    r.path = Str(path);
    r.a = mode;
    r.b = fi->flags;
    int res = Self()->Call(r);
    if (res < 0) return res;
    fi->fh = static_cast<uint64_t>(res);
    if (r.write_fd >= 0) Self()->DirectWrites(fi->fh, r.write_fd, r.write_direct_fd, r.write_direct_from, r.write_spool);
    if (r.has_stat) {
      Created& created = LastCreated();
      created.valid = true;
      created.fh = fi->fh;
      created.path = r.path;
      std::copy(r.nums, r.nums + kStatFields, created.nums);
    }
    return 0;
  }

  static int OpRead(const char* path, char* buf, size_t size, off_t off, struct fuse_file_info* fi) {
    Request r;
    r.op = kRead;
    r.path = Str(path);
    r.fh = static_cast<double>(fi->fh);
    r.a = static_cast<double>(off);
    r.data = buf;
    r.size = size;
    return Self()->Call(r);
  }

  static int OpWrite(const char* path, const char* buf, size_t size, off_t off, struct fuse_file_info* fi) {
    int direct = Self()->WriteDirect(fi->fh, buf, size, off);
    if (direct != kNotDirect) return direct;
    Request r;
    r.op = kWrite;
    r.path = Str(path);
    r.fh = static_cast<double>(fi->fh);
    r.a = static_cast<double>(off);
    r.data = const_cast<char*>(buf);  // JS gets a Buffer over it; writing into it is harmless
    r.size = size;
    int res = Self()->Call(r);
    if (res >= 0 && r.write_fd >= 0) Self()->DirectWrites(fi->fh, r.write_fd, r.write_direct_fd, r.write_direct_from, r.write_spool);
    return res;
  }

  static int OpFh(Op op, const char* path, struct fuse_file_info* fi, double a = 0) {
    Request r;
    r.op = op;
    r.path = Str(path);
    r.fh = fi != nullptr ? static_cast<double>(fi->fh) : -1;
    r.a = a;
    return Self()->Call(r);
  }
  static int OpFlush(const char* path, struct fuse_file_info* fi) { return OpFh(kFlush, path, fi); }
  static int OpRelease(const char* path, struct fuse_file_info* fi) {
    Self()->DirectWrites(fi->fh, -1);  // before JS may close the descriptor
    return OpFh(kRelease, path, fi);
  }
  static int OpFsync(const char* path, int datasync, struct fuse_file_info* fi) { return OpFh(kFsync, path, fi, datasync); }
  static int OpTruncate(const char* path, off_t size, struct fuse_file_info* fi) { return OpFh(kTruncate, path, fi, static_cast<double>(size)); }
  static int OpChmod(const char* path, mode_t mode, struct fuse_file_info* fi) { return OpFh(kChmod, path, fi, mode); }

  static int OpChown(const char* path, uid_t uid, gid_t gid, struct fuse_file_info* fi) {
    Request r;
    r.op = kChown;
    r.path = Str(path);
    r.fh = fi != nullptr ? static_cast<double>(fi->fh) : -1;
    r.a = uid;
    r.b = gid;
    return Self()->Call(r);
  }

  static int OpUtimens(const char* path, const struct timespec tv[2], struct fuse_file_info* fi) {
    Request r;
    r.op = kUtimens;
    r.path = Str(path);
    r.fh = fi != nullptr ? static_cast<double>(fi->fh) : -1;
    auto ms = [](const struct timespec& t) {
      return t.tv_nsec == UTIME_NOW || t.tv_nsec == UTIME_OMIT ? -1.0 : t.tv_sec * 1000.0 + t.tv_nsec / 1e6;
    };
    r.a = tv != nullptr ? ms(tv[0]) : -1;
    r.b = tv != nullptr ? ms(tv[1]) : -1;
    return Self()->Call(r);
  }

  static int OpPath(Op op, const char* path, const char* path2 = nullptr, double a = 0, double b = 0) {
    Request r;
    r.op = op;
    r.path = Str(path);
    r.path2 = path2;  // may be null: undefined in JS
    r.a = a;
    r.b = b;
    return Self()->Call(r);
  }
  static int OpUnlink(const char* path) { return OpPath(kUnlink, path); }
  static int OpRmdir(const char* path) { return OpPath(kRmdir, path); }
  static int OpMkdir(const char* path, mode_t mode) { return OpPath(kMkdir, path, nullptr, mode); }
  static int OpRename(const char* from, const char* to, unsigned int flags) { return OpPath(kRename, from, to, flags); }
  static int OpLink(const char* from, const char* to) { return OpPath(kLink, from, to); }
  // symlink(target, linkpath): the path is the link, path2 what it points at.
  static int OpSymlink(const char* target, const char* link) { return OpPath(kSymlink, link, target); }
  static int OpMknod(const char* path, mode_t mode, dev_t dev) { return OpPath(kMknod, path, nullptr, mode, static_cast<double>(dev)); }
  static int OpRemovexattr(const char* path, const char* name) { return OpPath(kRemovexattr, path, name); }

  static int OpSetxattr(const char* path, const char* name, const char* value, size_t size, int flags) {
    Request r;
    r.op = kSetxattr;
    r.path = Str(path);
    r.path2 = name;
    r.value = value;
    r.value_size = size;
    r.a = flags;
    return Self()->Call(r);
  }

  static int OpGetxattr(const char* path, const char* name, char* value, size_t size) {
    // Names the file system does not serve are answered here: `ls -l` asks for
    // security.selinux and system.posix_acl_access of every file. Other namespaces are not
    // supported at all (EOPNOTSUPP, on which ls stops asking for the rest of the mount: 4,000
    // requests fewer for `ls -l` of 2,000 files); other user.* names are simply absent.
    const std::string& prefix = Self()->xattr_prefix_;
    if (name == nullptr) return -ENODATA;
    if (strncmp(name, prefix.c_str(), prefix.size()) != 0) return strncmp(name, "user.", 5) == 0 ? -ENODATA : -EOPNOTSUPP;
    Request r;
    r.op = kGetxattr;
    r.path = Str(path);
    r.path2 = name;
    int res = Self()->Call(r);
    if (res < 0) return res;
    if (!r.has_bytes) return -ENODATA;
    if (size == 0) return static_cast<int>(r.bytes.size());
    if (r.bytes.size() > size) return -ERANGE;
    memcpy(value, r.bytes.data(), r.bytes.size());
    return static_cast<int>(r.bytes.size());
  }

  static int OpListxattr(const char* path, char* list, size_t size) {
    Request r;
    r.op = kListxattr;
    r.path = Str(path);
    int res = Self()->Call(r);
    if (res < 0) return res;
    if (size == 0) return static_cast<int>(r.bytes.size());
    if (r.bytes.size() > size) return -ERANGE;
    memcpy(list, r.bytes.data(), r.bytes.size());
    return static_cast<int>(r.bytes.size());
  }

  static int OpStatfs(const char* path, struct statvfs* sv) {
    Request r;
    r.op = kStatfs;
    r.path = Str(path);
    int res = Self()->Call(r);
    if (res != 0) return res;
    memset(sv, 0, sizeof(*sv));
    sv->f_bsize = static_cast<unsigned long>(r.nums[0]);
    sv->f_frsize = static_cast<unsigned long>(r.nums[1]);
    sv->f_blocks = static_cast<fsblkcnt_t>(r.nums[2]);
    sv->f_bfree = static_cast<fsblkcnt_t>(r.nums[3]);
    sv->f_bavail = static_cast<fsblkcnt_t>(r.nums[4]);
    sv->f_files = static_cast<fsfilcnt_t>(r.nums[5]);
    sv->f_ffree = static_cast<fsfilcnt_t>(r.nums[6]);
    sv->f_favail = static_cast<fsfilcnt_t>(r.nums[7]);
    sv->f_fsid = static_cast<unsigned long>(r.nums[8]);
    sv->f_flag = static_cast<unsigned long>(r.nums[9]);
    sv->f_namemax = static_cast<unsigned long>(r.nums[10]);
    return 0;
  }

  void Loop() {
    struct fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    fuse_loop_cfg_set_max_threads(cfg, max_threads_);
    // Threads stay once started: a new worker allocates its own 1 MiB request buffer, and
    // libfuse would otherwise end idle ones after every burst and start them again.
    fuse_loop_cfg_set_idle_threads(cfg, max_threads_);
    loop_result_ = fuse_loop_mt(fuse_, cfg);
    fuse_loop_cfg_destroy(cfg);
    loop_running_ = false;
    tsfn_.NonBlockingCall(Encode(kEndedJob, 0));
  }

  // ---- the JS side ----------------------------------------------------------------------------

  // A job from a FUSE thread, on the JS thread.
  void OnJob(Napi::Env env, Napi::Function dispatch, uintptr_t job) {
    Job kind = static_cast<Job>(job & kJobMask);
    uint64_t id = job >> kJobBits;
    if (kind == kWrittenJob) {
      std::vector<Written> done;
      {
        std::lock_guard<std::mutex> g(written_mu_);
        done.swap(written_);
      }
      if (env == nullptr) return;
      Napi::HandleScope scope(env);
      for (const Written& w : done) {
        CallDispatch(env, dispatch, {Napi::Number::New(env, kWritten), Napi::Number::New(env, 0), Napi::String::New(env, ""),
          Napi::Number::New(env, static_cast<double>(w.fh)), Napi::Number::New(env, static_cast<double>(w.off)), Napi::Number::New(env, static_cast<double>(w.bytes))});
      }
      return;
    }
    if (kind == kInitJob || kind == kEndedJob) {
      if (env != nullptr) CallDispatch(env, dispatch, {Napi::Number::New(env, kind == kInitJob ? kInit : kEnded), Napi::Number::New(env, loop_result_)});
      return;
    }
    std::unique_lock<std::mutex> lock(mu_);
    auto it = live_.find(id);
    if (it == live_.end()) return;
    Request& r = *it->second;
    if (kind == kReleaseJob) {
      std::string path = r.path;
      Op op = r.op;
      Detach(env, r);
      r.released = true;
      r.cv.notify_all();
      lock.unlock();
      if (env != nullptr) CallDispatch(env, dispatch, {Napi::Number::New(env, kTimedOut), Napi::Number::New(env, static_cast<double>(id)), Napi::String::New(env, path), Napi::String::New(env, kOpNames[op])});
      return;
    }
    if (r.answered || env == nullptr) return;  // timed out or closed before JS saw it
    if (r.data != nullptr && r.size > 0) r.js_holds = true;
    lock.unlock();
    // The request stays valid until it is answered and its Buffer detached, both of which only
    // happen on this thread, inside dispatch at the earliest. After dispatch returns, `r` may
    // be gone.
    Napi::HandleScope scope(env);
    Napi::Value data = env.Undefined();
    if (r.data != nullptr && r.size > 0) {
      auto buf = Napi::Buffer<char>::New(env, r.data, r.size);
      napi_create_reference(env, buf, 1, &r.buf_ref);
      data = buf;
    } else if (r.op == kRead || r.op == kWrite) {
      data = Napi::Buffer<char>::New(env, 0);
    } else if (r.op == kSetxattr) {
      data = Napi::Buffer<char>::Copy(env, r.value != nullptr ? r.value : "", r.value_size);
    }
    Napi::Value path2 = r.path2 != nullptr ? Napi::Value(Napi::String::New(env, r.path2)) : env.Undefined();
    bool ok = CallDispatch(env, dispatch, {
      Napi::Number::New(env, r.op), Napi::Number::New(env, static_cast<double>(id)), Napi::String::New(env, r.path),
      Napi::Number::New(env, r.fh), Napi::Number::New(env, r.a), Napi::Number::New(env, r.b), path2, data});
    if (!ok) Answer(env, id, -EIO);  // the dispatcher itself threw: never leave a request hanging
  }

  bool CallDispatch(Napi::Env env, Napi::Function dispatch, const std::initializer_list<napi_value>& args) {
    try {
      dispatch.Call(args);
      return true;
    } catch (const Napi::Error& e) {
      fprintf(stderr, "ddfs fuse3: dispatch threw: %s\n", e.Message().c_str());
      return false;
    }
  }

  // Detaches the Buffer JS got over the request's memory (JS thread, under mu_).
  void Detach(Napi::Env env, Request& r) {
    if (r.buf_ref != nullptr && env != nullptr) {
      napi_value v;
      if (napi_get_reference_value(env, r.buf_ref, &v) == napi_ok && v != nullptr) {
        napi_value ab;
        if (napi_get_typedarray_info(env, v, nullptr, nullptr, nullptr, &ab, nullptr) == napi_ok) napi_detach_arraybuffer(env, ab);
      }
      napi_delete_reference(env, r.buf_ref);
    }
    r.buf_ref = nullptr;
    r.js_holds = false;
  }

  // Answers request `id` with `result` (JS thread). False when it was answered already.
  bool Answer(Napi::Env env, uint64_t id, int result, const Napi::CallbackInfo* info = nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(id);
    if (it == live_.end() || it->second->answered) return false;
    Request& r = *it->second;
    r.result = result;
    if (info != nullptr && result >= 0) r.result = Parse(*info, r, result);
    Detach(env, r);
    r.answered = true;
    r.answered_seen.store(true, std::memory_order_release);
    r.cv.notify_all();
    return true;
  }

  // The answer's values, by request kind; a malformed answer is EIO.
  int Parse(const Napi::CallbackInfo& info, Request& r, int result) {
    Napi::Value v = info.Length() > 2 ? info[2] : info.Env().Undefined();
    Napi::Value w = info.Length() > 3 ? info[3] : info.Env().Undefined();
    switch (r.op) {
      case kGetattr:
      case kStatfs: {
        size_t want = r.op == kGetattr ? kStatFields : kStatfsFields;
        if (!v.IsArray()) return -EIO;
        auto arr = v.As<Napi::Array>();
        if (arr.Length() < want) return -EIO;
        for (size_t i = 0; i < want; i++) r.nums[i] = Num(arr.Get(static_cast<uint32_t>(i)));
        return 0;
      }
      case kReaddir: {
        if (!v.IsArray()) return -EIO;
        auto names = v.As<Napi::Array>();
        r.names.reserve(names.Length());
        for (uint32_t i = 0; i < names.Length(); i++) {
          Napi::Value n = names.Get(i);
          if (!n.IsString()) return -EIO;
          r.names.push_back(n.As<Napi::String>().Utf8Value());
        }
        if (w.IsTypedArray() && w.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array) {
          auto stats = w.As<Napi::Float64Array>();
          if (stats.ElementLength() == r.names.size() * kStatFields) r.stats.assign(stats.Data(), stats.Data() + stats.ElementLength());
        }
        return 0;
      }
      case kGetxattr:
        if (v.IsBuffer()) {
          auto b = v.As<Napi::Buffer<char>>();
          r.bytes.assign(b.Data(), b.Length());
          r.has_bytes = true;
        }
        return 0;
      case kListxattr:
        if (!v.IsArray()) return -EIO;
        for (uint32_t i = 0; i < v.As<Napi::Array>().Length(); i++) {
          Napi::Value n = v.As<Napi::Array>().Get(i);
          if (!n.IsString()) return -EIO;
          r.bytes += n.As<Napi::String>().Utf8Value();
          r.bytes.push_back('\0');
        }
        return 0;
      case kRead:
        return static_cast<size_t>(result) <= r.size ? result : -EIO;
      case kWrite:
        // A write that moved its file from memory to a spool names the spool: later writes go there.
        if (static_cast<size_t>(result) > r.size) return -EIO;
        TargetOf(r, v, w);
        return result;
      case kCreate:
        // value3: the new file's stat (optional).
        if (info.Length() > 4 && info[4].IsArray() && info[4].As<Napi::Array>().Length() >= kStatFields) {
          auto arr = info[4].As<Napi::Array>();
          for (size_t i = 0; i < kStatFields; i++) r.nums[i] = Num(arr.Get(static_cast<uint32_t>(i)));
          r.has_stat = true;
        }
        TargetOf(r, v, w);
        return result;
      case kOpen:
        TargetOf(r, v, w);
        return result;
      default:
        return 0;
    }
  }

  // value: the descriptor a handle's writes may go to from now on; value2: [directFd, directFrom,
  // spool?], aligned writes at and past directFrom go to directFd; spool: the file's key for keepWrites.
  static void TargetOf(Request& r, const Napi::Value& v, const Napi::Value& w) {
    if (v.IsNumber()) {
      double fd = v.As<Napi::Number>().DoubleValue();
      if (fd >= 0 && fd <= INT32_MAX && fd == std::floor(fd)) r.write_fd = static_cast<int>(fd);
    }
    if (r.write_fd >= 0 && w.IsArray() && w.As<Napi::Array>().Length() >= 2) {
      auto a = w.As<Napi::Array>();
      double fd = Num(a.Get(0u), -1);
      double from = Num(a.Get(1u), -1);
      if (fd >= 0 && fd <= INT32_MAX && fd == std::floor(fd) && from >= 0 && from == std::floor(from)) {
        r.write_direct_fd = static_cast<int>(fd);
        r.write_direct_from = from;
      }
      double spool = a.Length() >= 3 ? Num(a.Get(2u), 0) : 0;
      if (spool >= 1 && spool <= 9007199254740991.0 && spool == std::floor(spool)) r.write_spool = static_cast<uint64_t>(spool);
    }
  }

  // reply(id, result, value?, value2?, value3?): result >= 0 (a count, a file handle, 0) or -errno.
  Napi::Value Reply(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "BAD_ARGUMENT: reply(id, result, ...)");
    double idd = info[0].As<Napi::Number>().DoubleValue();
    double res = info[1].As<Napi::Number>().DoubleValue();
    if (!(idd >= 1) || idd > 9007199254740991.0) return Napi::Boolean::New(env, false);
    int result = !std::isfinite(res) || res != std::floor(res) || res > INT32_MAX || res < -4095 ? -EIO : static_cast<int>(res);
    return Napi::Boolean::New(env, Answer(env, static_cast<uint64_t>(idd), result, &info));
  }

  // stopDirectWrites() -> [fh, pos, bytes][]: every later write goes to JS; returns once no
  // direct write is running or behind, with the reports JS has not had yet (their job, still
  // queued, then finds none). For a file system about to close its descriptors while the mount
  // is still up: it hears of every answered write before it commits what was written.
  Napi::Value StopDirectWrites(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::unique_lock<std::shared_mutex> g(direct_mu_);
    direct_fds_.clear();
    stop_direct_ = true;
    DrainBehind();
    std::vector<Written> pending;
    {
      std::lock_guard<std::mutex> w(written_mu_);
      pending.swap(written_);
    }
    auto out = Napi::Array::New(env, pending.size());
    for (size_t i = 0; i < pending.size(); i++) {
      auto t = Napi::Array::New(env, 3);
      t.Set(0u, Napi::Number::New(env, static_cast<double>(pending[i].fh)));
      t.Set(1u, Napi::Number::New(env, static_cast<double>(pending[i].off)));
      t.Set(2u, Napi::Number::New(env, static_cast<double>(pending[i].bytes)));
      out.Set(static_cast<uint32_t>(i), t);
    }
    return out;
  }

  // info(): what the kernel and libfuse settled on at init (null before init).
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (conn_ == nullptr) return env.Null();
    auto o = Napi::Object::New(env);
    o.Set("maxWrite", conn_->max_write);
    o.Set("maxRead", conn_->max_read);
    o.Set("maxReadahead", conn_->max_readahead);
    o.Set("maxBackground", conn_->max_background);
    o.Set("protoMajor", conn_->proto_major);
    o.Set("protoMinor", conn_->proto_minor);
    o.Set("readdirplus", (conn_->want & FUSE_CAP_READDIRPLUS) != 0);
    o.Set("readdirplusAuto", (conn_->want & FUSE_CAP_READDIRPLUS_AUTO) != 0);
    o.Set("writebackCache", (conn_->want & FUSE_CAP_WRITEBACK_CACHE) != 0);
    o.Set("atomicOTrunc", (conn_->want & FUSE_CAP_ATOMIC_O_TRUNC) != 0);
    o.Set("maxThreads", max_threads_);
    auto requests = Napi::Object::New(env);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int op = 0; op < kEnded; op++) if (requests_[op] > 0) requests.Set(kOpNames[op], static_cast<double>(requests_[op]));
    }
    o.Set("requests", requests);
    return o;
  }

  // close(): answers every request in flight with EIO, ends the loop, unmounts; resolves once
  // the loop's threads are joined and libfuse's state is freed. Idempotent.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    if (closed_) {
      deferred.Resolve(Napi::Number::New(env, 0));
      return deferred.Promise();
    }
    closed_ = true;
    int answered = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
      // Exit first: a worker that finishes a request now leaves the loop and wakes it.
      fuse_exit(fuse_);
      for (auto& [id, r] : live_) {
        if (r->answered) continue;
        r->result = -EIO;
        Detach(env, *r);
        r->answered = true;
        r->answered_seen.store(true, std::memory_order_release);
        r->cv.notify_all();
        answered++;
      }
    }
    auto* worker = new CloseWorker(env, this, deferred, answered);
    worker->Queue();
    return deferred.Promise();
  }

  // Off the JS thread: the loop may need a request to notice it should end, and joining it
  // (and unmounting) blocks.
  class CloseWorker : public Napi::AsyncWorker {
   public:
    CloseWorker(Napi::Env env, Fuse3Mount* m, Napi::Promise::Deferred d, int answered)
        : Napi::AsyncWorker(env), m_(m), deferred_(d), answered_(answered) {}
    void Execute() override { m_->Shutdown(); }
    void OnOK() override {
      m_->tsfn_.Release();
      m_->Unref();
      deferred_.Resolve(Napi::Number::New(Env(), answered_));
    }
    void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

   private:
    Fuse3Mount* m_;
    Napi::Promise::Deferred deferred_;
    int answered_;
  };

  void Shutdown() {
    // An idle loop waits in the kernel for the next request: a statfs of the mount point is
    // one (answered EIO without JS, as the mount is closing), after which the worker that
    // served it leaves the loop and the loop cancels the idle ones. If the loop already ended,
    // the statfs returns once the unmount below aborted the connection.
    std::thread poke;
    if (loop_running_) {
      poke = std::thread([mp = mountpoint_] { struct statfs sf; statfs(mp.c_str(), &sf); });
    }
    if (loop_.joinable()) loop_.join();
    StopBehind();  // no FUSE thread is left to queue one; what is queued is written first
    // Closes /dev/fuse (the kernel aborts the connection: anything still waiting on it fails
    // with ENOTCONN) and detaches the mount.
    fuse_unmount(fuse_);
    if (poke.joinable()) poke.join();
    fuse_destroy(fuse_);
    fuse_ = nullptr;
  }

 private:
  void Enable(struct fuse_operations* ops, const std::string& name) {
    if (name == "getattr") ops->getattr = &OpGetattr;
    else if (name == "readdir") { ops->readdir = &OpReaddir; ops->opendir = &OpOpendir; ops->releasedir = &OpReleasedir; }
    else if (name == "open") ops->open = &OpOpen;
    else if (name == "create") ops->create = &OpCreate;
    else if (name == "read") ops->read = &OpRead;
    else if (name == "write") ops->write = &OpWrite;
    else if (name == "flush") ops->flush = &OpFlush;
    else if (name == "fsync") ops->fsync = &OpFsync;
    else if (name == "release") ops->release = &OpRelease;
    else if (name == "truncate") ops->truncate = &OpTruncate;
    else if (name == "unlink") ops->unlink = &OpUnlink;
    else if (name == "rename") ops->rename = &OpRename;
    else if (name == "getxattr") ops->getxattr = &OpGetxattr;
    else if (name == "listxattr") ops->listxattr = &OpListxattr;
    else if (name == "statfs") ops->statfs = &OpStatfs;
    else if (name == "utimens") ops->utimens = &OpUtimens;
    else if (name == "chmod") ops->chmod = &OpChmod;
    else if (name == "chown") ops->chown = &OpChown;
    else if (name == "mkdir") ops->mkdir = &OpMkdir;
    else if (name == "rmdir") ops->rmdir = &OpRmdir;
    else if (name == "symlink") ops->symlink = &OpSymlink;
    else if (name == "link") ops->link = &OpLink;
    else if (name == "mknod") ops->mknod = &OpMknod;
    else if (name == "setxattr") ops->setxattr = &OpSetxattr;
    else if (name == "removexattr") ops->removexattr = &OpRemovexattr;
  }

  friend void CallJs(Napi::Env env, Napi::Function fn, Fuse3Mount* mount, void* data);

  std::string mountpoint_;
  struct fuse* fuse_ = nullptr;
  struct fuse_conn_info* conn_ = nullptr;
  Tsfn tsfn_;
  std::thread loop_;
  std::atomic<bool> loop_running_{false};
  int loop_result_ = 0;
  std::mutex mu_;
  std::unordered_map<uint64_t, Request*> live_;
  std::shared_mutex direct_mu_;
  std::unordered_map<uint64_t, WriteTarget> direct_fds_;  // fh -> descriptors (direct writes)
  bool stop_direct_ = false;                      // under direct_mu_
  bool spin_ = true;
  uint64_t requests_[kOpCount] = {};  // requests handed to JS, by kind (under mu_)
  std::mutex written_mu_;
  std::vector<Written> written_;                  // direct writes JS has not heard of yet
  bool write_behind_ = true;
  std::mutex behind_mu_;                          // guards what follows
  std::condition_variable behind_cv_;             // a write queued or done, a buffer free, stopping
  std::vector<std::unique_ptr<Behind>> behind_all_;  // every buffer, at most kBehindBuffers
  std::vector<Behind*> behind_idle_;
  std::deque<Behind*> behind_kept_;               // written, kept for a put: oldest first
  std::unordered_set<uint64_t> kept_spools_;      // spools whose buffers are kept
  Behind* taking_ = nullptr;                      // the kept buffer takeWritten copies from (unlocked)
  bool taking_stale_ = false;                     // rewritten meanwhile: not kept after the copy
  std::deque<Behind*> behind_order_;              // queued and not reported yet, in arrival order
  std::deque<Behind*> behind_todo_;               // not started yet
  std::unordered_map<uint64_t, int> behind_failed_;  // fh -> errno of a write that failed behind
  std::vector<std::thread> behind_threads_;
  bool behind_stop_ = false;
  uint64_t next_id_ = 1;
  bool closing_ = false;  // under mu_
  bool closed_ = false;   // JS thread
  double attr_timeout_ = 1, entry_timeout_ = 1;
  unsigned max_write_ = 1 << 20;
  unsigned max_threads_ = 16;
  int64_t timeout_ms_ = 0;
  bool writeback_cache_ = false;
  bool auto_cache_ = true;
  bool debug_ = false;
  std::string xattr_prefix_;  // getxattr of other names: ENODATA without asking JS
};

void CallJs(Napi::Env env, Napi::Function fn, Fuse3Mount* mount, void* data) {
  // env is null while the environment tears down: release jobs still mark their request.
  uintptr_t job = reinterpret_cast<uintptr_t>(data);
  try {
    mount->OnJob(env, fn, job);
  } catch (const std::exception& e) {
    // Nothing may escape into the event loop (it would abort the process); the request, if it
    // is one, is answered.
    fprintf(stderr, "ddfs fuse3: %s\n", e.what());
    if ((job & kJobMask) == kCallJob && env != nullptr) mount->Answer(env, job >> kJobBits, -EIO);
  }
}

}  // namespace

void InitFuse3(Napi::Env env, Napi::Object exports) {
  exports.Set("Fuse3Mount", Fuse3Mount::Define(env));
}

}  // namespace ddfs
