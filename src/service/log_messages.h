// FollowLogs messages read from one job's log, shared by the streams that send the same bytes.
//
// A message is `FollowLogsResponse{data: log[offset, offset + size)}` in wire form (tag, varint
// length, bytes) in one block that gRPC sends as is. Followers of one job that are at the same
// offset — all caught up and woken by the same write of the step, or keeping pace with each other
// (follow_logs.cc ends messages on fixed boundaries for that) — send one block: one pread of the
// log instead of one per follower. A block lives while some stream still sends it (gRPC holds a
// slice per stream) and is not kept a moment longer: sharing costs no memory, and each stream
// still counts its message against the follow budget as before. Blocks of 32 KiB and more are
// recycled through a small pool, so a busy stream does not fault in fresh pages for every
// message. Internal to src/service.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <grpcpp/support/byte_buffer.h>

#include "log/log.h"
#include "util/result.h"

namespace sr::service {

class LogMessages : public std::enable_shared_from_this<LogMessages> {
 public:
  struct Block;
  /// One stream's hold on a block: released when dropped, or handed to gRPC by Buffer().
  class Hold {
   public:
    Hold() = default;
    Hold(Hold&& o) noexcept : block_(o.block_) { o.block_ = nullptr; }
    Hold& operator=(Hold&& o) noexcept;
    ~Hold();
    explicit operator bool() const { return block_ != nullptr; }
    size_t size() const;
    /// The message, owning this hold (a slice whose release drops it).
    grpc::ByteBuffer Buffer() &&;

   private:
    friend class LogMessages;
    explicit Hold(Block* b) : block_(b) {}
    Block* block_ = nullptr;
  };

  explicit LogMessages(std::shared_ptr<JobLog> log) : log_(std::move(log)) {}
  const std::shared_ptr<JobLog>& log() const { return log_; }

  /// Any thread. A message another stream is sending that starts at `offset` and has 1 to `max`
  /// bytes, if there is one (the caller sends its size() bytes).
  Hold Find(int64_t offset, size_t max);
  /// Any thread. Reads log[offset, offset + n) into a new message that later Finds can share.
  Result<Hold> Read(int64_t offset, size_t n);

  /// Bytes of free blocks kept for reuse by all jobs, at most.
  static constexpr size_t kPoolBytes = 8 * 1024 * 1024;

  /// One per FollowLogs stream. Freed blocks are kept for reuse only while one exists; when the
  /// last goes the pool is emptied, so an idle server holds no message buffers.
  class PoolUser {
   public:
    PoolUser();
    ~PoolUser();
    PoolUser(const PoolUser&) = delete;
    PoolUser& operator=(const PoolUser&) = delete;
  };

 private:
  static void Unref(void* block);
  void Release(Block* b);

  const std::shared_ptr<JobLog> log_;
  std::mutex mu_;
  std::vector<Block*> live_;  // blocks some stream holds, guarded by mu_ (and their refs)
};

}  // namespace sr::service
