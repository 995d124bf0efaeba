// Hostile input a running step produces, and hostile flags (issue 9): output files with huge
// lines, invalid or deeply nested JSON, written forever; negative and huge durations; secrets
// split across writes. Each ends in a clear error or a bounded result (docs/limits.md).
// No test asserts timing; timeouts are safety nets only.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "util/time.h"
#include "support/hostile.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// --- output and export files -------------------------------------------------------------------

std::string WriterStep(const std::string& script) {
  return "spec:\n  outputs:\n    x: {type: string, default: d}\n---\nexec:\n  command: [bash, -c, '" +
         script + "', bash, \"${{ output_file }}\", \"${{ export_file }}\"]\n";
}

TEST(HostileOutputs, HundredMegabyteLine) {
  Sandbox box;
  // One line of 100 MB: {"name":"x","value":"xxxx…"} without its end.
  std::string path = box.Write(
      "o.yml", WriterStep("{ printf %s \"{\\\"name\\\":\\\"x\\\",\\\"value\\\":\\\"\"; head -c 104857600 "
                          "/dev/zero | tr \"\\\\0\" x; } > \"$1\""));
  Output o = box.Run({"run", "-f", path});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("output file: larger than 67108864 bytes"));
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());

  // The same for the export file.
  Output e = box.Run({"run", "-f", box.Write("e.yml", WriterStep("head -c 70000000 /dev/zero > \"$2\""))});
  EXPECT_EQ(e.exit_code, 1) << e.err;
  EXPECT_THAT(e.err, HasSubstr("export file: larger than 67108864 bytes"));
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

TEST(HostileOutputs, InvalidJson) {
  Sandbox box;
  struct Case {
    std::string script, error;
  } cases[] = {
      {"printf \"%s\\n\" \"{\\\"name\\\":\\\"x\\\",\\\"value\\\":\\\"ok\\\"}\" \"not json\" > \"$1\"",
       "output file: read output file: failed to unmarshal JSON at line 2: invalid JSON"},
      {"printf \"\\xff\\xfe{}\" > \"$1\"", "failed to unmarshal JSON at line 1: invalid JSON"},
      {"printf \"[1,2]\" > \"$1\"", "at line 1: not a JSON object"},
      {"printf \"{\\\"name\\\":\\\"x\\\",\\\"value\\\":{\\\"a\\\":1}}\" > \"$2\"",
       "export file: read env file: key \"x\": cannot convert value type \"struct\" to string"},
      {"head -c 3000000 /dev/zero | tr \"\\\\0\" \"[\" > \"$1\"", "at line 1: nested deeper than 64 levels"},
  };
  for (const auto& c : cases) {
    Output o = box.Run({"run", "-f", box.Write("o.yml", WriterStep(c.script))});
    EXPECT_EQ(o.exit_code, 1) << c.script << "\n" << o.err;
    EXPECT_THAT(o.err, HasSubstr(c.error)) << c.script;
  }
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

// An export the environment cannot hold (a NUL in its value or name) fails the step that wrote
// it, naming the key; the next step is not started (it used to be blamed: "exec: environment
// variable "NV" contains a NUL byte", and every later exec step with it).
TEST(HostileOutputs, ExportWithANulFailsTheStepThatWroteIt) {
  Sandbox box;
  for (const std::string line : {R"({"name":"NV","value":"a\u0000b"})", R"({"name":"N\u0000V","value":"ab"})"}) {
    const std::string path = box.Write("n.yml", "spec: {}\n---\nrun:\n  - name: exp\n    script: echo '" + line +
                                                    "' > \"${{ export_file }}\"\n  - name: show\n    script: echo shown\n");
    Output o = box.Run({"run", "-f", path});
    EXPECT_EQ(o.exit_code, 1) << line << "\n" << o.err;
    EXPECT_THAT(o.err, HasSubstr("step \"exp\": export file: read env file: key \"N")) << line;
    EXPECT_THAT(o.err, HasSubstr("contains a NUL byte")) << line;
    EXPECT_THAT(o.out, Not(HasSubstr("shown"))) << line;
  }
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

TEST(HostileOutputs, EndlessWriterIsEndedByTheTimeout) {
  Sandbox box;
  // Writes its output file forever (in small lines, so the disk is not filled in a second).
  std::string path = box.Write(
      "w.yml", WriterStep("while :; do echo "
                          "\"{\\\"name\\\":\\\"x\\\",\\\"value\\\":\\\"y\\\"}\"; sleep 0.001; done > \"$1\""));
  Output o = box.Run({"run", "-f", path, "--timeout", "1s", "--grace", "1s"});
  EXPECT_EQ(o.exit_code, 124) << o.err;
  EXPECT_THAT(o.err, HasSubstr("timed out"));
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());  // the output file went with the temp dir
}

// A value nested a million levels deep parsed (nlohmann's parser is iterative), but copying it
// and converting it to a google.protobuf.Value recursed: the runner died with SIGSEGV, and
// through the service every job of the server with it. Now lines nest at most 64 levels.
TEST(HostileOutputs, DeeplyNestedValueIsAClearError) {
  Sandbox box;
  std::string path = box.Write(
      "n.yml", "spec:\n  outputs:\n    x: {type: array}\n---\nexec:\n  command: [bash, -c, '{ printf "
               "%s \"{\\\"name\\\":\\\"x\\\",\\\"value\\\":\"; head -c 1000000 /dev/zero | tr \"\\\\0\" \"[\"; "
               "head -c 1000000 /dev/zero | tr \"\\\\0\" \"]\"; echo \"}\"; } > \"$1\"', bash, "
               "\"${{ output_file }}\"]\n");
  Output o = box.Run({"run", "-f", path});
  EXPECT_EQ(o.signal, 0);
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("output file: read output file: failed to unmarshal JSON at line 1: "
                               "nested deeper than 64 levels"));
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

// The output file was read whole before its size was compared with the limit, so a step that
// left a huge output file made the runner allocate until memory ran out. Both files are sparse
// here (a 1 GiB line that is mostly NUL bytes, a 64 GiB export file), so they cost no disk. The
// runner is held to 2 GiB of address space so a regression shows up as a crash, not as an
// exhausted machine.
TEST(HostileOutputs, SparseHugeFilesAreNotReadWhole) {
  Sandbox box;
  std::string line = box.Write(
      "l.yml", WriterStep("printf %s \"{\\\"name\\\":\\\"x\\\",\\\"value\\\":\\\"\" > \"$1\"; "
                          "truncate -s 1G \"$1\""));
  Output o = box.RunLimited("2147483648", {"run", "-f", line});
  EXPECT_EQ(o.signal, 0);
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("output file: larger than 67108864 bytes"));
  Output e = box.RunLimited("2147483648", {"run", "-f", box.Write("e.yml", WriterStep("truncate -s 64G \"$2\""))});
  EXPECT_EQ(e.signal, 0);
  EXPECT_EQ(e.exit_code, 1) << e.err;
  EXPECT_THAT(e.err, HasSubstr("export file: larger than 67108864 bytes"));
  // A FIFO in place of the output file is refused, not opened (that would wait for a writer).
  Output f = box.Run({"run", "-f", box.Write("f.yml", WriterStep("rm \"$1\"; mkfifo \"$1\""))});
  EXPECT_EQ(f.exit_code, 1) << f.err;
  EXPECT_THAT(f.err, HasSubstr("not a regular file"));
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

// --- durations ----------------------------------------------------------------------------------

TEST(HostileDurations, NegativeAndHugeFlagsAreUsageErrors) {
  Sandbox box;
  std::string path = box.Write("s.yml", "spec: {}\n---\nrun:\n  - name: a\n    script: touch " +
                                            box.dir() / "ran" + "\n");
  struct Case {
    std::vector<std::string> flags;
    std::string error;
  } cases[] = {
      {{"--timeout", "-1s"}, "--timeout: invalid duration \"-1s\": negative durations are not allowed"},
      {{"--timeout", "999999999h"}, "--timeout: invalid duration \"999999999h\": too large"},
      {{"--timeout", "-0.5ms"}, "negative durations are not allowed"},
      {{"--timeout", "1e3s"}, "--timeout: invalid duration \"1e3s\""},
      {{"--timeout", "1"}, "missing or unknown unit"},
      {{"--grace", "-5s"}, "--grace: invalid duration \"-5s\": negative durations are not allowed"},
      {{"--grace", "106751d"}, "--grace: invalid duration"},
      {{"--timeout", "2562047h"}, "--timeout: invalid duration \"2562047h\": too large (the limit is 87600h0m0s)"},
      {{"--grace", "87600h0.001s"}, "--grace: invalid duration \"87600h0.001s\": too large"},
      {{"--timeout", "10s", "--warn-before", "-1s"}, "--warn-before: invalid duration"},
      {{"--timeout", "10s", "--warn-before", "20s"}, "--warn-before must be shorter than --timeout"},
      {{"--warn-before", "1s"}, "--warn-before needs --timeout"},
      {{"--timeout", "10s", "--warn-signal", "SIGNOPE"}, "--warn-signal: unknown signal \"SIGNOPE\""},
      {{"--timeout", "10s", "--warn-signal", "-9"}, "--warn-signal: unknown signal \"-9\""},
      // A warning is for diagnosing a stuck job: one that kills or freezes it is refused.
      {{"--timeout", "10s", "--warn-before", "5s", "--warn-signal", "SIGKILL"},
       "--warn-signal: SIGKILL cannot be a warning: it ends the process (use --timeout)"},
      {{"--timeout", "10s", "--warn-before", "5s", "--warn-signal", "9"},
       "--warn-signal: SIGKILL cannot be a warning"},
      {{"--timeout", "10s", "--warn-before", "5s", "--warn-signal", "SIGSTOP"},
       "--warn-signal: SIGSTOP cannot be a warning: it freezes the process"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args{"run", "-f", path};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    Output o = box.Run(args);
    ExpectStepFileError(o, c.error);
  }
  EXPECT_FALSE(std::filesystem::exists(box.dir() / "ran"));
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

// Found by fuzz/duration_fuzz.cc: ParseDuration used std::stold, which throws std::out_of_range
// for a number of thousands of digits (overflow or underflow of long double); nothing caught it,
// so `--timeout`, `cancel: {grace: …}` or `finally_timeout: …` with such a number aborted the
// runner — and through RunRequest.steps, the whole server. Fixed in src/util/time.cc (strtold).
TEST(HostileDurations, ThousandsOfDigits) {
  const std::string huge = std::string(5000, '9') + "s";
  const std::string tiny = "0." + std::string(5000, '0') + "1s";
  for (const std::string& text : {huge, tiny, "1" + std::string(400, '0') + "ns"}) {
    auto d = ParseDuration(text);
    if (text == tiny) {
      ASSERT_TRUE(d.ok()) << d.error().message.substr(0, 200);
      EXPECT_EQ(d->count(), 0);
    } else {
      ASSERT_FALSE(d.ok());
      EXPECT_THAT(d.error().message, HasSubstr("too large"));
    }
  }
  Sandbox box;
  std::string path = box.Write("s.yml", "spec: {}\n---\nrun:\n  - name: a\n    script: touch " +
                                            box.dir() / "ran" + "\n");
  ExpectStepFileError(box.Run({"run", "-f", path, "--timeout", huge}), "too large");
  ExpectStepFileError(
      box.Run({"run", "-f", box.Write("g.yml", "spec: {}\n---\nexec: {command: [true]}\ncancel: "
                                               "{grace: " + huge + "}\n")}),
      "g.yml:4:17: cancel grace: invalid duration");
  ExpectStepFileError(
      box.Run({"run", "-f", box.Write("f.yml", "spec: {}\n---\nrun: []\nfinally_timeout: -" + huge + "\n")}),
      "f.yml:4:18: finally_timeout: invalid duration");
  EXPECT_FALSE(std::filesystem::exists(box.dir() / "ran"));
  EXPECT_THAT(box.Leftovers(), ::testing::IsEmpty());
}

// Durations near the int64 nanosecond limit that Go's ParseDuration accepts (2562047h) overflowed
// `now + d` (undefined behaviour; in practice a deadline in the past): `--timeout 2562047h` timed
// the job out at once and `--grace 2562047h` killed at once. Durations are now held to 10 years
// (kMaxDuration, as RunRequest's were); the largest accepted values mean what they say.
TEST(HostileDurations, LargestTimeoutDoesNotFireAtOnce) {
  Sandbox box;
  std::string path = box.Write("s.yml", "spec: {}\n---\nrun:\n  - name: a\n    script: echo done\n");
  Output o = box.Run({"run", "-f", path, "--timeout", "87600h", "--grace", "87600h"});
  EXPECT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("done"));
}

TEST(HostileDurations, LargestGraceIsStillAGrace) {
  Sandbox box;
  // The trap takes a moment, as real cleanup does; an immediate SIGKILL cuts it off. The
  // timeout leaves bash (slow to start on a loaded machine) ample time to set the trap first.
  std::string path = box.Write(
      "t.yml", "spec: {}\n---\nrun:\n  - name: trap\n    script: |\n      trap 'sleep 1; echo cleaned > " +
                   box.dir() / "marker" + "; exit 0' TERM\n      while true; do sleep 0.05; done\n");
  Output o = box.Run({"run", "-f", path, "--timeout", "5s", "--grace", "87600h"});
  EXPECT_EQ(o.exit_code, 124) << o.err;
  EXPECT_EQ(box.dir().Read("marker"), "cleaned\n");
}

// --- masking ----------------------------------------------------------------------------------------

// Found by fuzz_masker (unit test: src/expr/mask_test.cc SecretWithABorderSplitAcrossWrites): a
// secret whose start repeats its end, printed twice in a row with the second copy split across
// writes, reached the output in clear.
TEST(HostileMasker, MaskedJobVariableSplitAcrossWrites) {
  Sandbox box;
  // The step prints the secret twice, the second copy in two writes a moment apart (separate
  // reads for the runner). Whatever the timing, the secret must not reach the output.
  std::string path = box.Write(
      "m.yml", "spec: {}\n---\nrun:\n  - name: leak\n    script: printf %s "
               "\"${{ job.TOKEN }}\"; sleep 0.3; printf a; sleep 0.3; printf aba; echo\n");
  Output o = box.Run({"run", "-f", path, "--masked-job", "TOKEN=aaba"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, Not(HasSubstr("aaba")));
  EXPECT_THAT(o.out, HasSubstr("[MASKED][MASKED]"));
}

// The same at a large read: megabytes of output grow the runner's pipe (reads of up to 1 MiB), and
// the value's two halves arrive in different reads.
TEST(HostileMasker, MaskedJobVariableSplitAtALargeRead) {
  Sandbox box;
  std::string path = box.Write(
      "m.yml", "spec: {}\n---\nrun:\n  - name: big\n    script: |\n"
               "      head -c 3145724 /dev/zero | tr '\\0' x; printf TOPS; sleep 0.3\n"
               "      printf ECRETVALUE; head -c 2000000 /dev/zero | tr '\\0' y\n");
  Output o = box.Run({"run", "-f", path, "--masked-job", "TOKEN=TOPSECRETVALUE"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_EQ(o.out.find("TOPSECRETVALUE"), std::string::npos);
  const std::string expected = std::string(3145724, 'x') + "[MASKED]" + std::string(2000000, 'y');
  const size_t at = o.out.find(expected.substr(0, 100));
  ASSERT_NE(at, std::string::npos);
  EXPECT_TRUE(o.out.compare(at, expected.size(), expected) == 0) << "the output differs from the step's";
}

TEST(HostileMasker, ShortSecretsAreNotMasked) {
  // Documented limit: values shorter than 4 bytes are not masked (docs/limits.md).
  Sandbox box;
  std::string path = box.Write("m.yml", "spec: {}\n---\nrun:\n  - name: s\n    script: echo "
                                        "\"short=${{ job.A }} long=${{ job.B }}\"\n");
  Output o = box.Run({"run", "-f", path, "--masked-job", "A=abc", "--masked-job", "B=abcd"});
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("short=abc long=[MASKED]"));
}
}  // namespace
}  // namespace sr::test
