// Hostile step text and expressions through the real binary (issue 9): huge, explosive, deeply
// nested and binary step text; step files that never end or invoke themselves; expressions nested
// 10 000 deep. Each must end in a clear one-line error or a bounded result, with the documented
// exit code, without leaving files behind. docs/limits.md lists the limits these tests cross.
//
// No test asserts timing: each run has a generous safety timeout (the harness kills the child
// after it), so a hang shows up as a failed exit code, never as a flaky duration check.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "expr/expr.h"
#include "support/hostile.h"

namespace sr::test {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using namespace std::chrono_literals;

// --- step text ------------------------------------------------------------------------------

TEST(HostileStepText, FiftyMegabytesIsRejectedWithoutParsing) {
  Sandbox box;
  std::string text = "spec: {}\n---\nexec:\n  command: [echo, \"" + std::string(50 << 20, 'x') +
                     "\"]\n";
  std::string path = box.Write("big.yml", text);
  Output o = box.Run({"run", "-f", path});
  ExpectStepFileError(o, "big.yml: step text is " + std::to_string(text.size()) +
                             " bytes, more than the limit of 4194304");
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

TEST(HostileStepText, BillionLaughs) {
  Sandbox box;
  std::string path = box.Write(
      "bomb.yml", "spec: {}\n---\nrun:\n  - name: x\n    script: echo hi\n    env: {}\n"
                  "outputs:\n  lolz: " + AliasBomb() + "\n");
  Output o = box.Run({"run", "-f", path, "--step-results-file", box.cwd() + "/r.json"});
  ExpectStepFileError(o, "bomb.yml:8:3: value too large: more than 1000000 nodes after expanding aliases");
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());  // not even the results file

  // The same bomb as an input of a referenced step, and in the `ci` command's STEPS.
  box.Write("callee/step.yml", "spec:\n  inputs:\n    v: {type: array}\n---\nexec:\n  command: [true]\n");
  std::string caller = box.Write(
      "caller.yml", "spec: {}\n---\nrun:\n  - name: x\n    step: " + box.dir() / "callee" +
                        "\n    inputs:\n      v: " + AliasBomb() + "\n");
  ExpectStepFileError(box.Run({"run", "-f", caller}), "value too large");
  Output ci = box.Run({"ci"}, 120s,
                      {{"STEPS", "- name: x\n  step: ./x\n  inputs: {v: " + AliasBomb() + "}\n"}});
  ExpectStepFileError(ci, "compiling STEPS: STEPS:3:");
  EXPECT_THAT(ci.err, HasSubstr("value too large"));
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

TEST(HostileStepText, TenThousandNestedMappings) {
  Sandbox box;
  std::string flow = "spec: {}\n---\nrun: []\noutputs: ";
  for (int i = 0; i < 10000; ++i) flow += "{a: ";
  flow += "1" + std::string(10000, '}') + "\n";
  Output o = box.Run({"run", "-f", box.Write("flow.yml", flow)});
  ExpectStepFileError(o, "nesting deeper than 64 levels");
  EXPECT_THAT(o.err, HasSubstr("flow.yml:4:"));  // the position of the 65th level

  // Block style, one space per level (10 000 levels would be 50 MB of indentation).
  std::string block = "spec: {}\n---\nrun: []\noutputs:\n";
  for (int i = 1; i <= 2000; ++i) block += std::string(i, ' ') + "a:\n";
  block += std::string(2001, ' ') + "1\n";
  ExpectStepFileError(box.Run({"run", "-f", box.Write("block.yml", block)}),
                      "nesting deeper than 64 levels");

  // Sequences in the spec document, and nesting reached through aliases of shallow anchors.
  std::string seq = "spec:\n  inputs:\n    v:\n      type: array\n      default: " +
                    std::string(10000, '[') + std::string(10000, ']') + "\n---\nrun: []\n";
  ExpectStepFileError(box.Run({"run", "-f", box.Write("seq.yml", seq)}), "nesting deeper than 64");
  std::string deep40 = std::string(40, '[') + "1" + std::string(40, ']');
  std::string alias = "spec: {}\n---\nrun: []\noutputs:\n  a: &d " + deep40 + "\n  b: " +
                      std::string(40, '[') + "*d" + std::string(40, ']') + "\n";
  ExpectStepFileError(box.Run({"run", "-f", box.Write("alias.yml", alias)}),
                      "nesting deeper than 64 levels");
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

TEST(HostileStepText, NonUtf8AndControlBytes) {
  Sandbox box;
  struct Case {
    std::string text, error;
  } cases[] = {
      {"spec: {}\n---\nexec: {command: [\"caf\xE9\"]}\n",
       "bad.yml:3:22: invalid UTF-8 (byte 0xE9): step text must be UTF-8"},
      {"spec: {}\n---\nexec: {command: [a\xC0\xAF]}\n", "invalid UTF-8 (byte 0xC0)"},  // overlong '/'
      {std::string("spec: {}\n---\nexec: {command: [a\0b]}\n", 34), "control character U+0000"},
      {"\xFF\xFEs\0p\0e\0c\0", "bad.yml:1:1: invalid UTF-8 (byte 0xFF)"},  // UTF-16 text
      {"spec: {}\n---\nexec: {command: [\x1B[31mred]}\n", "control character U+001B"},
      {"\xEF\xBB\xBF\xEF\xBB\xBF\xFE", "invalid UTF-8 (byte 0xFE)"},
  };
  for (const auto& c : cases) {
    std::string path = box.Write("bad.yml", c.text);
    ExpectStepFileError(box.Run({"run", "-f", path}), c.error);
  }
  // Random binary bytes.
  std::string junk(1 << 20, '\0');
  uint32_t x = 12345;
  for (char& ch : junk) ch = static_cast<char>((x = x * 1103515245 + 12345) >> 23);
  ExpectStepFileError(box.Run({"run", "-f", box.Write("junk.yml", junk)}), "junk.yml:");
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

TEST(HostileStepText, ReferencedStepFilesHaveTheSameLimits) {
  Sandbox box;
  box.Write("huge/step.yml", "spec: {}\n---\nexec:\n  command: [echo, \"" +
                                 std::string(5 << 20, 'x') + "\"]\n");
  std::string caller = box.Write("caller.yml", "spec: {}\n---\nrun:\n  - name: huge\n    step: " +
                                                   box.dir() / "huge" + "\n  - name: never\n    script: touch never\n");
  Output o = box.Run({"run", "-f", caller});
  EXPECT_EQ(o.exit_code, 2) << o.err.substr(0, 2000);
  EXPECT_THAT(o.err, HasSubstr("more than the limit of 4194304"));
  EXPECT_FALSE(std::filesystem::exists(box.cwd() + "/never"));
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

// A step "file" that never ends (a device, a FIFO fed by another process) was read whole before
// the 4 MiB limit was checked, until memory ran out. Now the read stops after 4 MiB + 1 bytes.
// The runner is held to 1 GiB of address space so a regression shows up as a crash rather than
// as an exhausted machine.
TEST(HostileStepText, EndlessStepFileIsNotReadWhole) {
  Sandbox box;
  ExpectStepFileError(box.RunLimited("1073741824", {"run", "-f", "/dev/zero"}),
                      "step-runner: /dev/zero: step text is more than the limit of 4194304 bytes");
  // Referenced by another step, a device or a FIFO is refused without reading (a FIFO nobody
  // writes to would block the runner, and with it every job of a server).
  box.Write("zero/.keep", "");
  std::filesystem::create_symlink("/dev/zero", box.dir() / "zero/step.yml");
  std::string caller = box.Write("caller.yml", "spec: {}\n---\nrun:\n  - name: z\n    step: " +
                                                   box.dir() / "zero" + "\n");
  Output o = box.RunLimited("1073741824", {"run", "-f", caller});
  EXPECT_EQ(o.exit_code, 1) << o.err.substr(0, 2000);
  EXPECT_THAT(o.err, HasSubstr("step.yml: not a regular file"));
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

// A step that invokes itself by an absolute path recursed until memory ran out (with `./self`
// until the path got too long for the file system, after ~2000 levels and a 36 KB error line).
// Now sequences nest at most 64 levels. Held to 1 GiB, as above.
TEST(HostileStepText, SelfReferencingStepIsBounded) {
  Sandbox box;
  box.Write("self/step.yml", "spec: {}\n---\nrun:\n  - name: again\n    step: " + box.dir() / "self" + "\n");
  Output o = box.RunLimited("1073741824", {"run", box.dir() / "self"});
  EXPECT_EQ(o.signal, 0);
  EXPECT_EQ(o.exit_code, 1) << o.err.substr(0, 2000);
  EXPECT_THAT(o.err, HasSubstr("steps nested more than 64 levels deep"));
  EXPECT_LT(o.err.size(), 4096u);
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1);
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

// --- expressions ------------------------------------------------------------------------------

TEST(HostileExpr, TenThousandNestedExpressions) {
  Sandbox box;
  std::string nested;
  for (int i = 0; i < 10000; ++i) nested += "${{ ";
  nested += "inputs.x";
  for (int i = 0; i < 10000; ++i) nested += " }}";
  std::string path = box.Write("e.yml", "spec: {}\n---\nrun:\n  - name: deep\n    script: touch " +
                                            box.dir() / "ran" + " '" + nested + "'\n");
  Output o = box.Run({"run", "-f", path});
  EXPECT_EQ(o.exit_code, 1) << o.err.substr(0, 2000);  // an expression error is a step failure
  EXPECT_THAT(o.err, AllOf(StartsWith("step-runner: " + path + ":5:5: step \"deep\""), HasSubstr("was not found")));
  EXPECT_FALSE(std::filesystem::exists(box.dir() / "ran"));

  // Unclosed, 10 000 openers deep.
  std::string open = "spec: {}\n---\nrun:\n  - name: open\n    script: touch " + box.dir() / "ran" +
                     " '";
  for (int i = 0; i < 10000; ++i) open += "${{ ";
  Output u = box.Run({"run", "-f", box.Write("u.yml", open + "'\n")});
  EXPECT_EQ(u.exit_code, 1) << u.err.substr(0, 2000);
  EXPECT_THAT(u.err, HasSubstr("is not closed: ${{ ... }}"));
  EXPECT_FALSE(std::filesystem::exists(box.dir() / "ran"));
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

TEST(HostileExpr, DeepInProcess) {
  // 200 000 levels: far more than a recursive scanner or walker would survive on an 8 MB stack.
  // The scanner counts nesting instead of recursing, so this is an error, not a crash.
  constexpr int kLevels = 200000;
  std::string text;
  for (int i = 0; i < kLevels; ++i) text += "${{";
  text += " inputs.x ";
  for (int i = 0; i < kLevels; ++i) text += "}}";
  const expr::Value view = {{"inputs", {{"x", "1"}}}};
  auto r = expr::ExpandString(text, view);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, HasSubstr("was not found"));
  auto typed = expr::Expand(expr::Value(text), view);
  EXPECT_FALSE(typed.ok());
  // A value nested as deep is walked, copied and rendered without recursion.
  expr::Value deep = expr::Value::array();
  expr::Value* cur = &deep;
  for (int i = 0; i < kLevels; ++i) cur = &(*cur = expr::Value::array({expr::Value::array()}))[0];
  auto expanded = expr::Expand(deep, view);
  ASSERT_TRUE(expanded.ok());
  EXPECT_EQ(expr::Render(*expanded).size(), 2u * kLevels + 2);
}

TEST(HostileExpr, DynamicReferenceChainIsBounded) {
  Sandbox box;
  // Defaults are never expanded, so this input's value is itself an expression naming the input:
  // every expansion of the dynamic reference yields another dynamic reference.
  std::string path = box.Write("d.yml",
                               "spec:\n  inputs:\n    r: {type: string, default: \"${{ inputs.r }}\"}\n"
                               "---\nrun:\n  - name: loop\n    step: ${{ inputs.r }}\n");
  Output o = box.Run({"run", "-f", path});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("dynamic step reference nested too deeply"));
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

}  // namespace
}  // namespace sr::test
