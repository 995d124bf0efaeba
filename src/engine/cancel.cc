#include "engine/cancel.h"

#include <vector>

namespace sr {

const char* CancelReasonName(CancelReason r) {
  switch (r) {
    case CancelReason::kRequested: return "cancel_requested";
    case CancelReason::kTimedOut: return "timed_out";
    case CancelReason::kServerShutdown: return "server_shutdown";
    case CancelReason::kClosed: return "closed";
    case CancelReason::kInternalError: return "internal_error";
    case CancelReason::kStepTimedOut: return "step_timed_out";
    case CancelReason::kJobEnded: return "job_ended";
  }
  return "cancel_requested";
}

CancelRequest CancelRequest::Graceful(CancelReason reason, Duration grace, Clock::time_point now) {
  return CancelRequest{reason, KillDeadline::After(now, grace), now, WallNow()};
}

CancelRequest CancelRequest::Forced(CancelReason reason, Clock::time_point now) {
  return CancelRequest{reason, KillDeadline{now, true}, now, WallNow()};
}

Duration CancelRequest::grace() const {
  if (kill.at <= requested_at) return Duration(0);
  return std::chrono::duration_cast<Duration>(kill.at - requested_at);
}

StopOrder StopOrderFor(const CancelRequest& job, const StepStop& step) {
  // Graces count from the request, so every tree of one cancel gets the same deadline for the
  // same grace, and the record shows the grace as asked for.
  const Clock::time_point from = job.requested_at;
  StopOrder order{step.signal > 0 ? step.signal : SIGTERM, from, job.kill};
  if (step.kill_at_once) order.kill.Tighten(KillDeadline{from, true});
  if (step.grace) order.kill.Tighten(KillDeadline::After(from, *step.grace));
  return order;
}

StopPolicy LeftoverPolicy(const StepStop& step, Duration job_grace, Duration leftover_grace) {
  KillDeadline kill = KillDeadline::After(Clock::time_point{}, job_grace);
  kill.Tighten(KillDeadline::After(Clock::time_point{}, leftover_grace));
  if (step.grace) kill.Tighten(KillDeadline::After(Clock::time_point{}, *step.grace));
  if (step.kill_at_once) kill.Tighten(KillDeadline::After(Clock::time_point{}, Duration(0)));
  return StopPolicy{step.signal > 0 ? step.signal : SIGTERM, kill.Left(Clock::time_point{})};
}

CancelSource::CancelSource(CancelSource& parent, Follow follow) : parent_(&parent) {
  parent_id_ = parent.next_id_++;
  parent.children_[parent_id_] = {this, follow};
  if (parent.current_) {
    const CancelRequest& r = *parent.current_;
    if (follow == Follow::kAsForced) Cancel(CancelRequest::Forced(r.reason));
    if (follow == Follow::kForcedOnly && r.forced()) Cancel(r);
    if (follow == Follow::kAll) Cancel(r);
  }
}

CancelSource::~CancelSource() {
  if (parent_) parent_->Leave(parent_id_);
}

CancelSource::Registration::Registration(Registration&& o) noexcept
    : source_(std::exchange(o.source_, nullptr)), id_(o.id_) {}

CancelSource::Registration& CancelSource::Registration::operator=(Registration&& o) noexcept {
  if (this != &o) {
    if (source_) source_->Leave(id_);
    source_ = std::exchange(o.source_, nullptr);
    id_ = o.id_;
  }
  return *this;
}

CancelSource::Registration::~Registration() {
  if (source_) source_->Leave(id_);
}

void CancelSource::Leave(uint64_t id) {
  trees_.erase(id);
  listeners_.erase(id);
  children_.erase(id);
}

CancelSource::Effect CancelSource::Cancel(CancelRequest request) {
  Effect effect;
  if (!current_) {
    if (request.requested_at == Clock::time_point{}) request.requested_at = Clock::now();
    if (request.requested_wall == std::chrono::system_clock::time_point{}) {
      request.requested_wall = WallNow();
    }
    current_ = request;
  } else if (!current_->kill.Tighten(request.kill)) {
    return effect;
  }
  effect.changed = true;
  Deliver(&effect);
  return effect;
}

void CancelSource::StopTree(const Tree& t, Effect* effect) const {
  const StopOrder order = StopOrderFor(*current_, t.stop);
  t.tree->Stop(order);
  effect->processes += t.tree->signalled();
  // What the tree sent: a grace of zero is SIGKILL alone, not the order's signal.
  if (const int sent = t.tree->stop_signal()) effect->signals.insert(sent);
  const Duration grace = order.kill.Left(order.issued_at);
  effect->grace = std::max(effect->grace.value_or(Duration(0)), grace);
}

void CancelSource::Deliver(Effect* effect) {
  const CancelRequest effective = *current_;
  // Trees first: their signals must not wait for anything else. Ids are copied because a stop
  // or a listener may leave the domain (or make others leave) meanwhile.
  std::vector<uint64_t> ids;
  for (const auto& [id, t] : trees_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = trees_.find(id);
    if (it != trees_.end()) StopTree(it->second, effect);
  }
  ids.clear();
  for (const auto& [id, c] : children_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = children_.find(id);
    if (it == children_.end()) continue;
    auto [child, follow] = it->second;
    Effect reached;
    if (follow == Follow::kAsForced) reached = child->Cancel(CancelRequest::Forced(effective.reason));
    if (follow == Follow::kForcedOnly && effective.forced()) reached = child->Cancel(effective);
    if (follow == Follow::kAll) reached = child->Cancel(effective);
    // What the child domains did is part of what this cancel did: a step with its own timeout,
    // a finally: list under a forced cancel (the log said "to 0 processes").
    effect->processes += reached.processes;
    effect->signals.insert(reached.signals.begin(), reached.signals.end());
    if (reached.grace) effect->grace = std::max(effect->grace.value_or(Duration(0)), *reached.grace);
  }
  ids.clear();
  for (const auto& [id, l] : listeners_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = listeners_.find(id);
    if (it == listeners_.end()) continue;
    Listener l = it->second;  // copy: the entry may go away during the call
    l(effective);
  }
}

CancelSource::Registration CancelSource::Register(std::shared_ptr<ProcessTree> tree,
                                                  StepStop stop) {
  const uint64_t id = next_id_++;
  Tree& t = trees_[id] = Tree{std::move(tree), stop};
  if (current_) {
    Effect ignored;
    StopTree(t, &ignored);
  }
  return Registration(this, id);
}

CancelSource::Subscription CancelSource::Subscribe(Listener listener) {
  const uint64_t id = next_id_++;
  listeners_[id] = listener;
  if (current_) listener(*current_);
  return Subscription(this, id);
}

}  // namespace sr
