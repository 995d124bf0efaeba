// FollowLogs: a ServerWriteReactor per stream, one write in flight, refilled straight from the
// job's log file.
//
// Each response is a FollowLogsResponse built by hand (field 1, length, bytes): the bytes are
// pread from the log file into one buffer that gRPC sends as is, so a byte is copied twice on its
// way from the file to the socket (pread, sendmsg) and the message is never serialised; followers
// of one job at the same offset send the same buffer, read once (log_messages.h). The next
// message is read on the thread that learns the previous one was sent (OnWriteDone, a gRPC
// thread) or the loop thread, when the log notifies that bytes arrived for a follower that was
// waiting for them — never a hop from one thread to the other per message. A follower that is
// behind gets bigger messages (64 KiB doubling up to 1 MiB as long as each one is taken), one
// that stalls holds at most one message. A client that goes away ends the stream at once
// (OnCancel) and the reactor is freed when gRPC is done with it (OnDone, then on the loop, where
// it unfollows the log) — no thread per stream, nothing left waiting.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>

#include "service/job_service.h"
#include "service/log_messages.h"
#include "service/service.h"
#include "service/status.h"

namespace sr::service {
namespace {

constexpr size_t kFirstChunk = 64 * 1024;   // bytes in a follower's first message
constexpr size_t kMaxChunk = 1024 * 1024;   // within gRPC's default 4 MiB receive limit
constexpr int64_t kGrid = kFirstChunk;      // where messages end, when they can
// What all streams together may have in flight beyond kFirstChunk each (JobService::
// follow_extra_bytes): room for dozens of fast followers, while stalled ones hold 64 KiB each.
constexpr size_t kExtraBudget = 32 * 1024 * 1024;

// Takes up to `want` bytes of the shared budget; returns how many it got.
size_t ClaimExtra(std::atomic<size_t>& used, size_t want) {
  size_t cur = used.load(std::memory_order_relaxed);
  for (;;) {
    const size_t got = cur >= kExtraBudget ? 0 : std::min(want, kExtraBudget - cur);
    if (got == 0) return 0;
    if (used.compare_exchange_weak(cur, cur + got, std::memory_order_relaxed)) return got;
  }
}

using Writer = grpc::ServerWriteReactor<grpc::ByteBuffer>;

// An RPC answered before it starts (bad request, unknown job, shutting down).
class FinishedWriter : public Writer {
 public:
  explicit FinishedWriter(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

class LogFollower : public Writer {
 public:
  LogFollower(JobService& service, grpc::CallbackServerContext* context, std::string id, int64_t offset)
      : service_(service), loop_(service.loop()), context_(context), id_(std::move(id)), offset_(offset) {
    loop_.Post([this] { Start(); });
  }

  // gRPC thread.
  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      ReleaseExtra();
      if (finished_) {
        finish = std::move(pending_);  // End() came while the write was in flight
      } else if (!ok) {
        finished_ = true;  // the client went away
        finish = grpc::Status::CANCELLED;
      } else if (last_full_ && chunk_ < kMaxChunk) {
        chunk_ *= 2;  // it took a full message: it is behind, give it more per message
      }
    }
    // gRPC's calls are made outside the lock, in case one runs a reaction on this thread.
    if (finish) {
      Finish(std::move(*finish));
      return;
    }
    Pump();
  }
  void OnCancel() override { End(grpc::Status::CANCELLED); }
  // The last reaction: nothing can touch this reactor after it but the loop, which unfollows.
  void OnDone() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ReleaseExtra();  // a write that never completed
    }
    loop_.Post([this] {
      if (log_ && follow_id_) log_->Unfollow(follow_id_);
      JobService& service = service_;
      const bool started = started_;
      delete this;
      if (started) service.FollowerGone();
    });
  }

 private:
  // Loop thread.
  void Start() {
    started_ = true;
    service_.FollowerStarted();
    auto messages = service_.LogMessagesFor(id_);
    if (!messages) {
      End(ToGrpcStatus(JobNotFound(id_)));
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      log_ = messages->log();
      messages_ = std::move(messages);
    }
    follow_id_ = log_->Follow([this] { Pump(); });
    Pump();
  }

  // Any thread. Sends the next message unless one is in flight; ends the stream once the job's
  // log is closed and every byte was sent. The read happens outside the lock: the loop's notify
  // must not wait for a 1 MiB pread on a gRPC thread.
  void Pump() {
    int64_t from = 0;
    size_t n = 0;
    LogMessages::Hold message;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_ || writing_ || !log_) return;
      const bool closed = log_->closed();  // first: once closed, size() is final
      const int64_t available = log_->size() - offset_;
      if (available <= 0) {
        if (!closed) return;
        finished_ = true;
      } else {
        // Messages end on multiples of their size, and short of the log's end on a multiple of
        // 64 KiB (the rest follows as soon as this one is sent), so followers that are behind or
        // that woke at different moments fall into the same pieces and can share them.
        const auto chunk = static_cast<int64_t>(chunk_);
        const int64_t to_boundary = chunk - offset_ % chunk;
        int64_t end = offset_ + std::min(available, to_boundary);
        if (const int64_t grid = end / kGrid * kGrid; grid > offset_) end = grid;
        n = static_cast<size_t>(end - offset_);
        message = messages_->Find(offset_, n);  // another stream's message from here?
        if (message) n = message.size();
        if (n > kFirstChunk) {
          extra_ = ClaimExtra(service_.follow_extra_bytes(), n - kFirstChunk);
          if (extra_ < n - kFirstChunk) message = {};  // the budget allows less than it holds
          n = kFirstChunk + extra_;
        }
        from = offset_;
        offset_ += static_cast<int64_t>(n);
        last_full_ = static_cast<int64_t>(n) == to_boundary;
        writing_ = true;  // claimed: nobody else touches message_ until OnWriteDone
      }
    }
    if (n == 0) {
      // Every byte of a closed log was sent. The job's outcome goes with the end: a client whose
      // Status(id) comes after someone Closed the job (and so NOT_FOUND) still learns it.
      if (!log_->end_note().empty()) context_->AddTrailingMetadata(kJobEndTrailer, log_->end_note());
      Finish(grpc::Status::OK);
      return;
    }
    if (!message) {
      auto read = messages_->Read(from, n);
      if (!read.ok()) {
        grpc::Status status = ToGrpcStatus(read.error());
        {
          std::lock_guard<std::mutex> lock(mu_);
          writing_ = false;
          ReleaseExtra();
          if (finished_) status = std::move(pending_);
          finished_ = true;
        }
        Finish(std::move(status));
        return;
      }
      message = std::move(*read);
    }
    {
      // Under the lock only for the record: the claim already makes this thread the only writer,
      // but the write that hands message_ over (StartWrite → OnWriteDone on another thread) goes
      // through gRPC, whose synchronisation a thread sanitizer does not see.
      std::lock_guard<std::mutex> lock(mu_);
      message_ = std::move(message).Buffer();
    }
    StartWrite(&message_);
  }

  // Under mu_: the message in flight no longer holds its share of the budget.
  void ReleaseExtra() {
    if (extra_ == 0) return;
    service_.follow_extra_bytes().fetch_sub(extra_, std::memory_order_relaxed);
    extra_ = 0;
  }

  // Any thread. Ends the stream once: Finish now, or after the write in flight completes.
  void End(grpc::Status status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      finished_ = true;
      if (writing_) {
        pending_ = std::move(status);
        return;
      }
    }
    Finish(std::move(status));
  }

  JobService& service_;
  EventLoop& loop_;
  grpc::CallbackServerContext* const context_;
  const std::string id_;
  // Loop thread only.
  JobLog::FollowerId follow_id_ = 0;
  bool started_ = false;
  // The stream's state, shared by the loop (notify) and gRPC threads (OnWriteDone, OnCancel).
  // log_ and messages_ are set once, under mu_, before any write; they keep the file readable
  // until OnDone (and each message in flight keeps it readable until gRPC releases it).
  LogMessages::PoolUser pool_user_;  // message blocks are recycled while any stream is open
  std::mutex mu_;
  std::shared_ptr<JobLog> log_;
  std::shared_ptr<LogMessages> messages_;
  int64_t offset_;
  size_t chunk_ = kFirstChunk;
  bool last_full_ = false;  // the last message ran up to the boundary of chunk_ (was not short)
  size_t extra_ = 0;  // this stream's share of follow_extra_bytes, while a write is in flight
  bool writing_ = false;
  bool finished_ = false;
  grpc::Status pending_;
  grpc::ByteBuffer message_;  // owned by the writer that set writing_
};

}  // namespace

std::shared_ptr<LogMessages> JobService::LogMessagesFor(const std::string& id) {
  auto log = FindLog(id);
  if (!log) return nullptr;
  std::erase_if(log_messages_, [](const auto& entry) { return entry.second.expired(); });
  auto& slot = log_messages_[log.get()];  // a live entry keeps its log: the key is that log's
  if (auto messages = slot.lock()) return messages;
  auto messages = std::make_shared<LogMessages>(std::move(log));
  slot = messages;
  return messages;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* JobService::FollowLogs(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw) {
  proto::FollowLogsRequest request;
  grpc::ByteBuffer copy(*raw);  // Deserialize consumes its buffer
  if (grpc::Status parsed = grpc::SerializationTraits<proto::FollowLogsRequest>::Deserialize(
          &copy, &request);
      !parsed.ok()) {
    return new FinishedWriter(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                           "malformed FollowLogsRequest: " + parsed.error_message()));
  }
  if (auto valid = ValidateJobId(request.id()); !valid.ok()) {
    return new FinishedWriter(ToGrpcStatus(valid.error()));
  }
  if (request.offset() < 0) {
    return new FinishedWriter(ToGrpcStatus(
        InvalidError("negative offset " + std::to_string(request.offset()))));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) return new FinishedWriter(ShuttingDown());
  if (!jobs_.count(request.id())) return new FinishedWriter(ToGrpcStatus(JobNotFound(request.id())));
  // Constructed under the lock: its Start reaches the loop after the job's own setup.
  return new LogFollower(*this, context, request.id(), request.offset());
}

}  // namespace sr::service
