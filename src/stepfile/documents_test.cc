// Step files as YAML documents: the spec and the definition, how many documents a file may have
// and in which order (reference.md 1.1), errors with positions.
#include "stepfile/stepfile.h"
#include "stepfile/parse_test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace sr::stepfile {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

using test::Def;
using test::ErrorOf;
using test::Parse;

TEST(Documents, EmptySpecForms) {
  for (const char* text :
       {"spec:\n---\nexec: {command: [a]}\n", "{}\n---\nexec: {command: [a]}\n",
        "---\n---\nexec: {command: [a]}\n", "spec: {}\n---\nexec: {command: [a]}\n",
        "spec: ~\n---\nexec: {command: [a]}\n"}) {
    auto f = Parse(text);
    ASSERT_TRUE(f.ok()) << text << ": " << f.error().message;
    EXPECT_TRUE(f->spec.inputs.empty());
    EXPECT_FALSE(f->spec.delegate_outputs);
    EXPECT_EQ(f->source, "s.yml");
    EXPECT_EQ(f->definition.command, std::vector<std::string>{"a"});
  }
}

TEST(Documents, MissingDefinition) {
  for (const char* text : {"", "spec:\n", "spec: {}\n...\n"}) {
    std::string e = ErrorOf(Parse(text));
    EXPECT_THAT(e, StartsWith("s.yml:1:1: the definition document is missing")) << text;
    EXPECT_THAT(e, HasSubstr("`---`"));
  }
  // A definition without its spec says so.
  EXPECT_THAT(ErrorOf(Parse("exec: {command: [a]}\n")), HasSubstr("looks like a definition alone"));
}

TEST(Documents, ThirdDocumentIsAnError) {
  EXPECT_EQ(ErrorOf(Parse("spec:\n---\nrun: []\n---\nrun: []\n")),
            "s.yml:4:1: a step file has exactly two documents (the spec, then the definition); a "
            "third one starts here");
}

// Go decodes two documents and never reads a third, so a trailing `---` (an empty document: only
// comments, or null) is accepted, as there. One that holds a value is still refused (above): Go
// would drop it without a word.
TEST(Documents, TrailingEmptyDocumentsAreIgnoredAsInGo) {
  for (const char* trailer :
       {"---\n", "---", "--- \n", "---\n# the end\n\n", "---\n~\n", "--- null\n", "---\n---\n",
        "---\n...\n"}) {
    auto f = Parse(std::string("spec:\n  inputs:\n    v: {type: string}\n---\nrun:\n  - name: x\n"
                               "    script: echo hi\n") + trailer);
    ASSERT_TRUE(f.ok()) << trailer << ": " << f.error().message;
    EXPECT_EQ(f->spec.inputs.size(), 1u) << trailer;
    ASSERT_EQ(f->definition.run.size(), 1u) << trailer;
    EXPECT_EQ(f->definition.run[0].name, "x") << trailer;
  }
  // After an empty one, a document that holds something is refused where it starts.
  EXPECT_THAT(ErrorOf(Parse("spec:\n---\nrun: []\n---\n---\nrun: []\n")),
              StartsWith("s.yml:5:1: a step file has exactly two documents"));
  EXPECT_THAT(ErrorOf(Parse("spec:\n---\nrun: []\n---\n\"\"\n")), StartsWith("s.yml:4:1: "));
  EXPECT_THAT(ErrorOf(Parse("spec:\n---\nrun: []\n---\n[]\n")), StartsWith("s.yml:4:1: "));
  // An empty definition is still a missing one: only documents after the second are dropped.
  EXPECT_THAT(ErrorOf(Parse("spec:\n---\n---\n")), HasSubstr("at least one of exec or run"));
}

TEST(Documents, OutOfOrder) {
  EXPECT_THAT(ErrorOf(Parse("exec: {command: [a]}\n---\nspec:\n")),
              StartsWith("s.yml:1:1: unknown key \"exec\" in the spec document (allowed: spec)"));
}

TEST(Documents, YamlSyntaxErrorHasPosition) {
  EXPECT_THAT(ErrorOf(Def("exec: {command: [a\n")), StartsWith("s.yml:"));
  EXPECT_THAT(ErrorOf(Def("run:\n  - name: a\n   script: b\n")), HasSubstr("invalid YAML"));
  EXPECT_THAT(ErrorOf(Def("run: *nope\n")), StartsWith("s.yml:3:6: invalid YAML"));
}

}  // namespace
}  // namespace sr::stepfile
