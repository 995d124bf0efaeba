// The StepRunner callback service: the job registry and the RPC handlers. Internal to
// src/service; service.h documents the behaviour, server.cc wires it to a gRPC server.
//
// Handlers run on gRPC threads and never block: they validate, look the id up under mu_, and
// post the work to the loop (while still holding mu_, so work for one id reaches the loop in the
// order the registry saw it). Jobs are created by Run on a gRPC thread but otherwise only touched
// — and destroyed — on the loop thread; gRPC threads read their published Status snapshot.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "loop/loop.h"
#include "proto/step.grpc.pb.h"
#include "service/job.h"
#include "supervisor/supervisor.h"
#include "util/time.h"

namespace sr::service {

// FollowLogs is a raw method: its responses are built by hand from the log file's bytes (one
// slice per message, no protobuf copy); every other method is an ordinary callback method.
using JobServiceBase = proto::StepRunner::WithCallbackMethod_Run<
    proto::StepRunner::WithCallbackMethod_Close<proto::StepRunner::WithRawCallbackMethod_FollowLogs<
        proto::StepRunner::WithCallbackMethod_Status<
            proto::StepRunner::WithCallbackMethod_Cancel<proto::StepRunner::Service>>>>>;

class LogMessages;  // log_messages.h

class JobService final : public JobServiceBase {
 public:
  /// `stream_deadline` bounds how long shutdown waits for log streams once every job ended.
  JobService(EventLoop& loop, Supervisor& supervisor, std::map<std::string, std::string> env,
             std::string temp_base, Duration retention, Duration stream_deadline);
  ~JobService() override;

  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context,
                                const proto::RunRequest* request,
                                proto::RunResponse* response) override;
  grpc::ServerUnaryReactor* Close(grpc::CallbackServerContext* context,
                                  const proto::CloseRequest* request,
                                  proto::CloseResponse* response) override;
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* context,
                                   const proto::CancelRequest* request,
                                   proto::CancelResponse* response) override;
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* context,
                                   const proto::StatusRequest* request,
                                   proto::StatusResponse* response) override;
  /// The request is a FollowLogsRequest, each response a FollowLogsResponse (follow_logs.cc).
  grpc::ServerWriteReactor<grpc::ByteBuffer>* FollowLogs(grpc::CallbackServerContext* context,
                                                         const grpc::ByteBuffer* request) override;

  /// Loop thread. First call: every RPC answers UNAVAILABLE from now on, running jobs are
  /// cancelled gracefully (server_shutdown). Once every job has ended, their files are removed;
  /// once every log stream has ended too (or `stream_deadline` passed), `drained` runs on the
  /// loop. Later calls force: SIGKILL every job's processes now.
  void BeginShutdown(std::function<void()> drained);

  EventLoop& loop() { return loop_; }
  /// Loop thread: the log of a registered, set-up job (null if there is none).
  std::shared_ptr<JobLog> FindLog(const std::string& id);
  /// Loop thread: the messages of that log, shared by all its followers (null if there is none).
  std::shared_ptr<LogMessages> LogMessagesFor(const std::string& id);
  /// Loop thread: a FollowLogs stream started / was freed.
  void FollowerStarted() { ++followers_; }
  void FollowerGone();
  /// Bytes of FollowLogs messages in flight beyond each stream's first 64 KiB, over all streams
  /// (any thread). A stream that keeps up gets messages of up to 1 MiB, but a gRPC write
  /// completes once the transport holds it, not once the client read it: without one budget for
  /// all, a thousand followers that never read would each end up holding 1 MiB.
  std::atomic<size_t>& follow_extra_bytes() { return follow_extra_bytes_; }

 private:
  bool shutting_down() const;
  std::shared_ptr<Job> Find(const std::string& id);  // any thread, takes mu_
  // A unary RPC on job `id`: a bad id or a shutting-down server answers at once, an unknown id
  // answers `if_unknown`; otherwise `work` runs on the loop (posted under mu_, so in the order
  // the registry saw the requests) and finishes the reactor.
  // `during_shutdown`: answered while the server drains too (Status).
  grpc::ServerUnaryReactor* OnRegisteredJob(grpc::CallbackServerContext* context,
                                            const std::string& id, grpc::Status if_unknown,
                                            std::function<void(grpc::ServerUnaryReactor*)> work,
                                            bool during_shutdown = false);
  // Loop thread.
  void StartJob(const std::shared_ptr<Job>& job, JobRequest& request,
                grpc::ServerUnaryReactor* reactor);
  void CloseJob(const std::string& id, grpc::ServerUnaryReactor* reactor);
  void OnJobEnd(const std::shared_ptr<Job>& job);
  void Forget(const std::shared_ptr<Job>& job);  // removes files and the registry entry
  void MaybeDrained();
  void ArmStatusLinger();

  EventLoop& loop_;
  Supervisor& supervisor_;
  const std::map<std::string, std::string> env_;
  const std::string temp_base_;
  const Duration retention_;
  const Duration stream_deadline_;
  // Loop thread.
  std::function<void()> drained_;
  int shutdown_calls_ = 0;
  int followers_ = 0;
  std::atomic<size_t> follow_extra_bytes_{0};
  std::map<const JobLog*, std::weak_ptr<LogMessages>> log_messages_;
  EventLoop::TimerId stream_timer_ = 0;
  bool stream_deadline_passed_ = false;
  // Once every job and stream has ended, the jobs' Status is still answered until no call came
  // for a moment (ArmStatusLinger): a client that followed a job to its end asks for it next.
  EventLoop::TimerId linger_timer_ = 0;
  std::optional<Clock::time_point> linger_started_;
  bool linger_over_ = false;
  bool followed_at_shutdown_ = false;  // a log stream was open when the shutdown began

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;  // guarded by mu_
  bool shutting_down_ = false;                        // guarded by mu_
};

}  // namespace sr::service
