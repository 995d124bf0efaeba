// One job of the service: its validated request, its files, its log, and the Status snapshot
// clients read. The run itself — timeout, warning, cancel, termination record — is the engine's
// JobRun; this class is its edge. Internal to src/service (see service.h for the behaviour).
//
// Threading: everything runs on the event-loop thread except Snapshot() and Summary(), which any
// gRPC thread may call: they read the proto::Status the loop publishes (under the job's mutex) at
// every change of state — the start, a cancel, the end. A step starting or ending only marks the
// result tree stale: the tree is copied when someone asks (FreshSnapshot), not at every step,
// which made a job of n steps copy n trees of up to n results each. A cancel and the end publish
// the outline alone (state, error, times, cancel time) and leave the trees to FreshSnapshot too.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/engine.h"
#include "engine/job_run.h"
#include "log/log.h"
#include "loop/loop.h"
#include "proto/step.pb.h"
#include "stepfile/stepfile.h"
#include "engine/cancel.h"
#include "supervisor/supervisor.h"
#include "util/result.h"
#include "util/time.h"

namespace sr::service {

/// A RunRequest, validated; nothing exists on disk yet.
struct JobRequest {
  std::string id;
  stepfile::StepFile root;
  /// The job's directory (JobDir) and the git cache; set by the service, not the request.
  std::string dir, cache_dir;
  /// Job work dir (created with mkdir -p 0700); "" = the server's cwd.
  std::string work_dir;
  /// Where the root's relative references resolve ("" = the server's cwd).
  std::string root_step_dir;
  std::map<std::string, std::string> env;       // server env + CI_STEPS_LOG_LEVEL + request env
  std::map<std::string, std::string> job_vars;  // `${{ job.X }}`; file variables added by Setup
  std::vector<std::pair<std::string, std::string>> file_vars;  // key, content
  std::vector<std::string> secrets;             // values of masked variables
  Duration grace = std::chrono::seconds(30);    // cancel signal → SIGKILL; 0 = kill at once
  Duration timeout{0};                          // 0 = none
  Duration warn_before{0};                      // 0 = no warning (needs a timeout)
  int warn_signal = 0;                          // 0 = none
  ResourceLimits resources;                     // RunRequest.resources; 0 = no limit
};

/// Validates `request` (id, step text, durations, variables). `server_env` is the base
/// environment. Errors are kInvalid and name the problem (and its line for step text).
Result<JobRequest> ParseRunRequest(const proto::RunRequest& request,
                                   const std::map<std::string, std::string>& server_env);

/// `<temp_base>/step-runner-output-<id>`.
std::string JobDir(const std::string& temp_base, const std::string& id);

class Job : private Observer {
 public:
  explicit Job(std::string id);
  ~Job() override;
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  const std::string& id() const { return id_; }

  /// Any thread: the latest published status. Shared and never changed once published, so a
  /// caller copies it outside every lock. Its result tree may be behind by the steps that
  /// started or ended since the last publish, and is left out after a cancel or the end until
  /// someone asks for it; FreshSnapshot() is never behind.
  std::shared_ptr<const proto::Status> Snapshot() const;
  /// Any thread: the latest published status without its `result` and `termination` trees, for
  /// the listing of all jobs (whose size must not grow with the jobs' step counts).
  proto::Status Summary() const;

  // ---- loop thread only ----

  /// The status as of now: publishes first if a step started or ended since the last publish.
  std::shared_ptr<const proto::Status> FreshSnapshot();

  /// Creates the work dir, the job dir, the log and the file variables. On error, removes what
  /// it created and returns the error.
  Status Setup(JobRequest& request);
  /// Runs the job. `on_end` is called once the engine's task has finished (every process of the
  /// job is gone), after the log was closed and the final status published.
  void Start(EventLoop& loop, Supervisor& supervisor, JobRequest request,
             std::function<void()> on_end);
  /// Requests a cancel, or escalates one in progress. No-op unless running.
  void Cancel(CancelReason reason, bool forced);
  bool running() const { return running_; }
  bool ended() const { return ended_; }
  /// The log, for followers (null before Setup).
  std::shared_ptr<JobLog> log() const { return log_; }
  /// The first error writing the job's output to its log, if any (the log keeps the bytes it
  /// could write; this says that some are missing).
  std::optional<Error> log_error() const;
  /// Removes the job's directory (and drops the job's hold on its log). Never while running.
  /// An error names the job and the directory; what is left of it keeps its owner mark, so a
  /// later call, a Run of the same id or the next server's sweep removes it.
  [[nodiscard]] Status RemoveFiles();
  /// Once the job is forgotten: its records (the published status, the result tree) are freed
  /// on the loop's helper thread — megabytes of values take milliseconds to free (contract
  /// 7.4). Afterwards Snapshot() holds the summary only. Never while running.
  void ReleaseRecords(EventLoop& loop);

  /// Callbacks waiting for the end (Close of a running job). The service runs them.
  std::vector<std::function<void()>> end_waiters;
  /// Set (under the service's registry lock) once a Close of this job was accepted.
  std::atomic<bool> closing{false};
  /// The retention timer once the job ended (0 = none).
  EventLoop::TimerId retention_timer = 0;

 private:
  class LogSink;
  void StepStarted(const std::string& name) override;
  void StepFinished(const std::string& name, proto::StepResult::Status status,
                    Duration took, const proto::StepResult& result) override;
  void Warned() override { stale_ = true; }
  void Finish(RunOutcome outcome);
  void Publish();
  // The outline alone (and the cancel time): what the listing shows, without building trees.
  void PublishOutline();
  void AddCancelTime(proto::Status& s) const;
  void Store(proto::Status s);
  // State, error and times: the start of every snapshot, and alone the log's end note
  // (service.h kJobEndTrailer).
  proto::Status Outline() const;

  const std::string id_;
  std::string dir_;                 // the job dir once Setup created it
  std::vector<std::string> created_dirs_;  // by Setup's mkdir -p, innermost last
  std::shared_ptr<JobLog> log_;
  std::unique_ptr<LogSink> sink_;
  std::unique_ptr<JobRun> run_;
  EventLoop* loop_ = nullptr;
  bool running_ = false, ended_ = false;
  bool stale_ = false;  // the published result tree or termination record is behind

  // What Publish() turns into a proto::Status.
  proto::StepResult::Status state_ = proto::StepResult::unspecified;
  std::optional<std::chrono::system_clock::time_point> start_time_, end_time_;
  std::optional<proto::StatusError> error_;
  std::optional<proto::StepResult> final_result_;
  std::function<void()> on_end_;

  mutable std::mutex mu_;
  std::shared_ptr<const proto::Status> published_;  // guarded by mu_ (the pointer)
};

}  // namespace sr::service
