// Contract 4.1: an unknown key at any level is an error naming the key, where it is and its
// line. Each row inserts one line into a valid file and expects the error at exactly that line.
#include <gtest/gtest.h>

#include <sstream>

#include "stepfile/stepfile.h"

namespace sr::stepfile {
namespace {

constexpr const char* kSequenceFile = R"(spec:
  inputs:
    n:
      type: string
  outputs:
    o:
      type: string
---
run:
  - name: a
    step:
      git:
        url: x
        rev: y
finally:
  - name: f
    script: x
diagnose:
  - name: d
    script: y
cancel:
  signal: INT
)";

constexpr const char* kExecFile = R"(spec:
---
exec:
  command: [a]
env:
  A: b
)";

// `text` with `line` inserted after line number `after` (1-based).
std::string Insert(const std::string& text, int after, const std::string& line) {
  std::istringstream in(text);
  std::string out, l;
  for (int n = 1; std::getline(in, l); ++n) {
    out += l + "\n";
    if (n == after) out += line + "\n";
  }
  return out;
}

TEST(Strict, BaseFilesAreValid) {
  for (const char* text : {kSequenceFile, kExecFile}) {
    auto f = ParseStepFile(text, "s.yml");
    EXPECT_TRUE(f.ok()) << f.error().message;
  }
}

struct UnknownKeyRow {
  const char* file;
  int after;
  std::string line;
  std::string message;
};
void PrintTo(const UnknownKeyRow& r, std::ostream* os) { *os << '"' << r.line << '"'; }

class UnknownKey : public ::testing::TestWithParam<UnknownKeyRow> {};

TEST_P(UnknownKey, IsAnErrorAtItsLine) {
  const UnknownKeyRow& row = GetParam();
  auto f = ParseStepFile(Insert(row.file, row.after, row.line), "s.yml");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().kind, Error::Kind::kInvalid);
  EXPECT_EQ(f.error().message, row.message);
}

INSTANTIATE_TEST_SUITE_P(
    EveryLevel, UnknownKey,
    ::testing::Values(
        UnknownKeyRow{kSequenceFile, 7, "extra: 1",
            "s.yml:8:1: unknown key \"extra\" in the spec document (allowed: spec)"},
        UnknownKeyRow{kSequenceFile, 1, "  additional: 1",
            "s.yml:2:3: unknown key \"additional\" in spec (allowed: inputs, outputs)"},
        UnknownKeyRow{kSequenceFile, 4, "      descripton: x",
            "s.yml:5:7: unknown key \"descripton\" in input \"n\" (allowed: type, default, "
            "sensitive, description)"},
        UnknownKeyRow{kSequenceFile, 7, "      optional: true",
            "s.yml:8:7: unknown key \"optional\" in output \"o\" (allowed: type, default, "
            "sensitive, description)"},
        UnknownKeyRow{kSequenceFile, 8, "type: exec",
            "s.yml:9:1: unknown key \"type\" in the definition (allowed: run, env, outputs, "
            "delegate, finally, finally_timeout, diagnose, cancel, resources)"},
        UnknownKeyRow{kSequenceFile, 10, "    with: {}",
            "s.yml:11:5: unknown key \"with\" in run[0] \"a\" (allowed: name, step, script, "
            "action, inputs, env, resources, timeout)"},
        UnknownKeyRow{kSequenceFile, 11, "      zip: x",
            "s.yml:12:7: unknown key \"zip\" in step (allowed: git, oci)"},
        UnknownKeyRow{kSequenceFile, 14, "        branch: z",
            "s.yml:15:9: unknown key \"branch\" in git (allowed: url, rev, dir, file)"},
        UnknownKeyRow{kSequenceFile, 16, "    when: always",
            "s.yml:17:5: unknown key \"when\" in finally[0] \"f\" (allowed: name, step, script, "
            "action, inputs, env, resources, timeout)"},
        UnknownKeyRow{kSequenceFile, 19, "    retries: 1",
            "s.yml:20:5: unknown key \"retries\" in diagnose[0] \"d\" (allowed: name, step, "
            "script, action, inputs, env, resources, timeout)"},
        UnknownKeyRow{kSequenceFile, 22, "  grce: 1s",
            "s.yml:23:3: unknown key \"grce\" in cancel (allowed: signal, grace)"},
        UnknownKeyRow{kExecFile, 3, "  comand: [a]",
            "s.yml:4:3: unknown key \"comand\" in exec (allowed: command, work_dir)"},
        UnknownKeyRow{kExecFile, 6, "type: exec",
            "s.yml:7:1: unknown key \"type\" in the definition (allowed: exec, env, cancel, resources)"},
        UnknownKeyRow{kExecFile, 6, "cancel: {signal: INT, after: 1s}",
            "s.yml:7:23: unknown key \"after\" in cancel (allowed: signal, grace)"}));

// Repeated keys would silently lose one value in yaml-cpp; they are errors at every level too.
INSTANTIATE_TEST_SUITE_P(
    Duplicates, UnknownKey,
    ::testing::Values(UnknownKeyRow{kSequenceFile, 4, "      type: number",
                          "s.yml:5:7: duplicate key \"type\" in input \"n\" (first at line 4)"},
                      UnknownKeyRow{kSequenceFile, 10, "    name: b",
                          "s.yml:11:5: duplicate key \"name\" in run[0] \"a\" (first at line 10)"},
                      UnknownKeyRow{kExecFile, 6, "env: {}",
                          "s.yml:7:1: duplicate key \"env\" in the definition (first at line 5)"},
                      UnknownKeyRow{kExecFile, 6, "  A: c",
                          "s.yml:7:3: duplicate key \"A\" in env (first at line 6)"}));

TEST(Strict, DescriptionIsAllowedOnInputsAndOutputsOnly) {
  auto ok = ParseStepFile(
      Insert(Insert(kSequenceFile, 7, "      description: out"), 4, "      description: in"),
      "s.yml");
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->spec.inputs.at("n").description, "in");
  EXPECT_EQ(ok->spec.outputs.at("o").description, "out");
  auto bad = ParseStepFile(Insert(kSequenceFile, 8, "description: x"), "s.yml");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message.substr(0, 40), "s.yml:9:1: unknown key \"description\" in ");
}

}  // namespace
}  // namespace sr::stepfile
