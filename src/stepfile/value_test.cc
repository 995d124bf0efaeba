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

struct Row {
  std::string yaml;
  std::string json;
};
void PrintTo(const Row& r, std::ostream* os) { *os << '"' << r.yaml << '"'; }

class Scalars : public ::testing::TestWithParam<Row> {};

TEST_P(Scalars, Resolve) { EXPECT_EQ(ValueOf(GetParam().yaml), GetParam().json); }

INSTANTIATE_TEST_SUITE_P(
    CoreSchema, Scalars,
    ::testing::Values(
        // booleans: YAML 1.2 spellings only
        Row{"true", "true"}, Row{"True", "true"}, Row{"TRUE", "true"}, Row{"false", "false"},
        Row{"FALSE", "false"}, Row{"yes", "\"yes\""}, Row{"on", "\"on\""}, Row{"tRue", "\"tRue\""},
        // nulls
        Row{"null", "null"}, Row{"Null", "null"}, Row{"~", "null"}, Row{"", "null"},
        Row{"nil", "\"nil\""},
        // integers stay integers, with Go's base-0 prefixes
        Row{"3", "3"}, Row{"-3", "-3"}, Row{"+3", "3"}, Row{"0", "0"}, Row{"0x1F", "31"},
        Row{"0o17", "15"}, Row{"017", "15"}, Row{"0b101", "5"}, Row{"-0b101", "-5"},
        Row{"1_000", "1000"}, Row{"9223372036854775807", "9223372036854775807"},
        Row{"-9223372036854775808", "-9223372036854775808"},
        Row{"9223372036854775808", "9223372036854775808"},      // uint64
        Row{"18446744073709551616", "1.8446744073709552e+19"},  // past uint64: a float
        // floats
        Row{"1.5", "1.5"}, Row{"1e3", "1000.0"}, Row{"1.", "1.0"}, Row{".5", "0.5"},
        Row{"-.5", "-0.5"}, Row{"08", "8.0"},  // not octal, not an integer, but a float (Go)
        Row{"1e400", "\"1e400\""},             // overflow: Go keeps the text
        // strings
        Row{"1.2.3", "\"1.2.3\""}, Row{"2001-12-14", "\"2001-12-14\""}, Row{"0x", "\"0x\""},
        Row{"+", "\"+\""}, Row{"-x", "\"-x\""}, Row{"abc", "\"abc\""}, Row{"_1", "\"_1\""},
        Row{"\"3\"", "\"3\""}, Row{"'true'", "\"true\""}, Row{"\"\"", "\"\""},
        Row{"'null'", "\"null\""}, Row{"|\n      3\n", "\"3\\n\""},
        Row{">-\n      a\n      b", "\"a b\""}, Row{"${{ inputs.x }}", "\"${{ inputs.x }}\""},
        Row{"héllo ✓", "\"héllo ✓\""},
        // explicit tags
        Row{"!!str 3", "\"3\""}, Row{"!!str", "\"\""}, Row{"!!int \"3\"", "3"},
        Row{"!!float 3", "3.0"}, Row{"!!bool true", "true"}, Row{"!!null ~", "null"},
        Row{"! 3", "\"3\""},
        // collections
        Row{"[1, \"a\", [true, ~]]", "[1,\"a\",[true,null]]"},
        Row{"{b: 1, a: {c: []}}", "{\"a\":{\"c\":[]},\"b\":1}"},
        Row{"{1: a, true: b}", "{\"1\":\"a\",\"true\":\"b\"}"}, Row{"[]", "[]"}, Row{"{}", "{}"},
        Row{"!!seq [1]", "[1]"}, Row{"!!map {a: 1}", "{\"a\":1}"}));

INSTANTIATE_TEST_SUITE_P(
    Rejected, Scalars,
    ::testing::Values(
        Row{".nan",
            "error: t.yml:3:8: \".nan\" is not a finite number (quote it to use it as a string)"},
        Row{"-.Inf",
            "error: t.yml:3:8: \"-.Inf\" is not a finite number (quote it to use it as a "
            "string)"},
        Row{"!!int x", "error: t.yml:3:8: cannot read \"x\" as !!int"},
        Row{"!!bool 1", "error: t.yml:3:8: cannot read \"1\" as !!bool"},
        Row{"!!float x", "error: t.yml:3:8: cannot read \"x\" as !!float"},
        Row{"!!null 0", "error: t.yml:3:8: cannot read \"0\" as !!null"},
        Row{"!!binary aGk=", "error: t.yml:3:8: unsupported tag \"tag:yaml.org,2002:binary\""},
        Row{"!!timestamp 2001-12-14",
            "error: t.yml:3:8: unsupported tag \"tag:yaml.org,2002:timestamp\""},
        Row{"!!set {a}", "error: t.yml:3:8: unsupported tag \"tag:yaml.org,2002:set\""},
        Row{"{[a]: 1}", "error: t.yml:3:9: mapping keys must be strings, got array"}));

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
