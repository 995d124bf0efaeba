// The log lines and the error note built from a step's termination record say only what the
// record shows.
#include <gtest/gtest.h>

#include <csignal>

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

// A failed step's error names the warning only where the records show it did the ending.
TEST(TerminationLines, TheErrorCreditsTheWarningOnlyWithWhatItEnded) {
  auto record = [](pid_t pid, int warned, ProcessRecord::Ending ending, int end_signal) {
    ProcessRecord r;
    r.pid = pid;
    r.warning_signal = warned;
    r.ending = ending;
    r.end_signal = end_signal;
    return r;
  };
  using E = ProcessRecord::Ending;
  TreeExit main_died;
  main_died.term_signal = SIGTERM;
  main_died.records = {record(10, SIGTERM, E::kEndedBySignal, SIGTERM)};
  EXPECT_EQ(WarningEndNote(main_died, 10), " (the runner's deadline warning signal)");

  TreeExit child_died;  // the shell trapped it, its child did not: 128 + 15
  child_died.exit_code = 143;
  child_died.records = {record(10, SIGTERM, E::kExited, 0), record(11, SIGTERM, E::kEndedBySignal, SIGTERM)};
  EXPECT_EQ(WarningEndNote(child_died, 10),
            " (128 + SIGTERM: the runner's deadline warning signal ended pid 11)");

  TreeExit other_code = child_died;  // the shell's own exit code, whatever its child did
  other_code.exit_code = 1;
  EXPECT_EQ(WarningEndNote(other_code, 10), "");
  TreeExit unknown_end = child_died;  // reaped by its shell on a kernel that keeps no status
  unknown_end.records[1].end_signal = 0;
  EXPECT_EQ(WarningEndNote(unknown_end, 10), "");
  TreeExit not_warned = child_died;  // SIGTERM from elsewhere
  not_warned.records[1].warning_signal = 0;
  EXPECT_EQ(WarningEndNote(not_warned, 10), "");
}

}  // namespace
}  // namespace sr::engine
