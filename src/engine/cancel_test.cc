#include "engine/cancel.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sr {
namespace {

using namespace std::chrono_literals;

TEST(CancelSource, EscalationOnlyForcesOrShortens) {
  CancelSource cancel;
  int calls = 0;
  auto sub = cancel.Subscribe([&](const CancelRequest&) { ++calls; });
  const auto t0 = Clock::now();
  EXPECT_TRUE(cancel.Cancel(CancelRequest::Graceful(CancelReason::kTimedOut, 10s, t0)).changed);
  // Longer: ignored.
  EXPECT_FALSE(cancel.Cancel(CancelRequest::Graceful(CancelReason::kRequested, 60s, t0)).changed);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(cancel.current()->grace(), 10s);
  // Shorter: the deadline moves closer, the reason stays.
  EXPECT_TRUE(cancel.Cancel(CancelRequest::Graceful(CancelReason::kRequested, 4s, t0)).changed);
  EXPECT_EQ(cancel.current()->grace(), 4s);
  cancel.Cancel(CancelRequest::Forced(CancelReason::kRequested));
  EXPECT_EQ(calls, 3);
  ASSERT_TRUE(cancel.current());
  EXPECT_TRUE(cancel.forced());
  EXPECT_EQ(cancel.current()->reason, CancelReason::kTimedOut);  // the first reason stays
}

TEST(CancelSource, AStepDomainFollowsEveryCancelAndCanBeCancelledAlone) {
  // A `run:` item with its own timeout (contract 8.4): its own cancel stays in its domain.
  CancelSource job;
  CancelSource item(job, CancelSource::Follow::kAll);
  item.Cancel(CancelRequest::Graceful(CancelReason::kStepTimedOut, 5s));
  EXPECT_FALSE(job.requested());
  EXPECT_EQ(item.current()->reason, CancelReason::kStepTimedOut);
  CancelSource other(job, CancelSource::Follow::kAll);
  job.Cancel(CancelRequest::Graceful(CancelReason::kRequested, 30s));
  ASSERT_TRUE(other.requested());
  EXPECT_EQ(other.current()->reason, CancelReason::kRequested);
  EXPECT_FALSE(other.forced());
  job.Cancel(CancelRequest::Forced(CancelReason::kRequested));
  EXPECT_TRUE(item.forced());  // escalation reaches a domain already cancelling on its own
  CancelSource late(job, CancelSource::Follow::kAll);
  EXPECT_TRUE(late.forced()) << "a domain made during a cancel joins it";
}

TEST(CancelSource, ListenerUnsubscribedDuringACancelIsNotCalled) {
  CancelSource cancel;
  CancelSource::Subscription later;
  bool later_called = false;
  auto first = cancel.Subscribe([&](const CancelRequest&) { later = {}; });
  later = cancel.Subscribe([&](const CancelRequest&) { later_called = true; });
  cancel.Cancel(CancelRequest::Graceful(CancelReason::kRequested, 1s));
  EXPECT_FALSE(later_called);
}

TEST(CancelSource, SubscribingAfterTheCancelCallsAtOnce) {
  CancelSource cancel;
  cancel.Cancel(CancelRequest::Graceful(CancelReason::kRequested, 1s));
  bool called = false;
  auto sub = cancel.Subscribe([&](const CancelRequest&) { called = true; });
  EXPECT_TRUE(called);
}

TEST(CancelSource, ChildDomainsFollowAsTheySaid) {
  CancelSource job;
  CancelSource cleanup(job, CancelSource::Follow::kForcedOnly);
  CancelSource diagnose(job, CancelSource::Follow::kAsForced);
  job.Cancel(CancelRequest::Graceful(CancelReason::kTimedOut, 5s));
  EXPECT_FALSE(cleanup.requested());
  ASSERT_TRUE(diagnose.requested());
  EXPECT_TRUE(diagnose.forced());
  EXPECT_EQ(diagnose.current()->reason, CancelReason::kTimedOut);
  job.Cancel(CancelRequest::Forced(CancelReason::kRequested));
  EXPECT_TRUE(cleanup.forced());
  // A domain that starts after a forced cancel starts cancelled.
  CancelSource late(job, CancelSource::Follow::kForcedOnly);
  EXPECT_TRUE(late.forced());
}

// The kill of diagnose steps at the job's end (engine.cc) is job_ended only when no cancel of
// the job reached them first: after the timeout they were killed by it, and say so.
TEST(CancelSource, TheJobsEndDoesNotRenameAnEarlierCancel) {
  EXPECT_STREQ(CancelReasonName(CancelReason::kJobEnded), "job_ended");
  CancelSource job;
  CancelSource ended(job, CancelSource::Follow::kAsForced);
  ended.Cancel(CancelRequest::Forced(CancelReason::kJobEnded));
  EXPECT_EQ(ended.current()->reason, CancelReason::kJobEnded);
  CancelSource timed(job, CancelSource::Follow::kAsForced);
  job.Cancel(CancelRequest::Graceful(CancelReason::kTimedOut, 5s));
  EXPECT_FALSE(timed.Cancel(CancelRequest::Forced(CancelReason::kJobEnded)).changed);
  EXPECT_EQ(timed.current()->reason, CancelReason::kTimedOut);
}

TEST(CancelPolicy, TheStepGraceOnlyShortensWhatTheJobHasLeft) {
  const auto t0 = Clock::now();
  const CancelRequest job = CancelRequest::Graceful(CancelReason::kRequested, 30s, t0);
  StopOrder own = StopOrderFor(job, StepStop{SIGINT, 1s});
  EXPECT_EQ(own.signal, SIGINT);
  EXPECT_EQ(own.kill.Left(own.issued_at), 1s);
  StopOrder longer = StopOrderFor(job, StepStop{SIGTERM, 1h});
  EXPECT_EQ(longer.kill.Left(t0 + 10s), 20s);  // the job's deadline
  StopOrder helper = StopOrderFor(job, StepStop{SIGTERM, {}, true});
  EXPECT_TRUE(helper.kill.forced);
  EXPECT_TRUE(StopOrderFor(CancelRequest::Forced(CancelReason::kClosed, t0), StepStop{}).kill.forced);
}

TEST(CancelPolicy, LeftoversGetTheStepSignalAndTheShortestGrace) {
  StopPolicy p = LeftoverPolicy(StepStop{SIGINT, 5s}, 30s, 2s);
  EXPECT_EQ(p.signal, SIGINT);
  EXPECT_EQ(p.grace, 2s);
  EXPECT_EQ(LeftoverPolicy(StepStop{SIGTERM, 500ms}, 30s, 2s).grace, 500ms);
  EXPECT_EQ(LeftoverPolicy(StepStop{}, 1s, 2s).grace, 1s);
}

}  // namespace
}  // namespace sr
