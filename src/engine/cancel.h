// Cancellation of a job, and the cancel policy: the one place that turns a job's cancel request
// into the stop orders the supervisor carries out.
//
// A CancelSource is a cancel domain: the job's `run:` steps share the job's source; a `finally:`
// list and a `diagnose:` list each have a child source that follows its parent only partly.
// What can be cancelled registers with the source of its domain: an exec step's process tree
// (with how its step wants to be stopped), a child domain, or — for in-process waits such as
// dist://sleep — a listener. Cancel() goes one way: policy → every registered tree's Stop →
// child domains → listeners. Nothing calls back into whoever requested the cancel.
//
// Single-threaded: use it on the event-loop thread only.
#pragma once

#include <chrono>
#include <csignal>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "supervisor/supervisor.h"
#include "util/kill_deadline.h"
#include "util/time.h"

namespace sr {

/// Why a job is cancelled. Mirrors proto Termination.Reason.
// kInternalError: the runner could not go on with the job (its log or a result file could not be
// written; contract section 7 item 2).
/// kStepTimedOut: a `run:` item's own `timeout:` (contract 8.4), in that item's own domain.
/// kJobEnded: the job's steps ended by themselves while `diagnose:` steps still ran; those are
/// killed then (they never outlive the job), and no timeout or cancel was the cause.
enum class CancelReason {
  kRequested,
  kTimedOut,
  kServerShutdown,
  kClosed,
  kInternalError,
  kStepTimedOut,
  kJobEnded,
};
const char* CancelReasonName(CancelReason r);  // "cancel_requested", "timed_out", ...

/// One cancel request of a job. A later request may escalate it (KillDeadline::Tighten): force
/// it, or bring its SIGKILL closer; never relax it. The first request's reason is kept.
struct CancelRequest {
  CancelReason reason = CancelReason::kRequested;
  KillDeadline kill;                                       // when SIGKILL comes, at the latest
  Clock::time_point requested_at{};                        // steady clock, for deadlines
  std::chrono::system_clock::time_point requested_wall{};  // for records shown to users

  static CancelRequest Graceful(CancelReason reason, Duration grace,
                                Clock::time_point now = Clock::now());
  static CancelRequest Forced(CancelReason reason, Clock::time_point now = Clock::now());
  bool forced() const { return kill.forced; }
  /// From the request to its SIGKILL deadline (0 for a cancel forced at once).
  Duration grace() const;
};

/// How a step wants its processes stopped (`cancel:` in its definition).
struct StepStop {
  int signal = SIGTERM;
  std::optional<Duration> grace;  // may only shorten what the job has left
  bool kill_at_once = false;      // the runner's own helpers (git): no grace
};

/// The cancel policy. A step's tree gets the step's signal; its SIGKILL comes when the job's
/// deadline comes or, sooner, when the step's own grace (counted from the request) has passed.
StopOrder StopOrderFor(const CancelRequest& job, const StepStop& step);
/// How processes left behind by a step's main process are stopped: the step's signal, and the
/// shortest of the step's grace, the job's grace and `leftover_grace`.
StopPolicy LeftoverPolicy(const StepStop& step, Duration job_grace, Duration leftover_grace);

class CancelSource {
 public:
  /// How a child domain follows its parent.
  enum class Follow {
    kForcedOnly,  // only a forced cancel reaches it (`finally:` steps)
    kAsForced,    // any cancel reaches it, as a forced one (`diagnose:` steps)
    kAll,         // every cancel reaches it as it is (a `run:` item with its own `timeout:`)
  };

  CancelSource() = default;
  /// A child domain of `parent`, registered with it until destroyed. Must not outlive it.
  CancelSource(CancelSource& parent, Follow follow);
  ~CancelSource();
  CancelSource(const CancelSource&) = delete;
  CancelSource& operator=(const CancelSource&) = delete;

  /// What one Cancel() did to the trees registered in this domain.
  struct Effect {
    bool changed = false;      // false: an escalation that tightened nothing
    size_t processes = 0;      // members that got a stop signal or SIGKILL so far
    std::set<int> signals;     // the first signal each tree got
    std::optional<Duration> grace;  // the longest grace any tree got (unset: no tree)
  };

  /// Requests a cancel, or escalates the one in progress, and carries it out.
  Effect Cancel(CancelRequest request);

  bool requested() const { return current_.has_value(); }
  bool forced() const { return current_ && current_->forced(); }
  const std::optional<CancelRequest>& current() const { return current_; }

  /// RAII: leaves the domain on destruction. Must not outlive the source.
  class Registration {
   public:
    Registration() = default;
    Registration(CancelSource* source, uint64_t id) : source_(source), id_(id) {}
    Registration(Registration&& o) noexcept;
    Registration& operator=(Registration&& o) noexcept;
    ~Registration();

   private:
    CancelSource* source_ = nullptr;
    uint64_t id_ = 0;
  };
  using Subscription = Registration;
  using Listener = std::function<void(const CancelRequest&)>;

  /// A running tree of this domain: stopped by the policy on every Cancel(), at once if a
  /// cancel is already pending.
  [[nodiscard]] Registration Register(std::shared_ptr<ProcessTree> tree, StepStop stop);
  /// An in-process waiter: called after the trees are stopped, at once if a cancel is pending.
  [[nodiscard]] Subscription Subscribe(Listener listener);

 private:
  struct Tree {
    std::shared_ptr<ProcessTree> tree;
    StepStop stop;
  };
  void Leave(uint64_t id);
  void StopTree(const Tree& t, Effect* effect) const;
  void Deliver(Effect* effect);

  std::optional<CancelRequest> current_;
  std::map<uint64_t, Tree> trees_;
  std::map<uint64_t, Listener> listeners_;
  std::map<uint64_t, std::pair<CancelSource*, Follow>> children_;
  uint64_t next_id_ = 1;
  CancelSource* parent_ = nullptr;
  uint64_t parent_id_ = 0;
};

}  // namespace sr
