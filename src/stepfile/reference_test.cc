// References: the short form (every row of reference.md 1.5's table), the git:/oci: objects and
// the script:/action: sugar.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "stepfile/stepfile.h"

namespace sr::stepfile {
namespace {

using ::testing::HasSubstr;
using P = Reference::Protocol;
using Path = std::vector<std::string>;

struct ShortRow {
  std::string text;
  P protocol;
  std::string url;
  std::string version;
  Path path;
  std::string filename;
};
void PrintTo(const ShortRow& r, std::ostream* os) { *os << '"' << r.text << '"'; }

class ShortReferenceTable : public ::testing::TestWithParam<ShortRow> {};

TEST_P(ShortReferenceTable, Parses) {
  const ShortRow& row = GetParam();
  auto ref = ParseShortReference(row.text);
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  EXPECT_EQ(ref->protocol, row.protocol);
  EXPECT_EQ(ref->url, row.url);
  EXPECT_EQ(ref->version, row.version);
  EXPECT_EQ(ref->path, row.path);
  EXPECT_EQ(ref->filename, row.filename);
}

INSTANTIATE_TEST_SUITE_P(
    Reference15, ShortReferenceTable,
    ::testing::Values(
        // The table of reference.md 1.5, row by row.
        ShortRow{".", P::kLocal, "", "", {"."}, "step.yml"},
        ShortRow{"./tools/lint", P::kLocal, "", "", {".", "tools", "lint"}, "step.yml"},
        ShortRow{"./tools/lint.yml", P::kLocal, "", "", {".", "tools"}, "lint.yml"},
        ShortRow{"../shared/fmt", P::kLocal, "", "", {"..", "shared", "fmt"}, "step.yml"},
        ShortRow{"/opt/steps/zip/", P::kLocal, "", "", {"/", "opt", "steps", "zip"}, "step.yml"},
        ShortRow{"/build.yml", P::kLocal, "", "", {"/"}, "build.yml"},
        ShortRow{"dist://step/oci/fetch", P::kDist, "", "", {"step", "oci", "fetch"}, "step.yml"},
        ShortRow{"gitlab.com/acme/tools@v3",
                 P::kGit,
                 "https://gitlab.com/acme/tools",
                 "v3",
                 {"steps"},
                 "step.yml"},
        ShortRow{"https://git.example.org/a/b/-/lint@main",
                 P::kGit,
                 "https://git.example.org/a/b",
                 "main",
                 {"steps", "lint"},
                 "step.yml"},
        ShortRow{"git.example.org/a/b/-/x/y/custom.yml@1.2",
                 P::kGit,
                 "https://git.example.org/a/b",
                 "1.2",
                 {"steps", "x", "y"},
                 "custom.yml"},
        ShortRow{"http://user:pw@git.example.org/r.git@dev",
                 P::kGit,
                 "http://user:pw@git.example.org/r.git",
                 "dev",
                 {"steps"},
                 "step.yml"},
        ShortRow{"${{ env.STEP_HOME }}/lint",
                 P::kDynamic,
                 "${{ env.STEP_HOME }}/lint",
                 "",
                 {},
                 "step.yml"},
        // Beyond the table.
        ShortRow{"file:///tmp/repo.git@main",
                 P::kGit,
                 "file:///tmp/repo.git",
                 "main",
                 {"steps"},
                 "step.yml"},
        ShortRow{"file:///tmp/repo.git/-/sub/x.yml@v1",
                 P::kGit,
                 "file:///tmp/repo.git",
                 "v1",
                 {"steps", "sub"},
                 "x.yml"},
        ShortRow{"  ./padded  ", P::kLocal, "", "", {".", "padded"}, "step.yml"},
        ShortRow{"./a//b/", P::kLocal, "", "", {".", "a", "b"}, "step.yml"},
        ShortRow{"dist://script", P::kDist, "", "", {"script"}, "step.yml"},
        ShortRow{"${{inputs.ref}}", P::kDynamic, "${{inputs.ref}}", "", {}, "step.yml"},
        ShortRow{"gitlab.com/a/b@feature@x",
                 P::kGit,
                 "https://gitlab.com/a/b@feature",
                 "x",
                 {"steps"},
                 "step.yml"}));

TEST(ShortReference, Errors) {
  for (const char* text : {"just-a-word", "", "gitlab.com/acme@", "@v1"}) {
    auto ref = ParseShortReference(text);
    ASSERT_FALSE(ref.ok()) << text;
    EXPECT_EQ(ref.error().kind, Error::Kind::kInvalid);
    EXPECT_EQ(ref.error().message, "expecting url@rev. got \"" + std::string(text) + "\"");
  }
  auto dist = ParseShortReference("dist://");
  ASSERT_FALSE(dist.ok());
  EXPECT_THAT(dist.error().message, HasSubstr("dist://<name>"));
}

TEST(ShortReference, ExpressionMustCloseOnTheSameLine) {
  // Go's `\${{.*}}`: '.' does not match a newline, so this is not dynamic (and not url@rev).
  auto ref = ParseShortReference("${{ a\n}}");
  ASSERT_FALSE(ref.ok());
  EXPECT_THAT(ref.error().message, HasSubstr("expecting url@rev"));
}

// One invocation through the list parser (which allows unnamed items).
Result<Invocation> One(const std::string& yaml) {
  auto list = ParseInvocationList(yaml, "t.yml");
  if (!list.ok()) return list.error();
  if (list->size() != 1) return InvalidError("expected one item");
  return (*list)[0];
}

TEST(ReferenceObject, GitForm) {
  auto inv =
      One("- step:\n    git: {url: gitlab.com/a/b, rev: v1.2, dir: tools/lint, file: x.yml}\n");
  ASSERT_TRUE(inv.ok()) << inv.error().message;
  EXPECT_EQ(inv->step.protocol, P::kGit);
  EXPECT_EQ(inv->step.url, "https://gitlab.com/a/b");
  EXPECT_EQ(inv->step.version, "v1.2");
  EXPECT_EQ(inv->step.path, (Path{"tools", "lint"}));  // no "steps" prefix in the object form
  EXPECT_EQ(inv->step.filename, "x.yml");
}

TEST(ReferenceObject, GitDefaultsAndSchemes) {
  auto root = One("- step: {git: {url: 'file:///tmp/r.git', rev: main}}\n");
  ASSERT_TRUE(root.ok()) << root.error().message;
  EXPECT_EQ(root->step.url, "file:///tmp/r.git");
  EXPECT_EQ(root->step.path, Path{});  // repository root
  EXPECT_EQ(root->step.filename, "step.yml");
  auto http = One("- step: {git: {url: 'http://h/r', rev: 3}}\n");
  ASSERT_TRUE(http.ok()) << http.error().message;
  EXPECT_EQ(http->step.url, "http://h/r");
  EXPECT_EQ(http->step.version, "3");
}

TEST(ReferenceObject, OciForm) {
  auto inv =
      One("- step:\n    oci: {registry: r.io, repository: a/b, tag: '1', dir: d/e, file: f.yml}\n");
  ASSERT_TRUE(inv.ok()) << inv.error().message;
  EXPECT_EQ(inv->step.protocol, P::kOci);
  EXPECT_EQ(inv->step.registry, "r.io");
  EXPECT_EQ(inv->step.repository, "a/b");
  EXPECT_EQ(inv->step.tag, "1");
  EXPECT_EQ(inv->step.path, (Path{"d", "e"}));
  EXPECT_EQ(inv->step.filename, "f.yml");
}

struct ErrorRow {
  std::string yaml;
  std::string message;  // the whole error text
};
void PrintTo(const ErrorRow& r, std::ostream* os) { *os << '"' << r.yaml << '"'; }

class ReferenceObjectErrors : public ::testing::TestWithParam<ErrorRow> {};

TEST_P(ReferenceObjectErrors, Fail) {
  auto inv = One(GetParam().yaml);
  ASSERT_FALSE(inv.ok());
  EXPECT_EQ(inv.error().kind, Error::Kind::kInvalid);
  EXPECT_EQ(inv.error().message, GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(
    All, ReferenceObjectErrors,
    ::testing::Values(
        ErrorRow{"- step:\n    git: {rev: v1}\n", "t.yml:2:10: field url in git: required"},
        ErrorRow{"- step:\n    git: {url: x}\n", "t.yml:2:10: field rev in git: required"},
        ErrorRow{"- step:\n    git:\n", "t.yml:2:5: field url in git: required"},
        ErrorRow{"- step:\n    oci: {repository: a, tag: b}\n",
                 "t.yml:2:10: field registry in oci: required"},
        ErrorRow{"- step:\n    oci: {registry: a, tag: b}\n",
                 "t.yml:2:10: field repository in oci: required"},
        ErrorRow{"- step:\n    oci: {registry: a, repository: b}\n",
                 "t.yml:2:10: field tag in oci: required"},
        ErrorRow{"- step: {}\n", "t.yml:1:9: field git: or oci: required"},
        ErrorRow{
            "- step:\n    git: {url: a, rev: b}\n    oci: {registry: a, repository: b, tag: c}\n",
            "t.yml:3:5: cannot use both git: and oci: fields, please specify only one step "
            "location"},
        ErrorRow{"- step:\n    git: {url: a, rev: b, branch: c}\n",
                 "t.yml:2:27: unknown key \"branch\" in git (allowed: url, rev, dir, file)"},
        ErrorRow{"- step:\n    oci: {registry: a, repository: b, tag: c, digest: d}\n",
                 "t.yml:2:47: unknown key \"digest\" in oci (allowed: registry, repository, tag, "
                 "dir, file)"},
        ErrorRow{"- step:\n    zip: x\n",
                 "t.yml:2:5: unknown key \"zip\" in step (allowed: git, oci)"},
        ErrorRow{"- step: [a]\n",
                 "t.yml:1:9: steps[0]: step must be a reference string or a mapping with git: or "
                 "oci:, got array"},
        ErrorRow{"- name: x\n  step: just-a-word\n",
                 "t.yml:2:9: steps[0] \"x\": step: expecting url@rev. got \"just-a-word\""},
        ErrorRow{"- step: {git: {url: [a], rev: b}}\n",
                 "t.yml:1:21: git url must be a string, got array"},
        // Hostile input (issue 9): `file` must stay inside the checkout.
        ErrorRow{"- step: {git: {url: a, rev: b, file: ../../x.yml}}\n",
                 "t.yml:1:38: git file \"../../x.yml\" leaves the repository"},
        ErrorRow{"- step: {git: {url: a, rev: b, file: sub/../../x.yml}}\n",
                 "t.yml:1:38: git file \"sub/../../x.yml\" leaves the repository"}));

// --- sugar ---------------------------------------------------------------------------------------

TEST(Sugar, Script) {
  auto inv = One("- name: hello\n  script: echo hi\n  env: {A: b}\n");
  ASSERT_TRUE(inv.ok()) << inv.error().message;
  EXPECT_EQ(inv->name, "hello");
  EXPECT_EQ(inv->step.protocol, P::kDist);
  EXPECT_EQ(inv->step.path, Path{"script"});
  EXPECT_EQ(inv->step.filename, "step.yml");
  ASSERT_EQ(inv->inputs.size(), 1u);
  EXPECT_EQ(inv->inputs.at("script"), "echo hi");
  EXPECT_EQ(inv->env.at("A"), "b");
}

TEST(Sugar, Action) {
  auto inv = One("- name: co\n  action: actions/checkout@v4\n  inputs: {depth: 1, ref: main}\n");
  ASSERT_TRUE(inv.ok()) << inv.error().message;
  EXPECT_EQ(inv->step.protocol, P::kGit);
  EXPECT_EQ(inv->step.url, "https://gitlab.com/components/action-runner");
  EXPECT_EQ(inv->step.version, "main");
  EXPECT_EQ(inv->step.path, Path{});
  EXPECT_EQ(inv->step.filename, "step.yml");
  ASSERT_EQ(inv->inputs.size(), 2u);
  EXPECT_EQ(inv->inputs.at("action"), "actions/checkout@v4");
  EXPECT_EQ(inv->inputs.at("inputs"), (Value{{"depth", 1}, {"ref", "main"}}));
  auto bare = One("- action: a@v1\n");
  ASSERT_TRUE(bare.ok()) << bare.error().message;
  EXPECT_EQ(bare->inputs.at("inputs"), Value::object());
}

INSTANTIATE_TEST_SUITE_P(
    Exclusions, ReferenceObjectErrors,
    ::testing::Values(
        ErrorRow{
            "- step: ./a\n  script: b\n",
            "t.yml:2:3: steps[0]: the `script` keyword cannot be used with the `step` keyword"},
        ErrorRow{"- action: a@b\n  script: b\n",
                 "t.yml:2:3: steps[0]: the `script` keyword cannot be used with the `action` "
                 "keyword"},
        ErrorRow{"- script: b\n  inputs: {a: 1}\n",
                 "t.yml:2:3: steps[0]: the `script` keyword cannot be used with `inputs`"},
        ErrorRow{
            "- step: ./a\n  action: a@b\n",
            "t.yml:2:3: steps[0]: the `action` keyword cannot be used with the `step` keyword"},
        ErrorRow{"- name: x\n",
                 "t.yml:1:3: steps[0] \"x\": one of step, script or action is "
                 "required"},
        ErrorRow{"- script: ''\n", "t.yml:1:11: steps[0]: script must not be empty"},
        ErrorRow{"- action:\n", "t.yml:1:3: steps[0]: action must not be empty"}));

}  // namespace
}  // namespace sr::stepfile
