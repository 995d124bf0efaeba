#include "engine/job_run.h"

namespace sr {

JobRun::JobRun(EventLoop& loop, Supervisor& supervisor, OutputSink& sink, Observer* observer)
    : loop_(loop), engine_(loop, supervisor, sink, observer), sink_(sink) {}

JobRun::~JobRun() {
  if (timeout_timer_) loop_.CancelTimer(timeout_timer_);
  if (warn_timer_) loop_.CancelTimer(warn_timer_);
}

void JobRun::Start(stepfile::StepFile root, JobOptions options,
                   std::function<void(RunOutcome)> on_end) {
  if (options.docker) StartDocker(options);
  options_ = options;
  on_end_ = std::move(on_end);
  running_ = true;
  if (options_.timeout.count() > 0) {
    timeout_timer_ = loop_.After(options_.timeout, [this] {
      timeout_timer_ = 0;
      if (!running_ || engine_.cancel_request()) return;
      engine_.Cancel(CancelRequest::Graceful(CancelReason::kTimedOut, options_.run.grace));
    });
    if (options_.warn_before.count() > 0 && options_.warn_before < options_.timeout) {
      warn_timer_ = loop_.After(options_.timeout - options_.warn_before, [this] {
        warn_timer_ = 0;
        Warn();
      });
    }
  }
  StartTask<RunOutcome>(engine_.Run(std::move(root), std::move(options.run)),
                        [this](RunOutcome outcome) { End(std::move(outcome)); });
}

CancelSource::Effect JobRun::Cancel(CancelReason reason, bool forced) {
  if (!running_) {
    // The steps have ended and the containers are stopping: a forced cancel kills them now.
    if (forced && stopping_containers_) docker_->Force();
    return {};
  }
  return engine_.Cancel(forced ? CancelRequest::Forced(reason)
                               : CancelRequest::Graceful(reason, options_.run.grace));
}

void JobRun::FailInternal(Error error) {
  if (!running_ || internal_error_) return;
  error.kind = Error::Kind::kInternal;
  internal_error_ = std::move(error);
  loop_.Post([weak = std::weak_ptr<JobRun*>(self_)] {
    auto self = weak.lock();
    if (!self || !(*self)->running_) return;
    JobRun& run = **self;
    run.engine_.Cancel(CancelRequest::Graceful(CancelReason::kInternalError, run.options_.run.grace));
  });
}

void JobRun::Warn() {
  if (!running_ || engine_.cancel_request()) return;
  engine_.Warn(options_.warn_signal);
}

std::optional<proto::Termination> JobRun::Termination() const {
  std::optional<proto::Termination> t;
  if (!succeeded_) t = engine_.Termination();  // else a cancel that came too late to stop anything
  if (containers_.empty()) return t;
  if (!t) {
    t.emplace();
    t->set_reason(proto::Termination::step_ended);  // they outlived the job's steps
  }
  for (const auto& c : containers_) *t->add_containers() = c;
  return t;
}

void JobRun::StartDocker(JobOptions& options) {
  docker::GuardOptions g;
  g.daemon_socket = options.docker->daemon_socket;
  g.socket_path = options.docker->socket_path;
  g.job_id = options.docker->job_id;
  OutputSink* sink = &sink_;
  g.log = [sink](std::string_view line) {
    sink->Write(OutputStream::kStdout, std::string(line) + "\n");
  };
  auto guard = docker::DockerGuard::Start(loop_, std::move(g));
  if (!guard.ok()) {
    sink_.Write(OutputStream::kStdout, "step-runner: " + guard.error().message +
                                           "; the steps get DOCKER_HOST unchanged\n");
    return;
  }
  docker_ = std::move(*guard);
  options.run.base_env["DOCKER_HOST"] = docker_->docker_host();
}

void JobRun::StopContainers(RunOutcome outcome) {
  // What is left of the job's grace: all of it when the job was not cancelled.
  Duration remaining = options_.run.grace;
  bool forced = false;
  if (const auto& request = engine_.cancel_request()) {
    remaining = request->kill.Left(Clock::now());
    forced = request->forced();
  }
  stopping_containers_ = true;
  auto held = std::make_shared<RunOutcome>(std::move(outcome));
  docker_->Stop(remaining, forced, [this, held](std::vector<docker::ContainerRecord> records) {
    stopping_containers_ = false;
    containers_ = std::move(records);
    // The root result carries the job's record too (step-results.json of `run`).
    if (!containers_.empty()) *held->result.mutable_termination() = *Termination();
    Finish(std::move(*held));
  });
}

void JobRun::End(RunOutcome outcome) {
  running_ = false;
  if (timeout_timer_) loop_.CancelTimer(timeout_timer_);
  if (warn_timer_) loop_.CancelTimer(warn_timer_);
  timeout_timer_ = warn_timer_ = 0;
  succeeded_ = !outcome.error;
  // Classification uses what the runner did: a cancel whose reason was the timeout is a
  // timeout, whatever the step printed.
  const auto& request = engine_.cancel_request();
  if (outcome.error && outcome.error->kind == Error::Kind::kCancelled && request &&
      request->reason == CancelReason::kTimedOut) {
    outcome.error->kind = Error::Kind::kTimedOut;
  }
  if (internal_error_) {  // whatever the steps did, the job's output is incomplete
    outcome.error = *internal_error_;
    succeeded_ = false;
  }
  // The root result stands for the job: its status is the job's final state (contract 2), so
  // a timeout or an internal error, which end the job `failure`, leave the root `failure` too
  // (it said `cancelled` beside a job `failure`). The steps the cancel stopped inside the tree
  // stay `cancelled`: that is what happened to them (docs/cancellation.md).
  if (outcome.error && outcome.error->kind != Error::Kind::kCancelled &&
      outcome.result.status() == proto::StepResult::cancelled) {
    outcome.result.set_status(proto::StepResult::failure);
  }
  if (docker_) return StopContainers(std::move(outcome));
  Finish(std::move(outcome));
}

void JobRun::Finish(RunOutcome outcome) {
  auto cb = std::move(on_end_);
  on_end_ = nullptr;
  if (cb) cb(std::move(outcome));
}

}  // namespace sr
