// Errors say where: every error of a `run:` item names its file:line (the item's, or the line of
// the one input or env entry it is about), and every error of a root exec step names its file and
// the step, as the real binary prints them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "support/harness.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;

// An item's expressions (in its inputs, its env, its dynamic reference) fail while it loads, like
// its other load errors: each names its line, the input's or env entry's own where it is about
// one (they named only the step, then only the item's line), and each is a step failure, exit 1
// (a builtin's inputs and a dynamic reference were exit 2).
TEST(ErrorPlaces, ExpressionErrorsOfAnItemNameTheirLine) {
  TestDir dir;
  dir.Write("steps/echo/step.yml",
            "spec:\n  inputs:\n    v: {type: string}\n---\nexec:\n  command: [echo, \"${{ inputs.v }}\"]\n");
  struct Case {
    std::string item, place, why;
  };
  const std::vector<Case> cases = {
      {"    step: ./steps/echo\n    inputs: {v: \"${{ inputs.nope }}\"}\n", "8:14",
       "expand input \"v\": inputs.nope: the \"nope\" was not found"},
      {"    step: ./steps/echo\n    inputs:\n      v: \"x ${{ job.nope }}\"\n", "9:7",
       "expand input \"v\": job.nope: the \"nope\" was not found"},
      {"    step: ./steps/echo\n    inputs: {v: x}\n    env: {A: \"${{ env.NOPE }}\"}\n", "9:11",
       "env \"A\": env.NOPE: the \"NOPE\" was not found"},
      {"    step: dist://outputs\n    inputs: {a: \"${{ inputs.nope }}\"}\n", "8:14",
       "expand input \"a\": inputs.nope: the \"nope\" was not found"},
      {"    step: \"${{ env.NOPE }}/echo\"\n", "6:5", "env.NOPE: the \"NOPE\" was not found"},
      {"    step: dist://nope\n", "6:5", "fetching dist step: fetch: distributed step \"nope\" not found"},
  };
  for (const auto& [item, place, why] : cases) {
    dir.Write("j.yml", "spec: {}\n---\nrun:\n  - name: first\n    script: echo first\n  - name: x\n" + item);
    Output o = RunStepRunner({"run", "-f", dir / "j.yml"}, {.cwd = dir.path()});
    EXPECT_EQ(o.exit_code, 1) << item << o.err;
    EXPECT_THAT(o.err, HasSubstr("j.yml:" + place + ": step \"x\": failed to load: " + why)) << item;
    EXPECT_THAT(o.out, HasSubstr("first"));
  }
}

// A value a builtin cannot use is the same error as a value of the wrong type beside it: found
// when the item loads, naming the input's line, a step failure (it was exit 2 with no line).
TEST(ErrorPlaces, ABuiltinsBadInputNamesItsLineAsItsTypeErrorDoes) {
  TestDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"abc", "input \"duration\": invalid duration \"abc\": expected a number at \"abc\""},
      {"-1s", "input \"duration\": invalid duration \"-1s\": negative durations are not allowed"},
      {"5", "input \"duration\": declared string, got number"},
  };
  for (const auto& [duration, why] : cases) {
    dir.Write("s.yml", "spec: {}\n---\nrun:\n  - name: nap\n    step: dist://sleep\n    inputs: {duration: " +
                           duration + "}\n");
    Output o = RunStepRunner({"run", "-f", dir / "s.yml"}, {.cwd = dir.path()});
    EXPECT_EQ(o.exit_code, 1) << duration << ": " << o.err;
    EXPECT_THAT(o.err, HasSubstr("s.yml:6:14: step \"nap\": failed to load: " + why)) << duration;
  }
}

// A root exec step (`run -f` of a file whose definition is `exec:`) has no item to name it: its
// errors name the file and the step as Go names the root step, `""` (they named neither).
TEST(ErrorPlaces, RootExecStepErrorsNameTheFileAndTheStep) {
  TestDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"  command: [echo, hi]\n  work_dir: /nonexistent-sr/x\n",
       "exec: chdir /nonexistent-sr/x: no such file or directory"},
      {"  command: [/nonexistent-sr/prog]\n", "exec: fork/exec /nonexistent-sr/prog: no such file or directory"},
      {"  command: [sh, -c, 'exit 3']\n", "exec: exit status 3"},
  };
  for (const auto& [exec, why] : cases) {
    dir.Write("r.yml", "spec: {}\n---\nexec:\n" + exec);
    Output o = RunStepRunner({"run", "-f", dir / "r.yml"}, {.cwd = dir.path()});
    EXPECT_EQ(o.exit_code, 1) << exec << o.err;
    EXPECT_THAT(o.err, HasSubstr("step-runner: " + dir / "r.yml" + ":3:1: step \"\": " + why + "\n")) << exec;
  }
}

}  // namespace
}  // namespace sr::test
