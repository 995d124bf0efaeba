#include "supervisor/cancel.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sr {
namespace {

using namespace std::chrono_literals;

TEST(CancelSource, ReportersRunAfterEveryActorWhateverTheSubscriptionOrder) {
  CancelSource cancel;
  std::vector<std::string> calls;
  auto report = cancel.Subscribe([&](const CancelRequest&) { calls.push_back("report"); },
                                 CancelSource::Role::kReporter);
  auto first = cancel.Subscribe([&](const CancelRequest&) { calls.push_back("act1"); });
  auto second = cancel.Subscribe([&](const CancelRequest&) { calls.push_back("act2"); });
  cancel.Cancel(CancelRequest{CancelReason::kRequested, false, 5s, {}, {}});
  EXPECT_EQ(calls, (std::vector<std::string>{"act1", "act2", "report"}));
}

TEST(CancelSource, EscalationOnlyForcesOrShortens) {
  CancelSource cancel;
  int calls = 0;
  auto sub = cancel.Subscribe([&](const CancelRequest&) { ++calls; });
  cancel.Cancel(CancelRequest{CancelReason::kTimedOut, false, 10s, {}, {}});
  cancel.Cancel(CancelRequest{CancelReason::kRequested, false, 60s, {}, {}});  // longer: ignored
  EXPECT_EQ(calls, 1);
  cancel.Cancel(CancelRequest{CancelReason::kRequested, true, 0s, {}, {}});
  EXPECT_EQ(calls, 2);
  ASSERT_TRUE(cancel.current());
  EXPECT_TRUE(cancel.forced());
  EXPECT_EQ(cancel.current()->reason, CancelReason::kTimedOut);  // the first reason stays
}

TEST(CancelSource, ListenerUnsubscribedDuringACancelIsNotCalled) {
  CancelSource cancel;
  CancelSource::Subscription later;
  bool later_called = false;
  auto first = cancel.Subscribe([&](const CancelRequest&) { later = {}; });
  later = cancel.Subscribe([&](const CancelRequest&) { later_called = true; });
  cancel.Cancel(CancelRequest{});
  EXPECT_FALSE(later_called);
}

TEST(CancelSource, SubscribingAfterTheCancelCallsAtOnce) {
  CancelSource cancel;
  cancel.Cancel(CancelRequest{});
  bool called = false;
  auto sub = cancel.Subscribe([&](const CancelRequest&) { called = true; });
  EXPECT_TRUE(called);
}

}  // namespace
}  // namespace sr
