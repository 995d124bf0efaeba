// A relative TMPDIR names a directory relative to where the runner was started; steps run in
// other directories (an exec step's `work_dir`, a job's build dir). Every path the runner makes
// below TMPDIR (scripts, output files, job dirs) must still name the same place there.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <string>

#include "support/harness.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class RelativeTmpdir : public ::testing::Test {
 protected:
  void SetUp() override {
    BecomeSubreaper();
    dir.Write("tmp/.keep", "");
  }
  void TearDown() override { ReapOrphans(); }
  TestDir dir;
};

TEST_F(RelativeTmpdir, RunWritesOutputFilesOfStepsInOtherDirectories) {
  // The exec step runs in /, where `tmp/step-runner-XXXXXX/step-1.out` named nothing: the write
  // failed, and the missing output took its default silently.
  dir.Write("steps/out/step.yml",
            "spec:\n  outputs:\n    v: {type: string, default: lost}\n---\n"
            "exec:\n  work_dir: /\n"
            "  command: [sh, -c, 'echo {\\\"name\\\":\\\"v\\\",\\\"value\\\":\\\"$0\\\"} > \"$0\"', '${{ output_file }}']\n");
  dir.Write("s.yml", "spec: {}\n---\nrun:\n  - name: out\n    step: ./steps/out\n"
                     "  - name: show\n    script: echo v=${{ steps.out.outputs.v }}\n");
  Options o;
  o.cwd = dir.path();
  o.env["TMPDIR"] = "tmp";
  Output run = RunStepRunner({"run", "-f", "s.yml"}, o);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  // The output file's path, as the step got it: absolute, below the TMPDIR meant.
  EXPECT_THAT(run.out, HasSubstr("v=" + dir / "tmp/step-runner-"));
  EXPECT_THAT(run.out, Not(HasSubstr("v=lost")));
}

TEST_F(RelativeTmpdir, ServeRunsScriptsOfJobsWithAnotherWorkDir) {
  Options o = ServerOptions(dir);
  o.env["TMPDIR"] = "tmp";
  o.cwd = dir.path();
  LiveServer server(dir, {}, o);
  // The job's work dir is /: its script `tmp/step-runner-output-r1/.tmp/step-1.sh` was not found
  // there (exit 127, reported as the user's step failure).
  ASSERT_TRUE(server.Run(Request("r1", Steps({{"s", "echo tmpdir=$TMPDIR"}}), "/")).ok());
  proto::Status end = server.WaitEnded("r1");
  EXPECT_EQ(end.status(), proto::StepResult::success) << end.DebugString();
  EXPECT_TRUE(dir.Exists("tmp/step-runner-output-r1/logs"));
  grpc::Status st;
  EXPECT_THAT(server.Follow("r1", 0, &st), HasSubstr("tmpdir=" + dir / "tmp\n"));
  ASSERT_TRUE(server.CloseJob("r1").ok());
  EXPECT_FALSE(dir.Exists("tmp/step-runner-output-r1"));
}

}  // namespace
}  // namespace sr::test
