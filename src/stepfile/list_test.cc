// Invocation lists (reference.md 1.8: the `ci` STEPS variable, the `run` command line) and the
// small helpers of stepfile.h.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "stepfile/stepfile.h"

namespace sr::stepfile {
namespace {

// --- invocation lists (1.8) ----------------------------------------------------------------------

TEST(InvocationList, LenientNames) {
  auto list = ParseInvocationList("- name: build-it\n  script: make\n- script: echo\n- step: ./x\n",
                                  "STEPS");
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].name, "build-it");
  EXPECT_EQ((*list)[1].name, "");
  EXPECT_EQ((*list)[2].mark.ToString(), "STEPS:4:3");
}

TEST(InvocationList, EmptyAndErrors) {
  for (const char* empty : {"", "\n", "[]", "~", "# just a comment\n"}) {
    auto list = ParseInvocationList(empty, "STEPS");
    ASSERT_TRUE(list.ok()) << empty << ": " << list.error().message;
    EXPECT_TRUE(list->empty());
  }
  auto map = ParseInvocationList("name: a\n", "STEPS");
  ASSERT_FALSE(map.ok());
  EXPECT_EQ(map.error().message, "STEPS:1:1: steps must be a list, got struct");
  auto two = ParseInvocationList("- script: a\n---\n- script: b\n", "STEPS");
  ASSERT_FALSE(two.ok());
  EXPECT_EQ(two.error().message,
            "STEPS:2:1: expected one YAML document (a list of steps); another one starts here");
  // A trailing empty document is nothing, as for a step file (yaml.v3 reads the first only).
  for (const char* trailer : {"---\n", "---\n# end\n"}) {
    auto trailing = ParseInvocationList(std::string("- script: a\n") + trailer, "STEPS");
    ASSERT_TRUE(trailing.ok()) << trailer << ": " << trailing.error().message;
    EXPECT_EQ(trailing->size(), 1u);
  }
  // A key after the list is not a `---`, though yaml-cpp starts a document there.
  auto key_after = ParseInvocationList("- name: a\n  script: echo a\nfinally: []\n", "STEPS");
  ASSERT_FALSE(key_after.ok());
  EXPECT_EQ(key_after.error().message,
            "STEPS:3:1: expected one YAML document (a list of steps); another one starts here (no "
            "`---` here: this line cannot continue the document above it)");
  auto strict = ParseInvocationList("- script: a\n  bogus: 1\n", "STEPS");
  ASSERT_FALSE(strict.ok());
  EXPECT_EQ(strict.error().message,
            "STEPS:2:3: unknown key \"bogus\" in steps[0] (allowed: name, step, script, action, "
            "inputs, env, resources, timeout)");
}

TEST(InvocationList, CommandLineForms) {
  // What the `run` command synthesises (src/cli/commands.cc).
  auto a = ParseInvocationList(
      "- step: {git: {url: \"gitlab.com/a/b\", rev: \"main\", dir: \"x\"}}", "<command line>");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ((*a)[0].step.url, "https://gitlab.com/a/b");
  EXPECT_EQ((*a)[0].step.path, std::vector<std::string>{"x"});
}

// --- small helpers -------------------------------------------------------------------------------

TEST(Helpers, MarkToString) {
  EXPECT_EQ((Mark{"a.yml", 7, 5}).ToString(), "a.yml:7:5");
  EXPECT_EQ((Mark{"a.yml", 7, 0}).ToString(), "a.yml:7");
  EXPECT_EQ((Mark{"<request>", 0, 0}).ToString(), "<request>");
}

TEST(Helpers, TypeNamesAndCheckType) {
  EXPECT_STREQ(ValueTypeName(ValueType::kStruct), "struct");
  EXPECT_EQ(JsonTypeName(Value()), "null");
  EXPECT_EQ(JsonTypeName(Value(1.5)), "number");
  EXPECT_EQ(JsonTypeName(Value::object()), "struct");
  EXPECT_EQ(JsonTypeName(Value::array()), "array");
  EXPECT_EQ(JsonTypeName(Value(true)), "boolean");
  EXPECT_TRUE(CheckType(ValueType::kNumber, Value(3)).ok());
  EXPECT_TRUE(CheckType(ValueType::kNumber, Value(3u)).ok());
  EXPECT_TRUE(CheckType(ValueType::kArray, Value::array()).ok());
  auto bad = CheckType(ValueType::kNumber, Value("3"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, Error::Kind::kInvalid);
  EXPECT_EQ(bad.error().message, "declared number, got string");
  EXPECT_EQ(CheckType(ValueType::kString, Value()).error().message, "declared string, got null");
}

}  // namespace
}  // namespace sr::stepfile
