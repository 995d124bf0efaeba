// yaml-cpp leniencies we close (docs/step-language.md, Parsing): each is an error with its
// position, as in Go's yaml.v3.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "stepfile/stepfile.h"

namespace sr::stepfile {
namespace {

using ::testing::HasSubstr;

std::string ErrorOf(const std::string& definition) {
  auto f = ParseStepFile("spec: {}\n---\n" + definition, "q.yml");
  return f.ok() ? "" : f.error().message;
}

TEST(YamlQuirks, UnclosedQuotedScalarIsAnError) {
  EXPECT_THAT(ErrorOf("run:\n  - name: a\n    script: \"echo x\n  - name: b\n    script: echo b\n"),
              HasSubstr("q.yml:5:13: invalid YAML: found unexpected end of stream while scanning a quoted scalar"));
  EXPECT_THAT(ErrorOf("exec:\n  command: ['a]\n"), HasSubstr("q.yml:4:13:"));
  EXPECT_THAT(ErrorOf("exec:\n  command: [!!str \"a]\n"), HasSubstr("quoted scalar"));
  // Closed ones, with escapes and doubled quotes, are fine.
  EXPECT_EQ(ErrorOf("exec:\n  command: [\"a\\\"b\", 'it''s', \"c\\\\\"]\n"), "");
}

TEST(YamlQuirks, LocalAndMalformedTagsAreErrors) {
  EXPECT_THAT(ErrorOf("exec:\n  command: [a, !foo b]\n"), HasSubstr("q.yml:4:16: unsupported tag \"!foo\""));
  EXPECT_THAT(ErrorOf("exec:\n  command: [a, !\\x41]\n"), HasSubstr("whitespace after a tag"));
  EXPECT_EQ(ErrorOf("exec:\n  command: [a, ! b, !!str c]\n"), "");
}

}  // namespace
}  // namespace sr::stepfile
