// The job driver: one run of a step file as a job, the same for `run`/`ci` on the command line
// and for a job of the service. It owns what makes a run a job: the timeout, the warning before
// it, the grace, and the cancel (requested, escalated, or by the timeout), carried out by the
// cancel policy (engine/cancel.h). Its caller keeps only its edge: the terminal, or the job's
// files, log and clients.
//
// The cancel path goes one way: caller → Cancel → the engine's cancel domain → each running
// step's process tree (Stop) → the supervisor's facts when the tree ends → the termination
// record. Nothing calls back into the caller except Observer and on_end.
//
// Threading: the event-loop thread only.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "docker/docker.h"
#include "engine/engine.h"

namespace sr {

/// The job's Docker endpoint (contract section 9): containers it starts stop with it.
struct DockerOptions {
  std::string daemon_socket;  // the real daemon (docker::DaemonToGuard)
  std::string socket_path;    // the job's endpoint, e.g. <job dir>/docker.sock
  std::string job_id;         // the value of the io.step-runner.job label
};

struct JobOptions {
  RunOptions run;  // run.grace is the job's grace
  /// Cancel with reason timed_out after this long; 0 = no timeout.
  Duration timeout{0};
  /// With a timeout: warn this long before it (Engine::Warn); 0 = no warning.
  Duration warn_before{0};
  /// The signal sent at the warning; 0 = none (diagnose steps only).
  int warn_signal = 0;
  /// Unset: the steps get DOCKER_HOST as it is (no daemon, or passthrough).
  std::optional<DockerOptions> docker;
};

class JobRun {
 public:
  JobRun(EventLoop& loop, Supervisor& supervisor, OutputSink& sink, Observer* observer = nullptr);
  ~JobRun();
  JobRun(const JobRun&) = delete;
  JobRun& operator=(const JobRun&) = delete;

  /// Starts the run. `on_end` is called once, on the loop, when the run has ended and every
  /// process of it is gone — and, with a Docker endpoint, every container of the job was
  /// stopped and removed; a cancel whose reason is the timeout ends as kTimedOut.
  void Start(stepfile::StepFile root, JobOptions options, std::function<void(RunOutcome)> on_end);

  /// Requests a cancel (the job's grace, or SIGKILL now when forced), or escalates the one in
  /// progress. No-op unless running. Returns what it did (Effect::changed false: nothing).
  CancelSource::Effect Cancel(CancelReason reason, bool forced);
  /// Lost output is an error, never a success (contract section 7 item 2): the job's output or a
  /// result file could not be written. The first call cancels the job gracefully with reason
  /// internal_error (on a later loop turn: it may come from inside an output callback) and the
  /// run ends with `error` as kind kInternal, whatever its steps did. Later calls are ignored.
  void FailInternal(Error error);

  bool running() const { return running_; }
  /// Engine::SignalRunning: job control for `run` (Ctrl-Z stops the steps with the runner).
  size_t SignalRunning(int signo) { return running_ ? engine_.SignalRunning(signo) : 0; }
  /// The cancel request, once there is one.
  const std::optional<CancelRequest>& cancel_request() const { return engine_.cancel_request(); }
  /// The result tree so far (masked).
  proto::StepResult Snapshot() const { return engine_.Snapshot(); }
  /// After the end: the result tree, handed over (Engine::DetachResults).
  std::shared_ptr<void> DetachResults() { return engine_.DetachResults(); }
  /// The termination record (masked); unset when no cancel or warning happened, or when the
  /// run succeeded in the end — unless containers were stopped at its end: then it lists them
  /// (reason step_ended when no cancel came).
  std::optional<proto::Termination> Termination() const;

 private:
  void Warn();
  void End(RunOutcome outcome);
  void StartDocker(JobOptions& options);
  /// The job's end with a Docker endpoint: its containers stop, then `outcome` goes on.
  void StopContainers(RunOutcome outcome);
  void Finish(RunOutcome outcome);

  EventLoop& loop_;
  Engine engine_;
  JobOptions options_;
  EventLoop::TimerId timeout_timer_ = 0, warn_timer_ = 0;
  bool running_ = false;
  bool succeeded_ = false;
  std::function<void(RunOutcome)> on_end_;
  OutputSink& sink_;
  std::unique_ptr<docker::DockerGuard> docker_;
  bool stopping_containers_ = false;
  std::vector<docker::ContainerRecord> containers_;
  std::optional<Error> internal_error_;
  std::shared_ptr<JobRun*> self_ = std::make_shared<JobRun*>(this);  // for posted callbacks
};

}  // namespace sr
