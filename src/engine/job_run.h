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

#include "engine/engine.h"

namespace sr {

struct JobOptions {
  RunOptions run;  // run.grace is the job's grace
  /// Cancel with reason timed_out after this long; 0 = no timeout.
  Duration timeout{0};
  /// With a timeout: warn this long before it (Engine::Warn); 0 = no warning.
  Duration warn_before{0};
  /// The signal sent at the warning; 0 = none (diagnose steps only).
  int warn_signal = 0;
};

class JobRun {
 public:
  JobRun(EventLoop& loop, Supervisor& supervisor, OutputSink& sink, Observer* observer = nullptr);
  ~JobRun();
  JobRun(const JobRun&) = delete;
  JobRun& operator=(const JobRun&) = delete;

  /// Starts the run. `on_end` is called once, on the loop, when the run has ended and every
  /// process of it is gone; a cancel whose reason is the timeout ends as kTimedOut.
  void Start(stepfile::StepFile root, JobOptions options, std::function<void(RunOutcome)> on_end);

  /// Requests a cancel (the job's grace, or SIGKILL now when forced), or escalates the one in
  /// progress. No-op unless running. Returns what it did (Effect::changed false: nothing).
  CancelSource::Effect Cancel(CancelReason reason, bool forced);

  bool running() const { return running_; }
  /// The cancel request, once there is one.
  const std::optional<CancelRequest>& cancel_request() const { return engine_.cancel_request(); }
  /// The result tree so far (masked).
  proto::StepResult Snapshot() const { return engine_.Snapshot(); }
  /// The termination record (masked); unset when no cancel or warning happened, or when the
  /// run succeeded in the end.
  std::optional<proto::Termination> Termination() const;

 private:
  void Warn();
  void End(RunOutcome outcome);

  EventLoop& loop_;
  Engine engine_;
  JobOptions options_;
  EventLoop::TimerId timeout_timer_ = 0, warn_timer_ = 0;
  bool running_ = false;
  bool succeeded_ = false;
  std::function<void(RunOutcome)> on_end_;
};

}  // namespace sr
