// The event loop every stage runs on: one thread, epoll, timers, and Post() for other threads.
//
// Everything that waits in step-runner — a child's exit, its output pipe, a grace period, a job
// timeout, a signal on the CLI — is an fd or a timer registered here, so one thread can supervise
// any number of jobs. Callbacks run on the loop thread and must not block.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "util/fd.h"
#include "util/result.h"
#include "util/time.h"

struct epoll_event;  // <sys/epoll.h>

namespace sr {

class EventLoop {
 public:
  using FdCallback = std::function<void(uint32_t epoll_events)>;
  using Callback = std::function<void()>;
  using WatchId = uint64_t;
  using TimerId = uint64_t;

  static Result<std::unique_ptr<EventLoop>> Create();
  ~EventLoop();

  /// Calls `cb` on the loop thread whenever `fd` is ready for `events` (EPOLLIN, ...).
  /// The fd is not owned; Unwatch before closing it.
  Result<WatchId> Watch(int fd, uint32_t events, FdCallback cb);
  void Unwatch(WatchId id);
  /// Unwatch for an fd that the caller closes right after, and whose open file no other
  /// descriptor refers to (a pipe's read end the runner alone holds): that close takes it out of
  /// the epoll set, so no epoll_ctl is made here.
  void UnwatchClosing(WatchId id);

  /// Calls `cb` once after `delay` (0 = on the next turn). Returns an id for CancelTimer.
  /// In each turn, timers already due run before the turn's fd events, and again after them.
  TimerId After(Duration delay, Callback cb);
  /// Calls `cb` once at `deadline`.
  TimerId At(Clock::time_point deadline, Callback cb);
  /// Cancelling an unknown or already-fired timer is a no-op.
  void CancelTimer(TimerId id);
  /// When the earliest timer is due; nullopt when none is armed. Loop thread only.
  std::optional<Clock::time_point> NextTimerDue() const {
    if (timers_.empty()) return std::nullopt;
    return timers_.begin()->first;
  }

  /// Thread-safe: runs `cb` on the loop thread soon.
  void Post(Callback cb);

  /// Runs `work` on the loop's helper thread, then `done` on the loop thread. For pure
  /// computation on data nothing on the loop touches meanwhile (a large expansion, contract 7.4):
  /// the loop serves everyone else while it runs. One helper thread, started on first use, runs
  /// the work items one at a time, in order; it is joined by the destructor.
  void Offload(Callback work, Callback done);

  /// Runs until Stop(). Returns at once if already stopped.
  void Run();
  /// Runs until `done()` is true (checked after every dispatched event) or Stop().
  void RunUntil(const std::function<bool()>& done);
  /// Thread-safe: makes Run()/RunUntil() return after the current callback.
  void Stop();

  bool InLoopThread() const;
  /// The turn running now (the callbacks of one wake-up), counted from 1; 0 outside a turn
  /// (before Run, or called from elsewhere). Work that many callbacks of one turn ask for may
  /// be done once per turn (the census's listing of the runner's children in a burst of stops).
  uint64_t turn() const { return in_turn_ ? turns_ : 0; }

  /// Calls `report` on the loop thread after every turn (the callbacks of one wake-up) that kept
  /// the loop busy longer than `threshold`: how long nobody else could be served (wall time),
  /// and how much of it was the loop thread's own CPU time (the rest: a loaded machine). A
  /// diagnosis aid (`STEP_RUNNER_DEBUG`); off by default, four clock reads per turn when on.
  void ReportBusyTurns(Duration threshold, std::function<void(Duration busy, Duration cpu)> report);

 private:
  EventLoop() = default;
  void RunOnce();
  void DrainPosted();
  /// How long the next wait may block: 0 with work posted, nullopt with nothing scheduled.
  std::optional<Duration> NextTimeout() const;
  /// epoll_pwait2 where the kernel has it (nanosecond timeouts), else epoll_wait.
  int Wait(::epoll_event* events, int max);
  void FireDueTimers();

  UniqueFd epoll_;
  UniqueFd wake_;  // eventfd: Post() and Stop() from other threads
  struct Watched {
    int fd;
    std::shared_ptr<FdCallback> cb;
  };
  std::unordered_map<WatchId, Watched> watches_;
  WatchId next_watch_ = 1;
  std::multimap<Clock::time_point, std::pair<TimerId, Callback>> timers_;
  std::unordered_map<TimerId, std::multimap<Clock::time_point, std::pair<TimerId, Callback>>::iterator>
      timer_index_;
  TimerId next_timer_ = 1;

  // The helper thread of Offload(): its queue, and whether it should end.
  std::mutex offload_mu_;
  std::condition_variable offload_cv_;
  std::deque<std::pair<Callback, Callback>> offloaded_;
  bool offload_stop_ = false;
  std::thread offload_thread_;

  mutable std::mutex posted_mu_;
  std::vector<Callback> posted_;
  bool stop_requested_ = false;  // guarded by posted_mu_
  bool pwait2_missing_ = false;
  uint64_t turns_ = 0;  // loop thread only
  bool in_turn_ = false;
  Duration busy_threshold_{0};
  std::function<void(Duration, Duration)> busy_report_;
  // Written by the thread that runs the loop, read by Post() from any thread.
  std::atomic<std::thread::id> loop_thread_;
};

}  // namespace sr
