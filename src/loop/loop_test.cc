#include "loop/loop.h"

#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "loop/task.h"

namespace sr {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<EventLoop> NewLoop() {
  auto loop = EventLoop::Create();
  EXPECT_TRUE(loop.ok());
  return std::move(loop).value();
}

TEST(EventLoop, TimersFireInDeadlineOrderAndCancelledOnesNever) {
  auto loop = NewLoop();
  std::vector<int> fired;
  loop->After(20ms, [&] { fired.push_back(2); });
  loop->After(0ms, [&] { fired.push_back(1); });
  EventLoop::TimerId never = loop->After(10ms, [&] { fired.push_back(99); });
  loop->CancelTimer(never);
  loop->CancelTimer(never);  // twice: a no-op
  loop->RunUntil([&] { return fired.size() == 2; });
  EXPECT_EQ(fired, (std::vector<int>{1, 2}));
}

TEST(EventLoop, PostFromAnotherThreadRunsOnTheLoopThread) {
  auto loop = NewLoop();
  bool ran = false, on_loop = false;
  std::thread t([&] {
    loop->Post([&] {
      ran = true;
      on_loop = loop->InLoopThread();
    });
  });
  loop->RunUntil([&] { return ran; });
  t.join();
  EXPECT_TRUE(on_loop);
}

TEST(EventLoop, WatchReportsReadinessUntilUnwatched) {
  auto loop = NewLoop();
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  int calls = 0;
  auto w = loop->Watch(fds[0], EPOLLIN, [&](uint32_t) {
    char c;
    ASSERT_EQ(::read(fds[0], &c, 1), 1);
    ++calls;
  });
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(::write(fds[1], "ab", 2), 2);
  loop->RunUntil([&] { return calls == 2; });
  loop->Unwatch(*w);
  ASSERT_EQ(::write(fds[1], "c", 1), 1);
  bool later = false;
  loop->After(10ms, [&] { later = true; });
  loop->RunUntil([&] { return later; });
  EXPECT_EQ(calls, 2);
  ::close(fds[0]);
  ::close(fds[1]);
}

// A deadline that came due while the loop was busy runs before the fd events of the turn that
// finds it due: a grace's SIGKILL must not wait behind a batch of reaping.
TEST(EventLoop, DueTimersRunBeforeTheFdEventsOfTheSameTurn) {
  auto loop = NewLoop();
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::vector<std::string> order;
  auto w = loop->Watch(fds[0], EPOLLIN, [&](uint32_t) {
    char c;
    ASSERT_EQ(::read(fds[0], &c, 1), 1);
    order.push_back("fd");
  });
  ASSERT_TRUE(w.ok());
  loop->After(1ms, [&] { order.push_back("timer"); });
  ASSERT_EQ(::write(fds[1], "a", 1), 1);
  std::this_thread::sleep_for(20ms);  // both are ready before the loop's first wait
  loop->RunUntil([&] { return order.size() == 2; });
  EXPECT_EQ(order, (std::vector<std::string>{"timer", "fd"}));
  loop->Unwatch(*w);
  ::close(fds[0]);
  ::close(fds[1]);
}

// A closed fd whose watch was dropped without epoll_ctl is gone from the epoll set: its hang-up
// is never reported, and a new fd with the same number is watched normally.
TEST(EventLoop, UnwatchClosingThenCloseEndsTheWatch) {
  auto loop = NewLoop();
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  int old_calls = 0;
  auto w = loop->Watch(fds[0], EPOLLIN, [&](uint32_t) { ++old_calls; });
  ASSERT_TRUE(w.ok());
  loop->UnwatchClosing(*w);
  const int number = fds[0];
  ::close(fds[0]);
  ::close(fds[1]);  // a hang-up, had the read end stayed in the set
  int again[2];
  ASSERT_EQ(::pipe(again), 0);
  ASSERT_EQ(again[0], number);  // the lowest free number: the one just closed
  int calls = 0;
  auto w2 = loop->Watch(again[0], EPOLLIN, [&](uint32_t) {
    char c;
    ASSERT_EQ(::read(again[0], &c, 1), 1);
    ++calls;
  });
  ASSERT_TRUE(w2.ok()) << w2.error().message;
  ASSERT_EQ(::write(again[1], "x", 1), 1);
  bool later = false;
  loop->After(10ms, [&] { later = true; });
  loop->RunUntil([&] { return later && calls == 1; });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(old_calls, 0);
  loop->Unwatch(*w2);
  ::close(again[0]);
  ::close(again[1]);
}

// A callback posted from the loop thread runs in the same turn, without waking the loop.
TEST(EventLoop, PostFromTheLoopThreadRunsWithoutAWakeUp) {
  auto loop = NewLoop();
  int step = 0;
  loop->Post([&] {
    step = 1;
    loop->Post([&] { step = 2; });
  });
  loop->RunUntil([&] { return step == 2; });  // would block forever if the second were lost
  EXPECT_EQ(step, 2);
}

// turn(): 0 outside the loop's turns; the callbacks of one turn see one number, a later turn a
// larger one (the census shares one listing of the runner's children among a turn's stops).
TEST(EventLoop, TheCallbacksOfOneTurnSeeOneTurnNumber) {
  auto loop = NewLoop();
  EXPECT_EQ(loop->turn(), 0u);
  uint64_t first = 0, second = 0, later = 0;
  loop->Post([&] { first = loop->turn(); });
  loop->Post([&] {
    second = loop->turn();
    loop->Post([&] { later = loop->turn(); });  // drained in the next turn
  });
  loop->RunUntil([&] { return later != 0; });
  EXPECT_NE(first, 0u);
  EXPECT_EQ(first, second);
  EXPECT_GT(later, second);
  EXPECT_EQ(loop->turn(), 0u);
}

TEST(EventLoop, StopFromAnotherThreadEndsRun) {
  auto loop = NewLoop();
  std::thread t([&] { loop->Stop(); });
  loop->Run();  // returns: the stop was requested
  t.join();
  SUCCEED();
}

Task<int> Twice(EventLoop& loop, int v) {
  int got = co_await AwaitCallback<int>([&](std::function<void(int)> resume) {
    loop.After(1ms, [resume, v] { resume(v * 2); });
  });
  co_return got;
}

TEST(Task, AwaitsACallbackOnTheLoop) {
  auto loop = NewLoop();
  std::optional<int> result;
  StartTask<int>(Twice(*loop, 21), [&](int v) { result = v; });
  loop->RunUntil([&] { return result.has_value(); });
  EXPECT_EQ(result, 42);
}

TEST(Loop, OffloadRunsTheWorkOffTheLoopThenDoneOnIt) {
  auto loop = NewLoop();
  std::thread::id work_thread, done_thread;
  bool done = false;
  loop->Offload([&] { work_thread = std::this_thread::get_id(); },
                [&] {
                  done_thread = std::this_thread::get_id();
                  done = true;
                });
  loop->RunUntil([&] { return done; });
  EXPECT_NE(work_thread, std::this_thread::get_id());
  EXPECT_EQ(done_thread, std::this_thread::get_id());
}

}  // namespace
}  // namespace sr
