#include "engine/job_run.h"

namespace sr {

JobRun::JobRun(EventLoop& loop, Supervisor& supervisor, OutputSink& sink, Observer* observer)
    : loop_(loop), engine_(loop, supervisor, sink, observer) {}

JobRun::~JobRun() {
  if (timeout_timer_) loop_.CancelTimer(timeout_timer_);
  if (warn_timer_) loop_.CancelTimer(warn_timer_);
}

void JobRun::Start(stepfile::StepFile root, JobOptions options,
                   std::function<void(RunOutcome)> on_end) {
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
  if (!running_) return {};
  return engine_.Cancel(forced ? CancelRequest::Forced(reason)
                               : CancelRequest::Graceful(reason, options_.run.grace));
}

void JobRun::Warn() {
  if (!running_ || engine_.cancel_request()) return;
  engine_.Warn(options_.warn_signal);
}

std::optional<proto::Termination> JobRun::Termination() const {
  if (succeeded_) return std::nullopt;  // a cancel that came too late to stop anything
  return engine_.Termination();
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
  auto cb = std::move(on_end_);
  on_end_ = nullptr;
  if (cb) cb(std::move(outcome));
}

}  // namespace sr
