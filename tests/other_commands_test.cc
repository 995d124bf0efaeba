// The commands besides `run`, `serve` and `client` (`ci`, `bootstrap`), and the words said for a
// command that does not exist: the real binary, end to end.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/harness.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;

// CLI11 said "A subcommand is required" for `client bogus`, not naming the word typed.
TEST(Cli, AnUnknownCommandIsNamedWithTheCommandsThereAre) {
  Output client = RunStepRunner({"client", "bogus"});
  EXPECT_EQ(client.exit_code, 2);
  EXPECT_THAT(client.err, HasSubstr("step-runner: unknown client command \"bogus\" (commands: run, "
                                    "cancel, close, status, logs)\n"));
  Output with_socket = RunStepRunner({"client", "--socket", "/nonexistent.sock", "bogus"});
  EXPECT_EQ(with_socket.exit_code, 2);
  EXPECT_THAT(with_socket.err, HasSubstr("unknown client command \"bogus\""));
  Output none = RunStepRunner({"client"});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("step-runner: a client command is required (commands: run, "));
  Output top = RunStepRunner({"bogus"});
  EXPECT_EQ(top.exit_code, 2);
  EXPECT_THAT(top.err, HasSubstr("step-runner: unknown command \"bogus\" (commands: version, run, "));
  EXPECT_THAT(top.err, HasSubstr("client"));
  // Arguments of a command keep CLI11's words.
  Output extra = RunStepRunner({"version", "extra"});
  EXPECT_EQ(extra.exit_code, 2);
  EXPECT_THAT(extra.err, HasSubstr("extra"));
}

TEST(CiCli, RunsStepsFromTheEnvironment) {
  TestDir dir;
  Output o = RunStepRunner({"ci"}, {.cwd = dir.path(),
                                    .env = {{"STEPS", "- name: hello-world\n  script: echo from-ci\n"},
                                            {"CI_STEPS_DEBUG", "true"}}});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("from-ci"));
  EXPECT_TRUE(dir.Exists("step-results.json"));
}

TEST(BootstrapCli, CopiesTheBinary) {
  TestDir dir;
  Output o = RunStepRunner({"bootstrap", dir / "bin"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  Output v = RunStepRunner({"version"});
  Output copy = [&] {
    Child c({dir / "bin/step-runner", "version"}, {});
    return c.Wait();
  }();
  EXPECT_EQ(copy.out, v.out);
  EXPECT_THAT(v.out, HasSubstr("step-runner"));
}

}  // namespace
}  // namespace sr::test
