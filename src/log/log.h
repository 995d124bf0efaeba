// The job log: an append-only file in the job's directory plus in-memory notification of the
// clients that follow it (FollowLogs).
//
// The file is the single source of truth. Followers do not get bytes pushed to them: they are told
// "something changed" and read the file by offset (pread), so any number of followers see the
// same bytes, and `offset + bytes received` is always the next offset to read from. Bytes are
// stored exactly as written — no newline added, none dropped, no line-length limit.
//
// Threading: Append, MoveFrom, Close, Follow, Unfollow and the follower callbacks belong to one
// thread (the event loop that runs the job). size(), closed(), ReadAt and ReadInto may be called
// from any thread; they only see bytes that an Append or MoveFrom had completely written.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "util/fd.h"
#include "util/output_stream.h"
#include "util/result.h"

namespace sr {

class JobLog {
 public:
  using FollowerId = uint64_t;
  using Notify = std::function<void()>;

  /// Creates (or truncates) the log file at `path` with mode 0600.
  static Result<std::unique_ptr<JobLog>> Create(const std::string& path);

  /// Appends `bytes` and notifies every follower. After a write error the log keeps the bytes it
  /// managed to write (size() stays exact) and reports the error; later appends still try.
  [[nodiscard]] Status Append(std::string_view bytes);
  /// The engine's OutputSink shape: both streams go into the one file, interleaved as written.
  /// A write error is returned, as Append's; the caller decides what it means for the job.
  [[nodiscard]] Status Write(OutputStream /*stream*/, std::string_view bytes) {
    return Append(bytes);
  }

  /// Appends up to `max` bytes straight from the pipe `fd` (splice: no copy through the runner)
  /// and notifies every follower. kRefused after Close or when splice cannot write the file
  /// (the caller then reads the pipe and Appends, which reports a write error).
  OutputMove MoveFrom(int fd, size_t max);

  /// The job ended: no more bytes will come. Notifies followers (they finish once they have read
  /// up to size()). Idempotent; Append after Close is ignored. `end_note` is the owner's word on
  /// how the job ended (opaque here), for followers that finish after the job is forgotten.
  void Close(std::string end_note = {});
  /// Any thread. Once true, size() is final: read closed() first, then size().
  bool closed() const { return closed_.load(std::memory_order_acquire); }
  /// Any thread, once closed() was seen true: the note given to Close (empty if none).
  const std::string& end_note() const { return end_note_; }

  /// Bytes in the file. Any thread.
  int64_t size() const { return size_.load(std::memory_order_acquire); }
  const std::string& path() const { return path_; }

  /// Reads up to `max` bytes starting at `offset` (never past size()). Empty at or past the end.
  /// Any thread.
  Result<std::string> ReadAt(int64_t offset, size_t max) const;
  /// The same into the caller's buffer (a follower reads straight into its outgoing message):
  /// the number of bytes read. Any thread.
  Result<size_t> ReadInto(int64_t offset, char* out, size_t max) const;

  /// Calls `notify` (on the loop thread) after every Append and on Close, until Unfollow.
  /// A callback may Unfollow itself or others.
  FollowerId Follow(Notify notify);
  void Unfollow(FollowerId id);
  size_t followers() const { return followers_.size(); }

 private:
  JobLog(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  void NotifyAll();

  std::string path_;
  UniqueFd fd_;
  std::atomic<int64_t> size_{0};
  std::atomic<bool> closed_{false};
  std::string end_note_;  // written once, before closed_ is set (release)
  std::map<FollowerId, Notify> followers_;
  FollowerId next_id_ = 1;
};

}  // namespace sr
