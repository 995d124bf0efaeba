// Cancellation as a plain value. A CancelSource belongs to a job (or a CLI run); everything that
// can be cancelled — a process tree, a builtin's timer, the step loop — subscribes to it.
// Single-threaded: use it on the event-loop thread only.
#pragma once

#include <chrono>
#include <csignal>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "util/time.h"

namespace sr {

/// Why a cancel was requested. Mirrors proto Termination.Reason.
// kStepTimedOut: a `run:` item's own `timeout:` (contract 8.4), on that step's own source.
enum class CancelReason { kRequested, kTimedOut, kServerShutdown, kClosed, kStepTimedOut };
const char* CancelReasonName(CancelReason r);  // "cancel_requested", "timed_out", ...

/// One cancel request as subscribers see it. A later request may escalate an earlier one:
/// `forced` becomes true (SIGKILL now) or the grace gets shorter; it never gets longer.
struct CancelRequest {
  CancelReason reason = CancelReason::kRequested;
  bool forced = false;                    // skip the grace: SIGKILL now
  Duration grace = std::chrono::seconds(30);  // between the cancel signal and SIGKILL
  Clock::time_point requested_at{};       // steady clock, for deadlines
  std::chrono::system_clock::time_point requested_wall{};  // for records shown to users
};

class CancelSource {
 public:
  using Listener = std::function<void(const CancelRequest&)>;

  /// RAII: unsubscribes on destruction. Must not outlive the source.
  class Subscription {
   public:
    Subscription() = default;
    Subscription(CancelSource* source, uint64_t id) : source_(source), id_(id) {}
    Subscription(Subscription&& o) noexcept;
    Subscription& operator=(Subscription&& o) noexcept;
    ~Subscription();

   private:
    CancelSource* source_ = nullptr;
    uint64_t id_ = 0;
  };

  /// Requests a cancel, or escalates one in progress (forced, shorter grace). The first request's
  /// reason is kept. Listeners are called synchronously with the effective request.
  void Cancel(CancelRequest request);

  bool requested() const { return current_.has_value(); }
  bool forced() const { return current_ && current_->forced; }
  const std::optional<CancelRequest>& current() const { return current_; }

  /// Who acts on a cancel and who only reports it. Reporters run after every actor, so a log
  /// line or a /proc scan never delays the signals the actors send.
  enum class Role { kActor, kReporter };

  /// Calls `listener` on every Cancel() from now on, and at once if a cancel is already pending.
  [[nodiscard]] Subscription Subscribe(Listener listener, Role role = Role::kActor);

 private:
  struct Entry {
    Listener listener;
    Role role;
  };
  void Unsubscribe(uint64_t id) { listeners_.erase(id); }
  std::optional<CancelRequest> current_;
  std::map<uint64_t, Entry> listeners_;
  uint64_t next_id_ = 1;
};

}  // namespace sr
