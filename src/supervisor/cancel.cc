#include "supervisor/cancel.h"

#include <vector>

namespace sr {

const char* CancelReasonName(CancelReason r) {
  switch (r) {
    case CancelReason::kRequested: return "cancel_requested";
    case CancelReason::kTimedOut: return "timed_out";
    case CancelReason::kServerShutdown: return "server_shutdown";
    case CancelReason::kClosed: return "closed";
    case CancelReason::kStepTimedOut: return "step_timed_out";
  }
  return "cancel_requested";
}

CancelSource::Subscription::Subscription(Subscription&& o) noexcept
    : source_(std::exchange(o.source_, nullptr)), id_(o.id_) {}

CancelSource::Subscription& CancelSource::Subscription::operator=(Subscription&& o) noexcept {
  if (this != &o) {
    if (source_) source_->Unsubscribe(id_);
    source_ = std::exchange(o.source_, nullptr);
    id_ = o.id_;
  }
  return *this;
}

CancelSource::Subscription::~Subscription() {
  if (source_) source_->Unsubscribe(id_);
}

void CancelSource::Cancel(CancelRequest request) {
  if (!current_) {
    if (request.requested_at == Clock::time_point{}) request.requested_at = Clock::now();
    if (request.requested_wall == std::chrono::system_clock::time_point{}) {
      request.requested_wall = WallNow();
    }
    current_ = request;
  } else {
    // Escalate only: a second request can force or shorten the grace, never relax it.
    CancelRequest& cur = *current_;
    bool changed = false;
    if (request.forced && !cur.forced) cur.forced = changed = true;
    auto new_end = Clock::now() + request.grace;
    if (new_end < cur.requested_at + cur.grace) {
      cur.grace = std::chrono::duration_cast<Duration>(new_end - cur.requested_at);
      changed = true;
    }
    if (!changed) return;
  }
  // Iterate over a copy of the ids: a listener may unsubscribe itself or others meanwhile, and an
  // unsubscribed listener must not be called (its owner may be gone).
  // Actors first (in subscription order), reporters after them.
  std::vector<uint64_t> ids;
  for (Role role : {Role::kActor, Role::kReporter}) {
    for (auto& [id, entry] : listeners_) {
      if (entry.role == role) ids.push_back(id);
    }
  }
  const CancelRequest effective = *current_;
  for (uint64_t id : ids) {
    auto it = listeners_.find(id);
    if (it == listeners_.end()) continue;
    Listener l = it->second.listener;  // copy: the map entry may go away during the call
    l(effective);
  }
}

CancelSource::Subscription CancelSource::Subscribe(Listener listener, Role role) {
  uint64_t id = next_id_++;
  listeners_[id] = Entry{listener, role};
  if (current_) listener(*current_);
  return Subscription(this, id);
}

}  // namespace sr
