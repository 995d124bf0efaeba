// The blob cache and the slicer (see internal.h).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "oci/digest.h"
#include "oci/internal.h"
#include "supervisor/leftovers.h"
#include "util/fd.h"
#include "util/tempdir.h"

namespace sr::oci {
namespace {
// Removes what earlier downloads of one digest left (".<hex>.tmp-<pid>-<n>"). Only called with
// the digest's lock held: its holder is the only writer of such files, and flock dies with its
// process, so every one found then belongs to a download that was killed (a runner ended by
// SIGKILL or a full disk). The start-up sweep removes them too (supervisor/leftovers.cc).
void RemoveStaleTemps(const std::string& dir, const std::string& hex) {
  const std::string prefix = "." + hex + kBlobTempInfix;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().filename().string().rfind(prefix, 0) == 0) ::unlink(e.path().c_str());
  }
}


constexpr auto kSlice = std::chrono::milliseconds(5);
constexpr auto kLockPoll = std::chrono::milliseconds(20);

// Waits `delay` on the loop; false when a cancel came first.
Task<bool> Sleep(EventLoop& loop, Duration delay, CancelToken* cancel) {
  std::optional<EventLoop::TimerId> timer;
  std::shared_ptr<void> on_cancel;
  bool slept = co_await AwaitCallback<bool>([&](std::function<void(bool)> resume) {
    auto done = std::make_shared<bool>(false);
    timer = loop.After(delay, [resume, done] {
      if (!std::exchange(*done, true)) resume(true);
    });
    if (cancel) {
      on_cancel = cancel->OnCancel([resume, done] {
        if (!std::exchange(*done, true)) resume(false);
      });
    }
  });
  on_cancel.reset();
  if (timer) loop.CancelTimer(*timer);
  co_return slept;
}

Error Cancelled() { return Error{Error::Kind::kCancelled, "cancelled"}; }

}  // namespace

Slicer::Slicer(EventLoop& loop, CancelToken* cancel)
    : loop_(loop), cancel_(cancel), slice_start_(Clock::now()) {}

bool Slicer::Due() const { return Clock::now() - slice_start_ > kSlice; }

Task<Status> Slicer::Yield() {
  bool went_on = co_await Sleep(loop_, Duration(0), cancel_);
  slice_start_ = Clock::now();
  if (!went_on || (cancel_ && cancel_->requested())) co_return Cancelled();
  co_return Ok();
}

BlobCache::BlobCache(const std::string& cache_dir)
    : root_(cache_dir.empty() ? std::string("/tmp/step-runner-cache") : cache_dir),
      dir_(root_ + "/" + kOciBlobDir) {}

Status BlobCache::Prepare() const {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(root_).parent_path(), ec);
  for (const std::string& d : {root_, root_ + "/oci", root_ + "/oci/blobs", dir_}) {
    if (Status ok = MakePrivateDir(d); !ok.ok()) return ok;
  }
  return Ok();
}

Task<Result<UniqueFd>> BlobCache::Verify(EventLoop& loop, const std::string& path,
                                         const std::string& digest, CancelToken* cancel) {
  // O_NONBLOCK: something that is not a file (a FIFO) must not block the loop on open.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd.valid()) {
    if (errno == ENOENT) co_return UniqueFd();
    co_return ErrnoError("reading cached blob " + path, errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) co_return ErrnoError("reading cached blob " + path, errno);
  if (!S_ISREG(st.st_mode)) co_return FailedError("cached blob " + path + " is not a regular file");
  Sha256 hash;
  Slicer slicer(loop, cancel);
  std::string buf(1 << 20, '\0');
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) co_return ErrnoError("reading cached blob " + path, errno);
    if (n == 0) break;
    hash.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
    if (slicer.Due()) {
      Status ok = co_await slicer.Yield();
      if (!ok.ok()) co_return ok.error();
    }
  }
  if (hash.Finish() != digest) co_return UniqueFd();
  if (::lseek(fd.get(), 0, SEEK_SET) != 0) co_return ErrnoError("reading cached blob " + path, errno);
  co_return fd;
}

Task<Result<CachedBlob>> BlobCache::Get(EventLoop& loop, const std::string& digest,
                                        Download download, CancelToken* cancel,
                                        bool* downloaded) {
  if (downloaded) *downloaded = false;
  if (Status ok = CheckDigest(digest); !ok.ok()) co_return ok.error();
  if (Status ok = Prepare(); !ok.ok()) co_return ok.error();
  const std::string hex = digest.substr(7);
  const std::string path = dir_ + "/" + hex;
  // A complete entry is renamed into place, so reading one needs no lock.
  auto good = co_await Verify(loop, path, digest, cancel);
  if (!good.ok()) co_return good.error();
  if (good->valid()) co_return CachedBlob{std::move(*good), path};

  // One download per digest across jobs and processes: flock on a lock file beside the entry.
  UniqueFd lock(::open((path + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock.valid()) co_return ErrnoError("cache lock " + path + ".lock", errno);
  while (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) co_return ErrnoError("cache lock " + path + ".lock", errno);
    if (!co_await Sleep(loop, kLockPoll, cancel)) co_return Cancelled();
  }
  good = co_await Verify(loop, path, digest, cancel);  // the holder we waited for may have fetched it
  if (!good.ok()) co_return good.error();
  if (good->valid()) co_return CachedBlob{std::move(*good), path};
  ::unlink(path.c_str());  // missing or corrupt: fetch it again
  RemoveStaleTemps(dir_, hex);

  static std::atomic<int> counter{0};
  // Named so that the next runner's sweep (supervisor/leftovers.h) finds it if this one is killed.
  const std::string tmp = dir_ + "/." + hex + kBlobTempInfix + std::to_string(::getpid()) + "-" +
                          std::to_string(++counter);
  // Read back through this same fd after the rename: what was hashed is what gets used.
  UniqueFd out(::open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!out.valid()) co_return ErrnoError("cache " + tmp, errno);
  struct Unlink {
    std::string path;
    ~Unlink() { if (!path.empty()) ::unlink(path.c_str()); }
  } cleanup{tmp};
  Sha256 hash;
  uint64_t size = 0;
  Status got = co_await download([&](std::string_view chunk) -> Status {
    hash.Update(chunk);
    size += chunk.size();
    return WriteAll(out.get(), chunk);
  });
  if (!got.ok()) co_return got.error();
  const std::string actual = hash.Finish();
  if (actual != digest) {
    co_return FailedError("digest mismatch: blob " + digest + " arrived as " + actual + " (" +
                          std::to_string(size) + " bytes)");
  }
  if (::lseek(out.get(), 0, SEEK_SET) != 0) co_return ErrnoError("cache " + tmp, errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) co_return ErrnoError("cache rename " + path, errno);
  cleanup.path.clear();
  if (downloaded) *downloaded = true;
  co_return CachedBlob{std::move(out), path};
}

}  // namespace sr::oci
