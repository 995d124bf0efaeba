// YAML merge keys (`<<`), applied as Go's yaml.v3 applies them before its strict known-fields
// check: every reader (schema checks, env, inputs, exec, values) sees the merged mapping.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "stepfile/stepfile.h"

namespace sr::stepfile {
namespace {

using ::testing::HasSubstr;

Result<StepFile> ParseMerged(const std::string& definition) {
  return ParseStepFile("spec: {}\n---\n" + definition, "m.yml");
}

std::string MergedErrorOf(const std::string& definition) {
  auto f = ParseMerged(definition);
  return f.ok() ? "<ok>" : f.error().message;
}

TEST(MergeKeys, RunItemTakesTheAnchoredFields) {
  auto f = ParseMerged(
      "run:\n"
      "  - &s {name: a, script: echo anchored}\n"
      "  - <<: *s\n"
      "    name: b\n");
  ASSERT_TRUE(f.ok()) << f.error().message;
  ASSERT_EQ(f->definition.run.size(), 2u);
  const Invocation& b = f->definition.run[1];
  EXPECT_EQ(b.name, "b");  // the explicit key wins over the merged one
  EXPECT_EQ(b.inputs.at("script"), "echo anchored");
}

TEST(MergeKeys, EnvAndExec) {
  auto f = ParseMerged(
      "env:\n"
      "  <<: &e {A: from-merge, B: from-merge}\n"
      "  B: explicit\n"
      "exec:\n"
      "  <<: {command: [echo, hi], work_dir: /w}\n");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->definition.env,
            (std::map<std::string, std::string>{{"A", "from-merge"}, {"B", "explicit"}}));
  EXPECT_EQ(f->definition.command, (std::vector<std::string>{"echo", "hi"}));
  EXPECT_EQ(f->definition.work_dir, "/w");
}

TEST(MergeKeys, ListOfMapsEarlierWinsAndExplicitWinsOverAll) {
  auto f = ParseMerged(
      "run:\n"
      "  - name: a\n"
      "    step: ./a\n"
      "    inputs:\n"
      "      <<: [&x {p: x, q: x}, &y {p: y, q: y, r: y}]\n"
      "      q: own\n");
  ASSERT_TRUE(f.ok()) << f.error().message;
  const auto& in = f->definition.run[0].inputs;
  EXPECT_EQ(in.at("p"), "x");
  EXPECT_EQ(in.at("q"), "own");
  EXPECT_EQ(in.at("r"), "y");
  EXPECT_EQ(in.size(), 3u);
}

TEST(MergeKeys, NestedMergesAndValues) {
  // A merged mapping that merges another itself; and a merge inside an input's value.
  auto f = ParseMerged(
      "run:\n"
      "  - &base {name: a, step: ./s}\n"
      "  - &mid {<<: *base, name: b}\n"
      "  - <<: *mid\n"
      "    name: c\n"
      "    inputs: {v: {<<: {k: 1, j: 2}, j: 3}}\n");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->definition.run[1].name, "b");
  EXPECT_EQ(f->definition.run[2].name, "c");
  EXPECT_EQ(f->definition.run[2].step.path, f->definition.run[0].step.path);
  EXPECT_EQ(f->definition.run[2].inputs.at("v").dump(), "{\"j\":3,\"k\":1}");
}

TEST(MergeKeys, MergedKeysAreCheckedStrictlyWhereTheyWereWritten) {
  // A merged key's errors name the place it was written (line 6, inside the anchored mapping).
  EXPECT_EQ(MergedErrorOf("run:\n"
                    "  - name: a\n"
                    "    step: ./a\n"
                    "    inputs: {v: &i {bad-name: 1}}\n"
                    "  - name: b\n"
                    "    step: ./b\n"
                    "    inputs: {<<: *i}\n"),
            "m.yml:6:21: run[1] \"b\": invalid input name \"bad-name\": must match "
            "^[a-zA-Z_][a-zA-Z0-9_]*$");
  EXPECT_THAT(MergedErrorOf("run:\n"
                      "  - name: a\n"
                      "    step: ./a\n"
                      "    inputs: {v: &i {name: b, scrpt: y}}\n"
                      "  - <<: *i\n"),
              HasSubstr("m.yml:6:30: unknown key \"scrpt\" in run[1] \"b\""));
  // The definition reads `run:` before `env:`: the merged env key is an unknown run-item key.
  EXPECT_THAT(MergedErrorOf("env: &e {A: 1}\nrun:\n  - {<<: *e, name: x, script: y}\n"),
              HasSubstr("m.yml:3:10: unknown key \"A\" in run[0] \"x\""));
}

TEST(MergeKeys, NonMappingValueIsAnErrorAtTheMergeKey) {
  const std::string what =
      "the value of a merge key (<<) must be a mapping or a list of mappings, got ";
  EXPECT_EQ(MergedErrorOf("env:\n  <<: 1\nexec: {command: [a]}\n"), "m.yml:4:3: " + what + "a scalar");
  EXPECT_EQ(MergedErrorOf("env:\n  <<:\nexec: {command: [a]}\n"), "m.yml:4:3: " + what + "null");
  EXPECT_EQ(MergedErrorOf("env:\n  <<: [{A: 1}, x]\nexec: {command: [a]}\n"),
            "m.yml:4:3: " + what + "a list whose item 1 is a scalar");
  // As in yaml.v3, an alias must name a mapping, even a list of mappings will not do.
  EXPECT_EQ(MergedErrorOf("run:\n  - &l [{a: 1}]\n  - {<<: *l}\n"),
            "m.yml:5:6: " + what + "an alias to a list");
}

TEST(MergeKeys, DuplicatesAreOnlyExplicitOnes) {
  // Explicit twice: still a duplicate, even with a merge beside it.
  EXPECT_EQ(MergedErrorOf("env: {<<: {A: x}, B: 1, B: 2}\nexec: {command: [a]}\n"),
            "m.yml:3:25: duplicate key \"B\" in env (first at line 3)");
  // Two merge keys in one mapping are a duplicate too (yaml.v3: "already defined").
  EXPECT_EQ(MergedErrorOf("env:\n  <<: {A: x}\n  <<: {B: x}\nexec: {command: [a]}\n"),
            "m.yml:5:3: duplicate key \"<<\" (first at line 4)");
  // Merged and explicit: not a duplicate; neither are two merged maps sharing a key.
  EXPECT_EQ(MergedErrorOf("env: {<<: [{A: x, B: y}, {B: z}], A: 1}\nexec: {command: [a]}\n"), "<ok>");
}

TEST(MergeKeys, QuotedOrTaggedKeys) {
  // A quoted '<<' is an ordinary key (an invalid variable name here); `!!merge <<` is a merge.
  EXPECT_THAT(MergedErrorOf("env: {'<<': {A: x}}\nexec: {command: [a]}\n"),
              HasSubstr("invalid variable name \"<<\""));
  auto f = ParseMerged("env: {!!merge <<: {A: x}}\nexec: {command: [a]}\n");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->definition.env.at("A"), "x");
}

TEST(MergeKeys, InvocationListsAndSpecDocument) {
  auto list = ParseInvocationList("- &a {name: x, script: one}\n- {<<: *a, name: y}\n", "l.yml");
  ASSERT_TRUE(list.ok()) << list.error().message;
  EXPECT_EQ((*list)[1].inputs.at("script"), "one");
  auto f = ParseStepFile(
      "spec:\n  inputs:\n    a: &t {type: string, default: d}\n    b: {<<: *t}\n---\n"
      "exec: {command: [a]}\n",
      "m.yml");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->spec.inputs.at("b").default_value, "d");
}

}  // namespace
}  // namespace sr::stepfile
