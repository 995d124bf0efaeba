// What each step used (contract section 8), through the real binary: usage figures that add up,
// the terminal's end line, and the per-step `timeout:` with its cancel's log lines.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include <nlohmann/json.hpp>

#include "support/harness.h"
#include "support/hostile.h"  // SR_SANITIZED
#include "support/resources.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

TEST_F(Resources, TerminalEndLineShowsCpuAndPeak) {
  // Progress lines are for terminals only: `script` gives the run one.
  // 48 MiB held (dd's block): more than the runner itself, below which wait4 cannot tell a
  // step's peak (docs/resources.md). A sanitized runner forks and is ~275 MiB: no peak there.
  dir.Write("t.yml", "spec: {}\n---\nrun:\n  - name: build\n    script: head -c 30000000 /dev/zero | wc -c; "
                     "dd if=/dev/zero of=/dev/null bs=48M count=1 2>/dev/null\n");
  Child child({"/usr/bin/script", "-qec", Binary() + " run -f " + dir / "t.yml", "/dev/null"}, {});
  Output o = child.Wait();
  ASSERT_EQ(o.exit_code, 0) << o.out << o.err;
#ifdef SR_SANITIZED
  const std::string peak = "(, peak [0-9.]+ [KMG]?i?B)?";
#else
  const std::string peak = ", peak [0-9.]+ [KMG]?i?B";
#endif
  EXPECT_THAT(o.out, ::testing::ContainsRegex("✔ build \\(success, [0-9.]+m?s, cpu [0-9.]+s" + peak + "\\)"))
      << o.out;
}

TEST_F(Resources, UsageFieldsAreConsistent) {
  // `one` holds a 48 MiB buffer (dd's block), more than the runner's own size; `two` almost nothing.
  dir.Write("inner.yml", "spec: {}\n---\nrun:\n  - name: one\n    script: head -c 20000000 /dev/zero | wc -c; "
                         "dd if=/dev/zero of=/dev/null bs=48M count=1 2>/dev/null\n"
                         "  - name: two\n    script: echo two\n");
  dir.Write("u.yml", "spec: {}\n---\nrun:\n  - name: seq\n    step: ./inner.yml\n");
  // Full accounting: every step in its own v1 groups (the default does that for limited steps).
  Output o = RunStepRunner({"run", "-f", dir / "u.yml", "--step-results-file", dir / "r.json"},
                           {.env = {{"STEP_RUNNER_ACCOUNTING", "full"}}});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  json r = json::parse(dir.Read("r.json"));
  const json& seq = r["subStepResults"][0];
  int64_t cpu_sum = 0, peak_max = 0;
  for (const json& step : seq["subStepResults"]) {
    const json& u = step["usage"];
    ASSERT_TRUE(u.contains("startTime") && u.contains("endTime")) << u.dump();
    EXPECT_LT(u["startTime"].get<std::string>(), u["endTime"].get<std::string>());
    EXPECT_GT(Num(u, "memoryPeakBytes"), 0) << u.dump();
    EXPECT_GE(Num(u, "pidsPeak"), 1) << u.dump();
    EXPECT_EQ(Num(u, "oomKills"), 0);
    // The sequence starts before and ends after each of its steps.
    EXPECT_LE(seq["usage"]["startTime"].get<std::string>(), u["startTime"].get<std::string>());
    EXPECT_GE(seq["usage"]["endTime"].get<std::string>(), u["endTime"].get<std::string>());
    cpu_sum += Num(u, "cpuUserUsec") + Num(u, "cpuSystemUsec");
    peak_max = std::max(peak_max, Num(u, "memoryPeakBytes"));
  }
  EXPECT_EQ(Num(seq["usage"], "cpuUserUsec") + Num(seq["usage"], "cpuSystemUsec"), cpu_sum);
  EXPECT_EQ(Num(seq["usage"], "memoryPeakBytes"), peak_max);

  // By default an unlimited step is not put in v1 groups (docs/resources.md): CPU and peak are
  // there all the same, pids are not.
  Output d = RunStepRunner({"run", "-f", dir / "u.yml", "--step-results-file", dir / "d.json"});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  const json d_r = json::parse(dir.Read("d.json"));
  const json& du = d_r["subStepResults"][0]["subStepResults"][0]["usage"];
#ifndef SR_SANITIZED  // a sanitized runner is ~275 MiB itself: wait4 shows no step peak below that
  EXPECT_GT(Num(du, "memoryPeakBytes"), 40 << 20) << du.dump();
#endif
  EXPECT_GT(Num(du, "cpuUserUsec") + Num(du, "cpuSystemUsec"), 0) << du.dump();
  // Where wait4 is the source, a step's own processes are what it measures: `echo` never holds
  // 8 MiB (it used to show the runner's own high-water mark, which its first process inherits
  // through the shared memory of the vfork).
  const json& du2 = d_r["subStepResults"][0]["subStepResults"][1]["usage"];
  EXPECT_LT(Num(du2, "memoryPeakBytes"), 8 << 20) << du2.dump();

  // Without cgroups the figures come from wait4: CPU and peak are there, pids are not.
  Output off = RunStepRunner({"run", "-f", dir / "u.yml", "--step-results-file", dir / "off.json"},
                             {.env = {{"STEP_RUNNER_CGROUP", "off"}}});
  ASSERT_EQ(off.exit_code, 0) << off.err;
  const json off_r = json::parse(dir.Read("off.json"));
  const json& u = off_r["subStepResults"][0]["subStepResults"][0]["usage"];
#ifndef SR_SANITIZED
  EXPECT_GT(Num(u, "memoryPeakBytes"), 40 << 20) << u.dump();
#endif
  EXPECT_FALSE(u.contains("pidsPeak")) << u.dump();
  const json& u2 = off_r["subStepResults"][0]["subStepResults"][1]["usage"];
  EXPECT_LT(Num(u2, "memoryPeakBytes"), 8 << 20) << u2.dump();
}

TEST_F(Resources, StepTimeoutFailsTheStepAndRunsFinally) {
  dir.Write("t.yml", "spec: {}\n---\nrun:\n  - name: slow\n    timeout: 5s\n"
                     "    script: \"trap 'echo got TERM; exit 3' TERM; sleep 60 & wait\"\n"
                     "  - name: never\n    script: touch " + dir / "never" + "\n"
                     "finally:\n  - name: cleanup\n    script: echo ${{ run.status }} > " + dir / "final" + "\n"
                     "  - name: record\n    script: printf '%s' \"$T\" > " + dir / "record.json" + "\n"
                     "    env: {T: \"${{ run.termination }}\"}\n");
  Output o = RunStepRunner({"run", "-f", dir / "t.yml", "--step-results-file", dir / "r.json"});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("step \"slow\": timed out after 5s"));
  // The cleanup reads the step's record (it read {}: no job-wide cancel came).
  const json seen = json::parse(dir.Read("record.json"));
  EXPECT_EQ(seen["reason"], "step_timed_out") << seen.dump();
  EXPECT_FALSE(seen["processes"].empty()) << seen.dump();
  EXPECT_THAT(o.out, HasSubstr("got TERM"));
  EXPECT_FALSE(dir.Exists("never"));
  EXPECT_EQ(dir.Read("final"), "failure\n");
  json r = json::parse(dir.Read("r.json"));
  const json& slow = r["subStepResults"][0];
  EXPECT_EQ(slow["status"], "failure");
  EXPECT_EQ(slow["termination"]["reason"], "step_timed_out");
  EXPECT_EQ(slow["termination"]["processes"][0]["signal"], "SIGTERM");
}

// A step's own timeout is a cancel like the job's: its first log line says whom it signalled,
// its last (written before `finally:` runs) which process needed SIGKILL.
TEST_F(Resources, StepTimeoutLogsTheEndOfItsCancel) {
  dir.Write("k.yml", "spec: {}\n---\nrun:\n  - name: stubborn\n    timeout: 5s\n"
                     "    script: \"trap '' TERM; sleep 60\"\n"
                     "finally:\n  - name: cleanup\n    script: echo cleanup ran\n");
  Output o = RunStepRunner({"run", "-f", dir / "k.yml", "--grace", "500ms"});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  const std::string first = "step-runner: step \"stubborn\" timed out after 5s: cancel signal to 2";
  const std::string last = "step-runner: step \"stubborn\": cancel finished: 2 processes; "
                           "0 ended on a signal, 0 exited; needed SIGKILL: pid ";
  ASSERT_THAT(o.out, HasSubstr(first));
  ASSERT_THAT(o.out, HasSubstr(last));
  EXPECT_THAT(o.out, HasSubstr(" (sleep 60)"));
  EXPECT_LT(o.out.find(first), o.out.find(last));
  EXPECT_LT(o.out.find(last), o.out.find("cleanup ran")) << o.out;
}

}  // namespace
}  // namespace sr::test
