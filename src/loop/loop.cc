#include "loop/loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <ctime>
#include <utility>

namespace sr {
namespace {
// Tag used in epoll_event.data.u64 for the wake-up eventfd; watch ids start at 1.
constexpr uint64_t kWakeTag = 0;
}  // namespace

Result<std::unique_ptr<EventLoop>> EventLoop::Create() {
  std::unique_ptr<EventLoop> loop(new EventLoop());  // private constructor
  loop->epoll_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!loop->epoll_.valid()) return ErrnoError("epoll_create1", errno);
  loop->wake_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!loop->wake_.valid()) return ErrnoError("eventfd", errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  if (::epoll_ctl(loop->epoll_.get(), EPOLL_CTL_ADD, loop->wake_.get(), &ev) != 0) {
    return ErrnoError("epoll_ctl", errno);
  }
  loop->loop_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  return loop;
}

EventLoop::~EventLoop() {
  {
    std::lock_guard<std::mutex> lock(offload_mu_);
    offload_stop_ = true;
  }
  offload_cv_.notify_all();
  if (offload_thread_.joinable()) offload_thread_.join();
}

void EventLoop::Offload(Callback work, Callback done) {
  std::lock_guard<std::mutex> lock(offload_mu_);
  offloaded_.emplace_back(std::move(work), std::move(done));
  if (!offload_thread_.joinable()) {
    offload_thread_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(offload_mu_);
      for (;;) {
        offload_cv_.wait(lock, [this] { return offload_stop_ || !offloaded_.empty(); });
        if (offloaded_.empty()) return;  // stopping, and nothing left
        auto [work, done] = std::move(offloaded_.front());
        offloaded_.pop_front();
        lock.unlock();
        work();
        Post(std::move(done));
        lock.lock();
      }
    });
  }
  offload_cv_.notify_one();
}

Result<EventLoop::WatchId> EventLoop::Watch(int fd, uint32_t events, FdCallback cb) {
  WatchId id = next_watch_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return ErrnoError("epoll_ctl add fd " + std::to_string(fd), errno);
  }
  watches_[id] = Watched{fd, std::make_shared<FdCallback>(std::move(cb))};
  return id;
}

void EventLoop::Unwatch(WatchId id) {
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
  watches_.erase(it);
}

void EventLoop::UnwatchClosing(WatchId id) { watches_.erase(id); }

EventLoop::TimerId EventLoop::After(Duration delay, Callback cb) {
  return At(Clock::now() + delay, std::move(cb));
}

EventLoop::TimerId EventLoop::At(Clock::time_point deadline, Callback cb) {
  TimerId id = next_timer_++;
  auto it = timers_.emplace(deadline, std::make_pair(id, std::move(cb)));
  timer_index_[id] = it;
  return id;
}

void EventLoop::CancelTimer(TimerId id) {
  auto it = timer_index_.find(id);
  if (it == timer_index_.end()) return;
  timers_.erase(it->second);
  timer_index_.erase(it);
}

void EventLoop::Post(Callback cb) {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    posted_.push_back(std::move(cb));
  }
  // The loop thread itself needs no wake-up: it runs what is posted at the end of this turn
  // (DrainPosted), or does not block in the next wait while something is posted (NextTimeout).
  // A finished step posts its on_exit this way, once per step.
  if (InLoopThread()) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
}

void EventLoop::Stop() {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    stop_requested_ = true;
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
}

bool EventLoop::InLoopThread() const {
  return std::this_thread::get_id() == loop_thread_.load(std::memory_order_relaxed);
}

void EventLoop::Run() {
  RunUntil([] { return false; });
}

void EventLoop::RunUntil(const std::function<bool()>& done) {
  loop_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(posted_mu_);
      if (stop_requested_) {
        stop_requested_ = false;
        return;
      }
    }
    if (done()) return;
    RunOnce();
  }
}

std::optional<Duration> EventLoop::NextTimeout() const {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    if (!posted_.empty() || stop_requested_) return Duration(0);
  }
  if (timers_.empty()) return std::nullopt;
  return std::max(Duration(0), std::chrono::duration_cast<Duration>(timers_.begin()->first -
                                                                     Clock::now()));
}

int EventLoop::Wait(epoll_event* events, int max) {
  const std::optional<Duration> wait = NextTimeout();
  if (!pwait2_missing_) {
    // epoll_pwait2 (Linux 5.11) takes nanoseconds: a grace timer fires when it is due, not up to
    // a millisecond later as epoll_wait's rounding would make it.
    timespec ts{};
    if (wait) {
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(*wait).count();
      ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    }
    int n = ::epoll_pwait2(epoll_.get(), events, max, wait ? &ts : nullptr, nullptr);
    if (n >= 0 || errno != ENOSYS) return n;
    pwait2_missing_ = true;
  }
  int ms = -1;
  if (wait) {
    // Round up so a timer never fires early and we do not spin on a sub-millisecond remainder.
    const auto up = std::chrono::ceil<std::chrono::milliseconds>(*wait).count();
    ms = up > INT_MAX ? INT_MAX : static_cast<int>(up);
  }
  return ::epoll_wait(epoll_.get(), events, max, ms);
}

namespace {
Duration ThreadCpuTime() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}
}  // namespace

void EventLoop::ReportBusyTurns(Duration threshold, std::function<void(Duration, Duration)> report) {
  busy_threshold_ = threshold;
  busy_report_ = std::move(report);
}

void EventLoop::RunOnce() {
  epoll_event events[64];
  int n = Wait(events, 64);
  ++turns_;
  in_turn_ = true;
  const bool timed = static_cast<bool>(busy_report_);
  const Clock::time_point woke = timed ? Clock::now() : Clock::time_point();
  const Duration cpu_at_wake = timed ? ThreadCpuTime() : Duration(0);
  // Timers that came due while the loop slept or worked go first: a deadline (a grace's
  // SIGKILL) must not wait behind a batch of fd events, which can be the reaping of hundreds
  // of processes killed just before it.
  FireDueTimers();
  for (int i = 0; i < n; ++i) {
    uint64_t tag = events[i].data.u64;
    if (tag == kWakeTag) {
      uint64_t count;
      [[maybe_unused]] ssize_t r = ::read(wake_.get(), &count, sizeof count);
      continue;
    }
    auto it = watches_.find(tag);
    if (it == watches_.end()) continue;  // unwatched by an earlier callback in this batch
    std::shared_ptr<FdCallback> cb = it->second.cb;  // keep alive if the callback unwatches
    (*cb)(events[i].events);
  }
  FireDueTimers();
  DrainPosted();
  in_turn_ = false;
  if (timed && busy_report_) {
    const Duration busy = Clock::now() - woke;
    if (busy > busy_threshold_) busy_report_(busy, ThreadCpuTime() - cpu_at_wake);
  }
}

void EventLoop::FireDueTimers() {
  auto now = Clock::now();
  while (!timers_.empty() && timers_.begin()->first <= now) {
    auto it = timers_.begin();
    Callback cb = std::move(it->second.second);
    timer_index_.erase(it->second.first);
    timers_.erase(it);
    cb();
  }
}

void EventLoop::DrainPosted() {
  std::vector<Callback> batch;
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    batch.swap(posted_);
  }
  for (auto& cb : batch) cb();
}

}  // namespace sr
