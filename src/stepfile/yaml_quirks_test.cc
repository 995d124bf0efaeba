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

TEST(YamlQuirks, NextLineAndNoBreakSpaceEscapesAreUtf8) {
  // yaml-cpp writes \N and \_ as the single bytes 0x85 and 0xA0 (not UTF-8); YAML means the
  // characters U+0085 and U+00A0, which Go has as C2 85 and C2 A0.
  auto f = ParseStepFile("spec: {}\n---\nexec: {command: [printf, \"%s\", \"\\N\\_\"]}\n", "q.yml");
  ASSERT_TRUE(f.ok()) << f.error().message;
  ASSERT_EQ(f->definition.command.size(), 3u);
  EXPECT_EQ(f->definition.command[2], "\xC2\x85\xC2\xA0");
  // 0x85 and 0xA0 inside other characters (Å, à, …) are left alone, beside the escapes too.
  f = ParseStepFile(
      "spec: {}\n---\nexec: {command: [\"\xC3\x85\\N\xC3\xA0\\_\xE2\x80\xA6\", '\\N']}\n", "q.yml");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->definition.command[0], "\xC3\x85\xC2\x85\xC3\xA0\xC2\xA0\xE2\x80\xA6");
  EXPECT_EQ(f->definition.command[1], "\\N");  // single-quoted: no escapes
}

}  // namespace
}  // namespace sr::stepfile
