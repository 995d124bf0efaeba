// The termination record tells what happened (issue 13), through `run`: the effective grace, the
// warning apart from the cancel signal, leftovers named, a command per process, run.termination.
#include <gmock/gmock.h>
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>

#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "support/harness.h"
#include "support/records.h"
#include "support/service_client.h"
#include "support/termination_truth.h"
#include "util/fd.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;

class TerminationTruthCli : public TreeTest {
 protected:
  // Runs `file` in the test dir, Ctrl-C once `ready` exists, then `then`; returns the output.
  Output CancelWhenReady(const std::string& file, std::vector<std::string> extra = {},
                         std::map<std::string, std::string> env = {},
                         const std::function<void(Child&)>& then = nullptr) {
    std::vector<std::string> argv{Binary(), "run", "-f", dir / file, "--step-results-file",
                                  dir / "r.json"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    Options o;
    o.cwd = dir.path();
    o.env = std::move(env);
    Child child(argv, o);
    EXPECT_TRUE(child.WaitForFile(dir / "ready"));
    child.Signal(SIGINT);
    if (then) then(child);
    return child.Wait();
  }
  json StepRecord() { return json::parse(dir.Read("r.json"))["subStepResults"][0]["termination"]; }
};

TEST_F(TerminationTruthCli, RecordAndLogStateTheEffectiveGrace) {
  dir.Write("inner/step.yml", kShortGraceStep);
  dir.Write("t.yml", kRunInner);
  Output o = CancelWhenReady("t.yml");
  ASSERT_EQ(o.exit_code, 130) << o.err;
  EXPECT_THAT(o.out, HasSubstr("cancelling (cancel_requested): SIGINT to 1 processes, grace 1s"));
  const json t = StepRecord();
  EXPECT_EQ(t["grace"], "1s") << t.dump(1);
  ASSERT_EQ(t["processes"].size(), 1u) << t.dump(1);
  EXPECT_EQ(t["processes"][0]["signal"], "SIGINT");
  EXPECT_EQ(t["processes"][0]["ending"], "killed_after_grace");
}

// A member that obeyed (or ended) during the grace is dated when it ended, even when its own
// parent reaped it: a TERM-ignoring daemon's `sleep 0.1` was dated at the daemon's SIGKILL.
TEST_F(TerminationTruthCli, AMemberReapedByItsParentIsDatedWhenItEnded) {
  // The daemon's `flock` exists before "ready" (forked by `&`), ignores SIGTERM as the daemon
  // does, and ends by itself when the test lets go of the lock, once the cancel has signalled it;
  // the daemon reaps it and is killed at the end.
  UniqueFd lock(::open((dir / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_EQ(::flock(lock.get(), LOCK_EX), 0);
  dir.Write("t.yml", Steps({{"t", "setsid bash -c 'trap \"\" TERM; flock 9 9<lock & echo $! > m.pid; "
                                  ": > ready; wait; while :; do sleep 0.1; done' &\nwait"}}));
  Output o = CancelWhenReady("t.yml", {"--grace", "3s"}, {}, [&](Child& c) {
    EXPECT_TRUE(WaitFor([&] { return c.StdoutSoFar().find("cancelling") != std::string::npos; }));
    ::flock(lock.get(), LOCK_UN);
  });
  ASSERT_EQ(o.exit_code, 130) << o.err;
  auto when = [](const json& p) {
    google::protobuf::Timestamp t;
    EXPECT_TRUE(google::protobuf::util::TimeUtil::FromString(p.value("endTime", ""), &t)) << p.dump();
    return google::protobuf::util::TimeUtil::TimestampToNanoseconds(t);
  };
  const json t = StepRecord();
  const pid_t member = ReadPids(dir / "m.pid").at(0);
  std::optional<int64_t> killed_at, member_ended_at;
  for (const auto& p : t["processes"]) {
    const std::string command = p.value("command", "");
    if (p["ending"] == "killed_after_grace" && command.starts_with("bash -c")) killed_at = when(p);
    if (p.value("pid", 0) == member && p["ending"] == "exited") member_ended_at = when(p);
  }
  ASSERT_TRUE(killed_at && member_ended_at) << t.dump(1);
  EXPECT_LT(*member_ended_at, *killed_at) << t.dump(1);
}

// The job's timeout reaches a step that has a timeout of its own through that step's cancel
// domain: the start line counts its processes (it said "cancel signal to 0 processes").
TEST_F(TerminationTruthCli, TheStartLineCountsProcessesOfStepsWithTheirOwnTimeout) {
  dir.Write("t.yml", "spec: {}\n---\nrun:\n  - name: s\n    timeout: 5m\n    script: \": > ready; sleep 300\"\n");
  Output o = RunStepRunner({"run", "-f", dir / "t.yml", "--timeout", "5s", "--grace", "1s"}, {.cwd = dir.path()});
  ASSERT_EQ(o.exit_code, 124) << o.err;
  EXPECT_THAT(o.out, HasSubstr("cancelling (timed_out): SIGTERM to 2 processes, grace 1s"));
  EXPECT_THAT(o.out, HasSubstr("cancel finished: 2 processes"));
}

// A grace of zero sends SIGKILL alone; the log said "SIGTERM to N processes, grace 0s".
TEST_F(TerminationTruthCli, AZeroGraceIsLoggedAsTheSigkillItIs) {
  dir.Write("t.yml", Steps({{"t", "trap ': > got-term; exit 3' TERM\n: > ready\nwhile :; do sleep 0.05; done"}}));
  Output o = CancelWhenReady("t.yml", {"--grace", "0s"});
  ASSERT_EQ(o.exit_code, 130) << o.err;
  EXPECT_THAT(o.out, HasSubstr("cancelling (cancel_requested): SIGKILL to "));
  EXPECT_THAT(o.out, Not(HasSubstr("SIGTERM to")));
  EXPECT_FALSE(dir.Exists("got-term"));
  const json record = StepRecord();
  for (const auto& p : record["processes"]) EXPECT_EQ(p["signal"], "SIGKILL") << p.dump();
}

TEST_F(TerminationTruthCli, WarningSignalIsKeptApartFromTheCancelSignal) {
  dir.Write("t.yml", Steps({{"w", kWarnedScript}}));
  Options opts;
  opts.cwd = dir.path();
  Child child({Binary(), "run", "-f", dir / "t.yml", "--timeout", "300s", "--warn-before", "295s",
               "--warn-signal", "SIGQUIT", "--step-results-file", dir / "r.json"}, opts);
  ASSERT_TRUE(child.WaitForFile(dir / "warned"));
  child.Signal(SIGINT);
  Output o = child.Wait();
  ASSERT_EQ(o.exit_code, 130) << o.err;
  const json t = StepRecord();
  for (const auto& p : t["processes"]) EXPECT_NE(p.value("signal", ""), "SIGQUIT") << p.dump();
  // The main process comes first. (Forked children of the shell share its command line.)
  ASSERT_GE(t["processes"].size(), 1u);
  const json& main = t["processes"][0];
  EXPECT_EQ(main["signal"], "SIGTERM");
  // Its trap exits 0, unless the signal came while bash could not run it yet.
  if (main["ending"] != "exited") {
    EXPECT_EQ(main.value("endSignal", ""), "SIGTERM") << main.dump();
  }
  EXPECT_THAT(o.out, HasSubstr("deadline warning: SIGQUIT sent"));
  // No sequence here has diagnose: steps: none is said to start.
  EXPECT_THAT(o.out, Not(HasSubstr("starting diagnose steps")));
}

// A cleanup's budget that runs out is said: the finally: steps still to come are skipped.
TEST_F(TerminationTruthCli, AFinallyBudgetThatRunsOutIsSaid) {
  dir.Write("t.yml", "spec: {}\n---\nrun:\n  - name: main\n    script: \": > ready; sleep 300\"\n"
                     "finally:\n  - name: slow\n    script: sleep 300\n  - name: never\n    script: touch never\n"
                     "finally_timeout: 1s\n");
  Output o = CancelWhenReady("t.yml", {"--grace", "1s"});
  ASSERT_EQ(o.exit_code, 130) << o.err;
  EXPECT_THAT(o.out, HasSubstr("step-runner: finally: its budget of 1s (finally_timeout) ran out: cancelling the cleanup"));
  EXPECT_FALSE(dir.Exists("never"));
  // The cleanup's own timeout, not the job's (there is none here): it was `timed_out`.
  bool found = false;
  const json results = json::parse(dir.Read("r.json"));
  for (const auto& step : results["subStepResults"]) {
    if (step["step"]["name"] != "slow") continue;
    found = true;
    EXPECT_EQ(step["termination"]["reason"], "step_timed_out") << step.dump(1);
  }
  EXPECT_TRUE(found) << results.dump(1);
}

TEST_F(TerminationTruthCli, LeftoverDaemonIsStoppedRecordedAndNamed) {
  dir.Write("t.yml", Steps({{"d", kDaemonScript}}));
  Options opts;
  opts.cwd = dir.path();
  Output o = RunStepRunner({"run", "-f", dir / "t.yml", "--step-results-file", dir / "r.json"}, opts);
  ASSERT_EQ(o.exit_code, 0) << o.err;
  const pid_t daemon = ReadPids(dir / "daemon.pid").at(0);
  EXPECT_FALSE(ProcessAlive(daemon));
  const json t = StepRecord();
  EXPECT_EQ(t["reason"], "step_ended") << t.dump(1);
  EXPECT_EQ(t["grace"], "2s");
  bool found = false;
  for (const auto& p : t["processes"]) {
    if (p.value("pid", 0) != daemon) continue;
    found = true;
    EXPECT_EQ(p["signal"], "SIGTERM");
    EXPECT_EQ(p["ending"], "ended_by_signal");
    // `sleep 100`, the shell's command line before that exec, or the task name `sleep` when the
    // command line was gone by the time it was read.
    EXPECT_THAT(p["command"].get<std::string>(), HasSubstr("sleep"));
  }
  EXPECT_TRUE(found) << t.dump(1);
  // One log line names it.
  EXPECT_THAT(o.out, ::testing::ContainsRegex("left processes behind, stopped \\(grace 2s\\):.* pid " +
                                              std::to_string(daemon) + " \\([^)]*sleep[^)]*\\) SIGTERM"));
}

TEST_F(TerminationTruthCli, EveryProcessOfABusyTreeHasACommand) {
  dir.Write("t.yml", Steps({{"busy", kBusyChildrenScript}}));
  Output o = CancelWhenReady("t.yml", {"--grace", "500ms"});
  ASSERT_EQ(o.exit_code, 130) << o.err;
  ExpectEveryCommandSet(StepRecord()["processes"]);
}

// A trap handler's `( … ) &` is born after the cancel signal; once its shell has exited it is
// the runner's child, like a process that did get the signal. The record must not say it got
// one: it ends on its own, within the grace.
TEST_F(TerminationTruthCli, CleanupChildBornAfterTheSignalIsNotRecordedAsSignalled) {
  dir.Write("t.yml", Steps({{"trap", "trap '(sh -c \"echo \\$PPID > cleanup.pid\"; sleep 0.3; "
                                     ": > cleaned) & exit 0' TERM\n: > ready\n"
                                     "while :; do sleep 0.02; done"}}));
  // The fallback's census may or may not meet the child before it ends: three tries there.
  for (const std::string mechanism : {"cgroup", "off", "off", "off"}) {
    std::map<std::string, std::string> env;
    if (mechanism == "off") env["STEP_RUNNER_CGROUP"] = "off";
    ::unlink((dir / "ready").c_str());
    ::unlink((dir / "cleaned").c_str());
    Output o = CancelWhenReady("t.yml", {"--grace", "5s"}, env);
    ASSERT_EQ(o.exit_code, 130) << mechanism << o.err;
    EXPECT_TRUE(dir.Exists("cleaned")) << mechanism << ": the cleanup ran to its end";
    const pid_t cleanup = ReadPids(dir / "cleanup.pid").at(0);
    const json t = StepRecord();
    for (const auto& p : t["processes"]) {
      EXPECT_NE(p.value("pid", 0), cleanup) << mechanism << ": " << t.dump(1);
    }
  }
}

// A shell's child that exits from its own trap, and is reaped by that shell, not by the runner:
// the record says it exited and with what code (the kernel keeps the status for a pidfd holder
// since Linux 6.15). It used to be guessed from what the runner did: "ended_by_signal".
// The child's own child sleeps until signalled: nothing ends by itself around the cancel.
TEST_F(TerminationTruthCli, ChildReapedByItsOwnShellIsRecordedAsItEnded) {
  if (!KernelAtLeast(6, 15)) GTEST_SKIP() << "PIDFD_INFO_EXIT needs Linux 6.15";
  dir.Write("t.yml", Steps({{"nested", "trap 'wait $c; exit 0' TERM\n"
                                       "bash -c 'trap \"exit 7\" TERM; echo $$ > child.pid; "
                                       "sleep 1000 & : > ready; wait' &\n"
                                       "c=$!\nwait $c"}}));
  for (const std::string mechanism : {"cgroup", "off"}) {
    std::map<std::string, std::string> env;
    if (mechanism == "off") env["STEP_RUNNER_CGROUP"] = "off";
    ::unlink((dir / "ready").c_str());
    Output o = CancelWhenReady("t.yml", {"--grace", "5s"}, env);
    ASSERT_EQ(o.exit_code, 130) << mechanism << o.err;
    const pid_t child = ReadPids(dir / "child.pid").at(0);
    const json t = StepRecord();
    const json* rec = FindPid(t["processes"], child);
    ASSERT_TRUE(rec) << mechanism << ": " << t.dump(1);
    EXPECT_EQ((*rec)["signal"], "SIGTERM") << mechanism;
    EXPECT_EQ((*rec)["ending"], "exited") << mechanism << ": " << rec->dump();
    EXPECT_EQ(rec->value("exitCode", 0), 7) << mechanism;
    EXPECT_EQ(t["processes"][0]["ending"], "exited") << mechanism << ": the shell's trap";
    EXPECT_THAT(o.out, HasSubstr(" 2 exited; none needed SIGKILL")) << mechanism << o.out;
  }
}

TEST_F(TerminationTruthCli, RunTerminationHasTheNamesOfTheResults) {
  dir.Write("inner/step.yml", kShortGraceStep);
  dir.Write("t.yml", WithReport(kRunInner, dir / "final.json"));
  Output o = CancelWhenReady("t.yml");
  ASSERT_EQ(o.exit_code, 130) << o.err;
  json seen = json::parse(dir.Read("final.json"));
  std::set<std::string> from_run, from_results;
  Keys(seen, &from_run);
  Keys(StepRecord(), &from_results);
  EXPECT_EQ(from_run, from_results) << seen.dump(1);
  EXPECT_EQ(seen["grace"], "1s");
}

// A TCP listener that never answers: git's HTTP fetch from it waits until it is stopped.
class SilentServer {
 public:
  SilentServer() {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(::listen(fd_.get(), 8), 0);
    EXPECT_EQ(::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
  }
  int port() const { return port_; }
  // True once a client (git) has connected: the fetch is under way.
  bool Connected() {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, 60000) != 1) return false;
    conns_.emplace_back(::accept(fd_.get(), nullptr, nullptr));
    return conns_.back().valid();
  }

 private:
  UniqueFd fd_{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  std::vector<UniqueFd> conns_;
  int port_ = 0;
};

// A cancel or timeout while git fetches a step's repository is the job's cancel or timeout, not
// a step failure (it exited 1 with "git clone: exit status -1"), and the job's record names the
// git processes it killed (the log said "SIGKILL to 3 processes", then "cancel finished: 0").
TEST_F(TerminationTruthCli, CancelOrTimeoutDuringAGitFetchIsNotAStepFailure) {
  SilentServer server;
  dir.Write("t.yml", WithReport("spec: {}\n---\nrun:\n  - name: fetch\n    step: http://127.0.0.1:" +
                                    std::to_string(server.port()) + "/repo.git@main\n",
                                dir / "final.json"));
  Options o;
  o.cwd = dir.path();
  Child child({Binary(), "run", "-f", dir / "t.yml"}, o);
  ASSERT_TRUE(server.Connected());
  child.Signal(SIGINT);
  Output cancelled = child.Wait();
  EXPECT_EQ(cancelled.exit_code, 130) << cancelled.err;
  EXPECT_THAT(cancelled.err, HasSubstr("fetching git step: git clone (cancelled)"));
  EXPECT_THAT(cancelled.out, Not(HasSubstr("cancel finished: 0 processes")));
  const json t = json::parse(dir.Read("final.json"));
  EXPECT_EQ(t["reason"], "cancel_requested") << t.dump(1);
  ASSERT_FALSE(t["processes"].empty()) << t.dump(1);
  EXPECT_THAT(t["processes"][0]["command"].get<std::string>(), HasSubstr("git clone")) << t.dump(1);

  Output timed = RunStepRunner({"run", "-f", dir / "t.yml", "--timeout", "1s"}, o);
  EXPECT_EQ(timed.exit_code, 124) << timed.err;
  EXPECT_THAT(timed.err, HasSubstr("fetching git step: git clone (timed out)"));
}

}  // namespace
}  // namespace sr::test
