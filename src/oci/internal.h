// Parts of oci/ shared by pull, build and copy. Not part of the public API (see oci.h).
#pragma once

#include <exception>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "loop/loop.h"
#include "loop/task.h"
#include "oci/oci.h"
#include "util/fd.h"
#include "util/result.h"

namespace sr::oci {

/// The last line of defence of the entry points (Pull, Build, Copy): an exception escaping
/// `task` (nlohmann::json on a document of an unexpected shape) becomes a failure naming `what`
/// instead of ending the runner. Expected errors are values and never get here.
template <class T>
Task<Result<T>> Guarded(Task<Result<T>> task, std::string what) {
  try {
    co_return co_await task;
  } catch (const std::exception& e) {
    co_return FailedError(what + ": unexpected error: " + e.what());
  }
}

/// Cuts CPU work on the loop thread into slices: Due() after a few milliseconds of work, and
/// Yield() lets every other fd and timer run before the work goes on (and notices a cancel).
class Slicer {
 public:
  Slicer(EventLoop& loop, CancelToken* cancel);
  bool Due() const;
  Task<Status> Yield();

 private:
  EventLoop& loop_;
  CancelToken* cancel_;
  Clock::time_point slice_start_;
};

/// Receives a blob's bytes as they arrive.
using Sink = std::function<Status(std::string_view)>;
/// Streams one blob into the sink (an HTTP GET).
using Download = std::function<Task<Status>(Sink)>;

/// A verified blob: the open file whose bytes were hashed (read from it, never reopened by name,
/// so nobody can swap the file between the check and the use), at offset 0, and its path.
struct CachedBlob {
  UniqueFd fd;
  std::string path;
};

/// The content-addressed blob store under <cache_dir>/oci/blobs/sha256 (see oci.h). Each
/// directory of that path from <cache_dir> down is created 0700 and must be a private directory
/// of this user (util/tempdir.h CheckPrivate): the cache is in a shared $TMPDIR by default.
class BlobCache {
 public:
  explicit BlobCache(const std::string& cache_dir);
  /// A verified copy of `digest`. Without a good cached copy, takes the digest's lock
  /// (waiting, cancel-aware, while another job or process holds it), checks again, and else
  /// downloads into a temporary file, hashing as it streams, and renames it into place only when
  /// the digest matches. `downloaded` says whether this call fetched it.
  Task<Result<CachedBlob>> Get(EventLoop& loop, const std::string& digest, Download download,
                               CancelToken* cancel, bool* downloaded = nullptr);
  const std::string& dir() const { return dir_; }

 private:
  /// Creates and checks the directories from the cache root down to dir_.
  Status Prepare() const;
  /// The open entry when it matches `digest`; an invalid fd when it is missing or does not.
  Task<Result<UniqueFd>> Verify(EventLoop& loop, const std::string& path, const std::string& digest,
                                CancelToken* cancel);
  std::string root_, dir_;
};

/// Unpacks one layer (tar, plain or zstd or gzip, sniffed) read from `blob_fd` into `dest`:
/// directories and regular files only, nothing outside `dest`. Errors name the layer digest and
/// the entry.
Task<Status> UnpackLayer(EventLoop& loop, int blob_fd, const std::string& digest,
                         const std::string& dest, CancelToken* cancel);

/// Set by OffLoop when the caller stopped waiting (a cancel): long work checks it between chunks
/// and gives up, so the helper thread is free soon (and a `run` can exit).
using StopFlag = std::atomic<bool>;

/// Runs `work` on the loop's helper thread (EventLoop::Offload) while the loop serves every other
/// job: for CPU work on large data (packing an artifact, hashing a blob). `work` must own all it
/// touches (captures by value or shared_ptr): on a cancel the caller gets kCancelled at once, the
/// stop flag is set, and the result is dropped when the work ends. (Arguments by reference: GCC
/// 12 may destroy a by-value argument of a call inside co_await twice; see engine/expand.cc.)
template <class T>
Task<Result<T>> OffLoop(EventLoop& loop, CancelToken* cancel,
                        std::function<Result<T>(const StopFlag& stop)>&& work) {
  struct Shared {
    std::optional<Result<T>> result;  // written on the helper thread, read after `done` only
    StopFlag stop{false};
  };
  auto shared = std::make_shared<Shared>();
  std::shared_ptr<void> on_cancel;
  // Only references are captured in the co_await expression (GCC 12, see engine/expand.cc).
  const bool finished = co_await AwaitCallback<bool>([&](std::function<void(bool)> resume) {
    auto resumed = std::make_shared<bool>(false);  // loop thread only
    loop.Offload([shared, work = std::move(work)] { shared->result.emplace(work(shared->stop)); },
                 [resume, resumed] { if (!std::exchange(*resumed, true)) resume(true); });
    if (cancel) {
      on_cancel = cancel->OnCancel([resume, resumed, shared] {
        shared->stop = true;
        if (!std::exchange(*resumed, true)) resume(false);
      });
    }
  });
  on_cancel.reset();
  if (!finished) co_return Error{Error::Kind::kCancelled, "cancelled"};
  co_return std::move(*shared->result);
}

/// "sha256:<hex>" of `data`, hashed in chunks; kCancelled once `stop` is set.
Result<std::string> DigestOf(std::string_view data, const StopFlag* stop);

/// One layer made from an artifact: its compressed bytes, their digest, and the digest of the
/// plain tar.
struct PackedLayer {
  std::string data;     // zstd-compressed tar
  std::string digest;   // sha256 of `data`
  std::string diff_id;  // sha256 of the uncompressed tar
};
/// The most an artifact may hold (the bytes of its files): a layer is made in memory, and a
/// registry blob of more could not be copied by promote either (GetVerified's bound).
constexpr uint64_t kMaxArtifactBytes = uint64_t{1} << 30;
/// Packs `artifact.src` (a file or a directory) at `artifact.dst` in a zstd tar, with its parent
/// directories, sorted, mtime 0 (so the same input gives the same digest). Pure computation on
/// its own data: safe on a helper thread (OffLoop); kCancelled soon after `stop` is set.
Result<PackedLayer> PackLayer(const Artifact& artifact, const StopFlag* stop = nullptr);
/// PackLayer off the loop thread (OffLoop): a large artifact takes seconds to read, hash and
/// compress, during which the loop would serve no other job, cancel or kill deadline.
/// `artifact` is copied before the first suspension.
Task<Result<PackedLayer>> PackLayerOffLoop(EventLoop& loop, const Artifact& artifact, CancelToken* cancel);

}  // namespace sr::oci
