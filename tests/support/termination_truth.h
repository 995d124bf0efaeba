// What the termination-record tests through `run` and through the service share
// (tests/termination_truth*_test.cc): the steps they stop, and the checks of what is recorded.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

namespace sr::test {

// A step whose definition stops it with SIGINT and a 1 s grace; it ignores SIGINT (the ignore
// survives exec), so SIGKILL comes when its own grace has passed, not the job's 30 s.
constexpr char kShortGraceStep[] =
    "spec: {}\n---\ncancel: {signal: SIGINT, grace: 1s}\n"
    "exec:\n  command: [sh, -c, \"trap '' INT; : > ready; exec sleep 100\"]\n";
constexpr char kRunInner[] = "spec: {}\n---\nrun:\n  - name: inner\n    step: ./inner\n";

// Waits on the cancel signal's trap, warned by SIGQUIT before (at 5 s: the trap is set by then).
constexpr char kWarnedScript[] =
    "trap ': > warned' QUIT\ntrap 'exit 0' TERM\n: > ready\nwhile :; do sleep 0.05; done";

// Leaves a setsid daemon behind and ends successfully.
constexpr char kDaemonScript[] =
    "setsid sh -c 'echo $$ > daemon.pid; exec sleep 100' &\n"
    "while [ ! -s daemon.pid ]; do sleep 0.01; done\necho main done";

// Twenty children that each keep starting short-lived processes.
constexpr char kBusyChildrenScript[] =
    "for i in $(seq 20); do (while :; do sleep 0.01; done) & done\ntouch ready\nwait";

// A finally step that writes `${{ run.termination }}` to `path`.
inline std::string WithReport(std::string steps, const std::string& path) {
  return steps + "finally:\n  - name: report\n    script: printf '%s' \"$T\" > " + path +
         "\n    env: {T: \"${{ run.termination }}\"}\n";
}

inline void ExpectEveryCommandSet(const nlohmann::json& processes) {
  ASSERT_GE(processes.size(), 21u) << processes.dump(1);
  for (const auto& p : processes) {
    EXPECT_FALSE(p.value("command", "").empty()) << p.dump();
  }
}

}  // namespace sr::test
