// The log lines built from a step's termination record say only what the record shows.
#include <gtest/gtest.h>

#include "engine/internal.h"

namespace sr::engine {
namespace {

using Ending = proto::Termination::ProcessRecord;

proto::Termination::ProcessRecord* Add(proto::Termination* t, int pid, const std::string& command) {
  auto* p = t->add_processes();
  p->set_pid(pid);
  p->set_command(command);
  return p;
}

TEST(TerminationLines, TheWarningLineNamesOnlyWhatTheWarningEnded) {
  proto::Termination t;
  t.set_warning_signal("SIGTERM");
  auto* main = Add(&t, 10, "bash");
  main->set_warning_signal("SIGTERM");
  main->set_ending(Ending::ended_by_signal);
  main->set_end_signal("SIGTERM");
  // Signalled again as a leftover with the same signal: the leftovers' line names it.
  auto* child = Add(&t, 11, "sleep 300");
  child->set_warning_signal("SIGTERM");
  child->set_signal("SIGTERM");
  child->set_ending(Ending::ended_by_signal);
  child->set_end_signal("SIGTERM");
  EXPECT_EQ(WarningLine("s", t), "step-runner: step \"s\": the deadline warning signal SIGTERM "
                                 "ended pid 10 (bash)");
  EXPECT_EQ(LeftoversLine("s", t), "step-runner: step \"s\" left processes behind, stopped (grace "
                                   "0s): pid 11 (sleep 300) SIGTERM -> ended_by_signal");
}

TEST(TerminationLines, NoLineWhenNothingMatches) {
  proto::Termination t;
  t.set_warning_signal("SIGUSR1");
  auto* handled = Add(&t, 10, "bash");
  handled->set_warning_signal("SIGUSR1");
  handled->set_ending(Ending::exited);
  // The leftover ended between the check that found it and the stop: nobody was signalled.
  EXPECT_EQ(WarningLine("s", t), std::nullopt);
  EXPECT_EQ(LeftoversLine("s", t), std::nullopt);
}

}  // namespace
}  // namespace sr::engine
