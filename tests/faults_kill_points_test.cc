// A runner killed with SIGKILL at any moment leaves nothing in TMPDIR that the next runner's
// start does not remove (contract section 7 item 1). strace stops `run` at each system call that
// names a path in TMPDIR in turn, the kill arriving as that call is entered, so every state in
// between (a directory made but not yet marked, a mark removed but not yet its directory) is
// met, not just the ones a timed kill happens to hit. Before directories were made and removed
// under a name that says whose they are, a kill at the owner mark's open left an empty,
// unmarked `step-runner-XXXXXX` for good (4 in 40 timed kills).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "support/harness.h"
#include "support/hostile.h"

namespace sr::test {
namespace {

constexpr char kStrace[] = "/usr/bin/strace";
constexpr char kPathCalls[] = "mkdir,openat,rename,renameat2,unlink,unlinkat,rmdir";

struct KillPoint {
  std::string call;  // the system call's name
  int nth = 0;       // its count among the calls of that name, from 1 (strace's `when=`)
  std::string line;  // as the dry run's trace shows it
};

// The calls of the main process (not its guardian) that name a path under `tmp`, in order.
std::vector<KillPoint> PointsIn(const std::string& trace, const std::string& tmp) {
  std::vector<KillPoint> points;
  std::map<std::string, int> seen;
  std::ifstream in(trace);
  const std::regex call(R"(^([a-z0-9_]+)\()");
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (!std::regex_search(line, m, call)) continue;
    const int nth = ++seen[m[1]];
    if (line.find("\"" + tmp + "/") != std::string::npos) points.push_back({m[1], nth, line});
  }
  return points;
}

class KillPoints : public TreeTest {
 protected:
  Options RunnerOptions() const {
    // LeakSanitizer cannot work under ptrace: its report would fail the exit code.
    return {.cwd = box.cwd(), .env = {{"TMPDIR", box.tmp()}, {"ASAN_OPTIONS", "detect_leaks=0"}}};
  }
  Sandbox box;
};

TEST_F(KillPoints, ASigkillAtAnyCallOnTmpdirLeavesNothingTheNextStartKeeps) {
  if (::access(kStrace, X_OK) != 0) GTEST_SKIP() << "no " << kStrace;
  const std::string step = box.Write("p.yml", "spec: {}\n---\nrun:\n  - name: one\n    script: echo one\n");
  const std::string trace = box.dir() / "trace";
  Output dry = Child({kStrace, "-o", trace, "-e", std::string("trace=") + kPathCalls, Binary(), "run", "-f", step},
                     RunnerOptions())
                   .Wait();
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  const std::vector<KillPoint> points = PointsIn(trace, box.tmp());
  // At least the temp dir's making, its mark, and its removal.
  ASSERT_GE(points.size(), 4u) << dry.err;
  ASSERT_TRUE(box.Leftovers().empty()) << ::testing::PrintToString(box.Leftovers());
  for (const KillPoint& p : points) {
    SCOPED_TRACE("killed entering " + p.line);
    const std::string killed = box.dir() / "killed";
    Output k = Child({kStrace, "-o", killed, "-e", "trace=" + p.call, "-e",
                      "inject=" + p.call + ":signal=KILL:when=" + std::to_string(p.nth), Binary(), "run", "-f", step},
                     RunnerOptions())
                   .Wait();
    std::ifstream in(killed);
    const std::string said((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_THAT(said, ::testing::HasSubstr("+++ killed by SIGKILL +++")) << k.err;
    // The next start removes what the dead runner left; then it runs and leaves nothing itself.
    Output next = box.Run({"run", "-f", step});
    EXPECT_EQ(next.exit_code, 0) << next.err;
    EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
    for (const std::string& left : box.Leftovers()) std::filesystem::remove_all(left);  // the next point starts clean
  }
}

}  // namespace
}  // namespace sr::test
