#include "loop/loop.h"

#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <unistd.h>

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
