// YAML → JSON values, resolved like Go's yaml.v3 (see the top of value.cc).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "stepfile/stepfile.h"

namespace sr::stepfile {
namespace {

using ::testing::HasSubstr;

// The value of input `v` in a one-item invocation list, as compact JSON (dump() tells 3 from 3.0).
std::string ValueOf(const std::string& yaml) {
  auto list = ParseInvocationList("- step: ./x\n  inputs:\n    v: " + yaml + "\n", "t.yml");
  if (!list.ok()) return "error: " + list.error().message;
  return (*list)[0].inputs.at("v").dump();
}

struct ScalarRow {
  std::string yaml;
  std::string json;
};
void PrintTo(const ScalarRow& r, std::ostream* os) { *os << '"' << r.yaml << '"'; }

class Scalars : public ::testing::TestWithParam<ScalarRow> {};

TEST_P(Scalars, Resolve) { EXPECT_EQ(ValueOf(GetParam().yaml), GetParam().json); }

INSTANTIATE_TEST_SUITE_P(
    CoreSchema, Scalars,
    ::testing::Values(
        // booleans: YAML 1.2 spellings only
        ScalarRow{"true", "true"}, ScalarRow{"True", "true"}, ScalarRow{"TRUE", "true"}, ScalarRow{"false", "false"},
        ScalarRow{"FALSE", "false"}, ScalarRow{"yes", "\"yes\""}, ScalarRow{"on", "\"on\""}, ScalarRow{"tRue", "\"tRue\""},
        // nulls
        ScalarRow{"null", "null"}, ScalarRow{"Null", "null"}, ScalarRow{"~", "null"}, ScalarRow{"", "null"},
        ScalarRow{"nil", "\"nil\""},
        // integers stay integers, with Go's base-0 prefixes
        ScalarRow{"3", "3"}, ScalarRow{"-3", "-3"}, ScalarRow{"+3", "3"}, ScalarRow{"0", "0"}, ScalarRow{"0x1F", "31"},
        ScalarRow{"0o17", "15"}, ScalarRow{"017", "15"}, ScalarRow{"0b101", "5"}, ScalarRow{"-0b101", "-5"},
        ScalarRow{"1_000", "1000"}, ScalarRow{"9223372036854775807", "9223372036854775807"},
        ScalarRow{"-9223372036854775808", "-9223372036854775808"},
        ScalarRow{"9223372036854775808", "9223372036854775808"},      // uint64
        ScalarRow{"18446744073709551616", "1.8446744073709552e+19"},  // past uint64: a float
        // floats
        ScalarRow{"1.5", "1.5"}, ScalarRow{"1e3", "1000.0"}, ScalarRow{"1.", "1.0"}, ScalarRow{".5", "0.5"},
        ScalarRow{"-.5", "-0.5"}, ScalarRow{"08", "8.0"},  // not octal, not an integer, but a float (Go)
        ScalarRow{"1e400", "\"1e400\""},             // overflow: Go keeps the text
        // strings
        ScalarRow{"1.2.3", "\"1.2.3\""}, ScalarRow{"2001-12-14", "\"2001-12-14\""}, ScalarRow{"0x", "\"0x\""},
        ScalarRow{"+", "\"+\""}, ScalarRow{"-x", "\"-x\""}, ScalarRow{"abc", "\"abc\""}, ScalarRow{"_1", "\"_1\""},
        ScalarRow{"\"3\"", "\"3\""}, ScalarRow{"'true'", "\"true\""}, ScalarRow{"\"\"", "\"\""},
        ScalarRow{"'null'", "\"null\""}, ScalarRow{"|\n      3\n", "\"3\\n\""},
        ScalarRow{">-\n      a\n      b", "\"a b\""}, ScalarRow{"${{ inputs.x }}", "\"${{ inputs.x }}\""},
        ScalarRow{"héllo ✓", "\"héllo ✓\""},
        // explicit tags
        ScalarRow{"!!str 3", "\"3\""}, ScalarRow{"!!str", "\"\""}, ScalarRow{"!!int \"3\"", "3"},
        ScalarRow{"!!float 3", "3.0"}, ScalarRow{"!!bool true", "true"}, ScalarRow{"!!null ~", "null"},
        ScalarRow{"! 3", "\"3\""},
        // collections
        ScalarRow{"[1, \"a\", [true, ~]]", "[1,\"a\",[true,null]]"},
        ScalarRow{"{b: 1, a: {c: []}}", "{\"a\":{\"c\":[]},\"b\":1}"},
        ScalarRow{"{1: a, true: b}", "{\"1\":\"a\",\"true\":\"b\"}"}, ScalarRow{"[]", "[]"}, ScalarRow{"{}", "{}"},
        ScalarRow{"!!seq [1]", "[1]"}, ScalarRow{"!!map {a: 1}", "{\"a\":1}"}));

INSTANTIATE_TEST_SUITE_P(
    Rejected, Scalars,
    ::testing::Values(
        ScalarRow{".nan",
            "error: t.yml:3:8: \".nan\" is not a finite number (quote it to use it as a string)"},
        ScalarRow{"-.Inf",
            "error: t.yml:3:8: \"-.Inf\" is not a finite number (quote it to use it as a "
            "string)"},
        ScalarRow{"!!int x", "error: t.yml:3:8: cannot read \"x\" as !!int"},
        ScalarRow{"!!bool 1", "error: t.yml:3:8: cannot read \"1\" as !!bool"},
        ScalarRow{"!!float x", "error: t.yml:3:8: cannot read \"x\" as !!float"},
        ScalarRow{"!!null 0", "error: t.yml:3:8: cannot read \"0\" as !!null"},
        ScalarRow{"!!binary aGk=", "error: t.yml:3:8: unsupported tag \"tag:yaml.org,2002:binary\""},
        ScalarRow{"!!timestamp 2001-12-14",
            "error: t.yml:3:8: unsupported tag \"tag:yaml.org,2002:timestamp\""},
        ScalarRow{"!!set {a}", "error: t.yml:3:8: unsupported tag \"tag:yaml.org,2002:set\""},
        ScalarRow{"{[a]: 1}", "error: t.yml:3:9: mapping keys must be strings, got array"}));

TEST(Values, QuotedMergeKeyIsAPlainKey) { EXPECT_EQ(ValueOf("{'<<': 1}"), "{\"<<\":1}"); }

TEST(Values, MergeKeysAreApplied) {
  EXPECT_EQ(ValueOf("{<<: {a: 1, b: 1}, b: 2}"), "{\"a\":1,\"b\":2}");
}

TEST(Values, AliasesAreCopied) {
  auto list = ParseInvocationList(
      "- step: ./x\n  inputs:\n    a: &shared {k: [1, 2]}\n    b: *shared\n", "t.yml");
  ASSERT_TRUE(list.ok()) << list.error().message;
  EXPECT_EQ((*list)[0].inputs.at("b").dump(), "{\"k\":[1,2]}");
  EXPECT_EQ((*list)[0].inputs.at("a"), (*list)[0].inputs.at("b"));
}

TEST(Values, EnvKeepsScalarTextAsWritten) {
  // yaml.v3 decodes any scalar into a Go string with its text: 0x10 stays "0x10", not "16".
  auto list = ParseInvocationList(
      "- step: ./x\n  env: {A: 0x10, B: True, C: 1.50, D: ~, E: '', F: \"q\"}\n", "t.yml");
  ASSERT_TRUE(list.ok()) << list.error().message;
  EXPECT_EQ((*list)[0].env,
            (std::map<std::string, std::string>{
                {"A", "0x10"}, {"B", "True"}, {"C", "1.50"}, {"D", ""}, {"E", ""}, {"F", "q"}}));
}

TEST(Values, NullMarkPointsAtItsKey) {
  // yaml-cpp would place an omitted value at the next token (next line); we use the key.
  auto f = ParseStepFile(
      "spec:\n  inputs:\n    n:\n      type: number\n      default:\n---\nrun: []\n", "s.yml");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().message, "s.yml:5:7: input \"n\": default must be a number, got null");
}

TEST(Values, TabsAndCrLfAreFine) {
  auto f = ParseStepFile("spec:\r\n---\r\nexec:\r\n  command: [\"a\tb\"]\r\n", "s.yml");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->definition.command[0], "a\tb");
}

TEST(Values, Utf8BomIsAccepted) {
  auto f = ParseStepFile("\xEF\xBB\xBFspec:\n---\nexec: {command: [a]}\n", "s.yml");
  ASSERT_TRUE(f.ok()) << f.error().message;
}

TEST(Values, DeepButAllowedValue) {
  // 60 levels inside `inputs` (the document adds 4 more) is within the 64-level limit.
  std::string v = std::string(58, '[') + "1" + std::string(58, ']');
  EXPECT_THAT(ValueOf(v), HasSubstr("[[[[1]]]]"));
}

}  // namespace
}  // namespace sr::stepfile
