// Fidelity with GitLab's Go step-runner (issue 15) in what a user sees: stdout and stderr in order,
// a step file from stdin and the CLI flags, progress on a terminal, the client's follow and status.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "support/compat.h"
#include "support/harness.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Runs a shell command line in `dir` (for `2>&1`, pipes and a terminal through `script`).
Output Shell(const TestDir& dir, const std::string& command) {
  Options o;
  o.cwd = dir.path();
  Child child({"/bin/sh", "-c", command}, o);
  return child.Wait();
}

std::string Bin() { return "'" + Binary() + "'"; }

// ---- 4: one writer for stdout and stderr --------------------------------------------------------

const char* kInterleaved = "spec: {}\n---\nexec:\n  command: [sh, -c, 'echo out1; echo err1 >&2; echo out2; echo err2 >&2']\n";

TEST(Compat, OneFileKeepsTheOrderOfStdoutAndStderr) {
  TestDir dir;
  dir.Write("s.yml", kInterleaved);
  Output same = Shell(dir, Bin() + " run -f s.yml >both.txt 2>&1");
  ASSERT_EQ(same.exit_code, 0);
  EXPECT_EQ(dir.Read("both.txt"), "Running step \"\"\nout1\nerr1\nout2\nerr2\n");
  // Apart where the destinations differ.
  Output apart = RunIn(dir, {"run", "-f", "s.yml"});
  EXPECT_EQ(apart.out, "Running step \"\"\nout1\nout2\n");
  EXPECT_EQ(apart.err, "err1\nerr2\n");
}

TEST(Compat, JobLogKeepsTheOrderOfStdoutAndStderr) {
  TestDir dir;
  LiveServer server(dir);
  ASSERT_TRUE(server.Run(Request("order", kInterleaved, dir.path())).ok());
  server.WaitEnded("order");
  grpc::Status fs;
  EXPECT_EQ(server.Follow("order", 0, &fs), "Running step \"\"\nout1\nerr1\nout2\nerr2\n");
}

// ---- 9: stdin, text proto, OCI flags ------------------------------------------------------------

TEST(Compat, StepFileFromStdinTextProtoRefusedOciFlagsParse) {
  TestDir dir;
  dir.Write("s.yml", "spec: {}\n---\nexec:\n  command: [echo, from-stdin]\n");
  Output o = Shell(dir, Bin() + " run -f - < s.yml");
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("from-stdin\n"));
  o = RunIn(dir, {"run", "--text-proto-step-file", "x.txtpb"});
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_EQ(o.err, "step-runner: --text-proto-step-file is not supported (write the step as YAML and use -f FILE)\n");
  o = RunIn(dir, {"run", "--oci-registry", "registry.example", "--oci-repository", "team/steps",
                "--oci-tag", "v1", "--oci-dir", "lint", "--oci-filename", "step.yml"});
  EXPECT_THAT(o.err, Not(HasSubstr("were not expected")));
  EXPECT_THAT(o.err, HasSubstr("registry.example/team/steps:v1"));
}

// ---- 10: progress on a terminal ----------------------------------------------------------------

const char* kFailsInTheMiddle =
    "spec: {}\n---\nrun:\n  - name: one\n    script: echo one\n  - name: two\n    script: exit 3\n"
    "  - name: three\n    script: echo three\n";

TEST(Compat, TerminalProgressShowsSkippedStepsAndATotal) {
  TestDir dir;
  dir.Write("s.yml", kFailsInTheMiddle);
  dir.Write("exec.yml", "spec: {}\n---\nexec:\n  command: [echo, hi]\n");
  Output o = Shell(dir, "script -qec \"" + Bin() + " run -f s.yml\" /dev/null");
  EXPECT_THAT(o.out, HasSubstr("✔ one (success, "));
  EXPECT_THAT(o.out, HasSubstr("✘ two (failure, "));
  EXPECT_THAT(o.out, HasSubstr("- three (skipped)"));
  EXPECT_THAT(o.out, HasSubstr("step-runner: finished: failure after "));
  o = Shell(dir, "script -qec \"" + Bin() + " run -f exec.yml\" /dev/null");
  EXPECT_THAT(o.out, HasSubstr("▶ (step)"));
  EXPECT_THAT(o.out, HasSubstr("✔ (step) (success, "));
  EXPECT_THAT(o.out, HasSubstr("finished: success after "));
  // A timeout's last line says so (it said "cancelled" while the exit code was 124).
  dir.Write("slow.yml", "spec: {}\n---\nexec:\n  command: [sleep, '30']\n");
  o = Shell(dir, "script -qec \"" + Bin() + " run -f slow.yml --timeout 1s\" /dev/null");
  EXPECT_EQ(o.exit_code, 124) << o.out;
  EXPECT_THAT(o.out, HasSubstr("finished: timed out after "));
}

TEST(Compat, ClientFollowProgressExistingIdAndStatusColumns) {
  TestDir dir;
  dir.Write("s.yml", kFailsInTheMiddle);
  LiveServer server(dir);
  std::string client = Bin() + " client --socket '" + server.socket() + "' ";
  Output o = Shell(dir, "script -qec \"" + client + "run s.yml --id j1 --follow\" /dev/null");
  EXPECT_THAT(o.out, HasSubstr("▶ one"));
  // The end line carries the step's duration and usage now that results have them (issue 18).
  EXPECT_THAT(o.out, HasSubstr("✘ two (failure, "));
  EXPECT_THAT(o.out, HasSubstr("- three (skipped)"));
  EXPECT_THAT(o.out, HasSubstr("finished: failure after "));
  EXPECT_THAT(o.out, Not(HasSubstr("already exists")));
  o = Shell(dir, client + "run s.yml --id j1 --follow");
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_THAT(o.err, HasSubstr("job \"j1\" already exists (failure); s.yml was not run"));
  EXPECT_LT(o.err.find("already exists"), o.err.find("exit status 3"));
  EXPECT_THAT(o.out, HasSubstr("Running step \"one\"\none\n"));

  ASSERT_TRUE(server.Run(Request("a-job-id-much-longer-than-the-old-column", kFailsInTheMiddle, dir.path())).ok());
  server.WaitEnded("a-job-id-much-longer-than-the-old-column");
  o = Shell(dir, client + "status");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  std::istringstream lines(o.out);
  std::string line;
  std::vector<size_t> state_at, took_at;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    size_t state = line.find(line.rfind("ID", 0) == 0 ? "STATE" : "failure");
    state_at.push_back(state);
    EXPECT_TRUE(line.rfind("ID", 0) == 0 || line.find("ms  ") != std::string::npos) << line;
    EXPECT_TRUE(line.rfind("ID", 0) == 0 || line.find(".") != std::string::npos) << line;
  }
  ASSERT_EQ(state_at.size(), 3u) << o.out;
  EXPECT_EQ(state_at[0], state_at[1]) << o.out;
  EXPECT_EQ(state_at[1], state_at[2]) << o.out;
}

}  // namespace
}  // namespace sr::test
