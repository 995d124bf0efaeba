// FollowLogs: a ServerWriteReactor per stream, driven from the event loop.
//
// The reactor's state lives on the loop thread, where the job log is written: its reactions
// (OnWriteDone, OnCancel, OnDone) only post to the loop. The log notifies the follower after
// every append and on close; the follower reads the file at its offset (pread) and keeps one write
// in flight at a time. A client that goes away ends the stream at once (OnCancel) and the reactor
// is freed when gRPC is done with it (OnDone) — no thread per stream, nothing left waiting.
#include "service/job_service.h"
#include "service/service.h"
#include "service/status.h"

namespace sr::service {
namespace {

constexpr size_t kChunk = 64 * 1024;  // bytes per FollowLogsResponse

using Writer = grpc::ServerWriteReactor<proto::FollowLogsResponse>;

// An RPC answered before it starts (bad request, unknown job, shutting down).
class FinishedWriter : public Writer {
 public:
  explicit FinishedWriter(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

class LogFollower : public Writer {
 public:
  LogFollower(JobService& service, std::string id, int64_t offset)
      : service_(service), loop_(service.loop()), id_(std::move(id)), offset_(offset) {
    loop_.Post([this] { Start(); });
  }

  void OnWriteDone(bool ok) override { loop_.Post([this, ok] { WriteDone(ok); }); }
  void OnCancel() override { loop_.Post([this] { End(grpc::Status::CANCELLED); }); }
  // The last reaction: nothing posted for this reactor can follow it.
  void OnDone() override {
    loop_.Post([this] {
      Detach();
      JobService& service = service_;
      const bool started = started_;
      delete this;
      if (started) service.FollowerGone();
    });
  }

 private:
  void Start() {
    started_ = true;
    service_.FollowerStarted();
    log_ = service_.FindLog(id_);
    if (!log_) {
      End(ToGrpcStatus(JobNotFound(id_)));
      return;
    }
    follow_id_ = log_->Follow([this] { Pump(); });
    Pump();
  }

  // Sends the next chunk if no write is in flight; ends the stream once the job's log is closed
  // and every byte was sent.
  void Pump() {
    if (finished_ || writing_) return;
    auto chunk = log_->ReadAt(offset_, kChunk);
    if (!chunk.ok()) {
      End(ToGrpcStatus(chunk.error()));
      return;
    }
    if (!chunk->empty()) {
      offset_ += static_cast<int64_t>(chunk->size());
      response_.set_data(std::move(*chunk));
      writing_ = true;
      StartWrite(&response_);
      return;
    }
    if (log_->closed()) End(grpc::Status::OK);
  }

  void WriteDone(bool ok) {
    writing_ = false;
    if (finished_) {
      Finish(std::move(pending_));  // End() came while the write was in flight
      return;
    }
    if (!ok) {
      End(grpc::Status::CANCELLED);  // the client went away
      return;
    }
    Pump();
  }

  // Ends the stream once: Finish now, or after the write in flight completes.
  void End(grpc::Status status) {
    if (finished_) return;
    finished_ = true;
    Detach();
    if (writing_) {
      pending_ = std::move(status);
      return;
    }
    Finish(std::move(status));
  }

  void Detach() {
    if (log_ && follow_id_) log_->Unfollow(follow_id_);
    follow_id_ = 0;
    log_.reset();
  }

  JobService& service_;
  EventLoop& loop_;
  const std::string id_;
  // Loop thread only.
  std::shared_ptr<JobLog> log_;
  JobLog::FollowerId follow_id_ = 0;
  int64_t offset_;
  bool started_ = false;
  bool writing_ = false;
  bool finished_ = false;
  grpc::Status pending_;
  proto::FollowLogsResponse response_;
};

}  // namespace

grpc::ServerWriteReactor<proto::FollowLogsResponse>* JobService::FollowLogs(
    grpc::CallbackServerContext* /*context*/, const proto::FollowLogsRequest* request) {
  if (auto valid = ValidateJobId(request->id()); !valid.ok()) {
    return new FinishedWriter(ToGrpcStatus(valid.error()));
  }
  if (request->offset() < 0) {
    return new FinishedWriter(ToGrpcStatus(
        InvalidError("negative offset " + std::to_string(request->offset()))));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) return new FinishedWriter(ShuttingDown());
  if (!jobs_.count(request->id())) return new FinishedWriter(ToGrpcStatus(JobNotFound(request->id())));
  // Constructed under the lock: its Start reaches the loop after the job's own setup.
  return new LogFollower(*this, request->id(), request->offset());
}

}  // namespace sr::service
