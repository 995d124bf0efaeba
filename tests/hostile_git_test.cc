// Hostile git references through the real binary (issue 9): option-like revisions and URLs
// (`--upload-pack=…`), `..` in paths, URLs and the `file:` field. git must never see an option
// it did not ask for, and nothing may be read from or written outside the checkout and the cache.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include <sys/stat.h>

#include "support/hostile.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;

// --- git references -------------------------------------------------------------------------------

class HostileGit : public ::testing::Test {
 protected:
  void SetUp() override {
    box_.Write("src/steps/hello/step.yml", "spec: {}\n---\nexec:\n  command: [echo, hello]\n");
    box_.Write("src/steps/hello/x.yml", "spec: {}\n---\nexec:\n  command: [echo, x]\n");
    repo_ = box_.dir() / "src";
    std::string cmd = "cd " + repo_ +
                      " && git init -q -b main . && git add -A && git -c user.email=a@b -c "
                      "user.name=t commit -qm init && git tag v1";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    pwned_ = box_.dir() / "pwned";
    outside_ = box_.Write("outside.yml", "spec: {}\n---\nexec:\n  command: [touch, " + pwned_ + "]\n");
  }
  Output RunStep(const std::string& step_yaml) {
    std::string path = box_.Write(
        "p.yml", "spec: {}\n---\nrun:\n  - name: remote\n    step: " + step_yaml + "\n");
    return box_.Run({"run", "-f", path});
  }
  void ExpectNoPwned() {
    EXPECT_FALSE(std::filesystem::exists(pwned_));
    EXPECT_FALSE(std::filesystem::exists(box_.cwd() + "/pwned"));
  }

  Sandbox box_;
  std::string repo_, pwned_, outside_;
};

TEST_F(HostileGit, TheFixtureWorks) {
  Output o = RunStep("file://" + repo_ + "/-/hello@v1");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("hello"));
}

TEST_F(HostileGit, OptionLikeRevisionsAreRefused) {
  const std::string upload = "--upload-pack=touch " + pwned_;
  for (const std::string& step :
       {"\"file://" + repo_ + "/-/hello@" + upload + "\"",
        "{git: {url: \"file://" + repo_ + "\", rev: \"" + upload + "\", dir: steps/hello}}",
        "{git: {url: \"file://" + repo_ + "\", rev: \"-c\", dir: steps/hello}}",
        "{git: {url: \"file://" + repo_ + "\", rev: \"--output=" + pwned_ + "\", dir: steps/hello}}"}) {
    Output o = RunStep(step);
    EXPECT_EQ(o.exit_code, 1) << step << "\n" << o.err;
    EXPECT_THAT(o.err, HasSubstr("fetching git step: invalid version \"-")) << step;
    ExpectNoPwned();
  }
  // The same through the command-line flags.
  Output o = box_.Run({"run", "--git-url", "file://" + repo_, "--git-rev", upload, "--git-dir", "steps/hello"});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("invalid version"));
  ExpectNoPwned();
}

TEST_F(HostileGit, OptionLikeUrlsAreNotOptions) {
  // A URL without a scheme becomes https://…, so it can never start with '-'; git then fails on
  // it as a URL (no network is needed to reject these).
  for (const std::string& url : {"--upload-pack=touch " + pwned_, "-u touch " + pwned_}) {
    Output o = RunStep("{git: {url: \"" + url + "\", rev: v1}}");
    EXPECT_EQ(o.exit_code, 1) << url << "\n" << o.err;
    EXPECT_THAT(o.err, HasSubstr("fetching git step")) << url;
    ExpectNoPwned();
  }
}

TEST_F(HostileGit, DotDotCannotLeaveTheRepository) {
  for (const std::string& step :
       {"file://" + repo_ + "/-/../../outside.yml@v1", "file://" + repo_ + "/-/hello/../../..@v1",
        "{git: {url: \"file://" + repo_ + "\", rev: v1, dir: \"../..\"}}"}) {
    Output o = RunStep(step);
    EXPECT_EQ(o.exit_code, 1) << step << "\n" << o.err;
    EXPECT_THAT(o.err, HasSubstr("leaves the repository")) << step;
    ExpectNoPwned();
  }
  // `..` in the revision (a range such as v1..main is not a version).
  Output r = RunStep("\"file://" + repo_ + "/-/hello@v1..main\"");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("invalid version \"v1..main\""));
}

TEST_F(HostileGit, DotDotInAFileUrlIsJustAPath) {
  // `..` inside the URL is resolved by git like any path; a repository that is not there is a
  // clear clone error, and the cache entry is one escaped directory name (nothing is created
  // outside the cache).
  Output o = RunStep("file://" + box_.dir().path() + "/src/../nothing-here/-/hello@v1");
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("fetching git step: git "));
  EXPECT_THAT(o.err, HasSubstr("nothing-here' does not appear to be a git repository"));
  EXPECT_FALSE(std::filesystem::exists(box_.dir() / "nothing-here"));
  Output ok = RunStep("file://" + box_.dir().path() + "/cwd/../src/-/hello@v1");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  for (const auto& e : std::filesystem::directory_iterator(box_.tmp() + "/step-runner-cache")) {
    EXPECT_THAT(e.path().filename().string(), ::testing::MatchesRegex("[A-Za-z0-9._-]+"));
    EXPECT_NE(e.path().filename().string(), "..");
  }
}

// A failing git command was reported as `git <args[2]>: <all of git's output>`, which for
// `clone --quiet --bare` named "--bare", on several lines, breaking the one-line error contract.
TEST_F(HostileGit, GitErrorsAreOneLineNamingTheCommand) {
  Output o = RunStep("file://" + box_.dir().path() + "/nothing-here/-/hello@v1");
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("fetching git step: git clone: fatal: "));
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o.err;
  // Nothing of the failed clone stays in the cache: no temp, no empty repository directory.
  EXPECT_TRUE(std::filesystem::is_empty(box_.tmp() + "/step-runner-cache"));
}

// The `dir` of a git reference was refused when it contained "..", but its `file` was used as
// given: `file: ../../../../../../outside.yml` loaded a step file from outside the checkout (here
// one the test wrote next to the repository). Now a step-file error, before anything is fetched.
TEST_F(HostileGit, FileFieldCannotLeaveTheRepository) {
  // The checkout is $TMPDIR/step-runner-cache/<escaped url>/<commit>/steps/hello, 6 levels
  // below the test directory.
  Output o = RunStep("{git: {url: \"file://" + repo_ +
                     "\", rev: v1, dir: steps/hello, file: ../../../../../../outside.yml}}");
  ExpectStepFileError(o, "git file \"../../../../../../outside.yml\" leaves the repository");
  ExpectNoPwned();
  EXPECT_FALSE(std::filesystem::exists(box_.tmp() + "/step-runner-cache"));
}

// The cache is $TMPDIR/step-runner-cache, often in a shared /tmp: a cache directory that others
// can write to (or a symlink to one) could serve their checkout of any URL. It is created 0700,
// and one that is not private to this user is refused.
TEST_F(HostileGit, CacheMustBePrivate) {
  const std::string cache = box_.tmp() + "/step-runner-cache";
  ASSERT_EQ(RunStep("file://" + repo_ + "/-/hello@v1").exit_code, 0);
  struct stat st {};
  ASSERT_EQ(::lstat(cache.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);

  std::filesystem::remove_all(cache);
  std::filesystem::create_directories(box_.dir() / "shared");
  ::chmod((box_.dir() / "shared").c_str(), 0777);
  std::filesystem::create_directory_symlink(box_.dir() / "shared", cache);
  Output link = RunStep("file://" + repo_ + "/-/hello@v1");
  EXPECT_EQ(link.exit_code, 1) << link.err;
  EXPECT_THAT(link.err, HasSubstr("is not a private directory of this user (not a directory"));
  EXPECT_TRUE(std::filesystem::is_empty(box_.dir() / "shared"));

  std::filesystem::remove(cache);
  std::filesystem::create_directories(cache);
  ::chmod(cache.c_str(), 0777);
  Output open = RunStep("file://" + repo_ + "/-/hello@v1");
  EXPECT_EQ(open.exit_code, 1) << open.err;
  EXPECT_THAT(open.err, HasSubstr("is not a private directory of this user (owner uid"));
  EXPECT_THAT(open.err, HasSubstr("mode 0777)"));
  EXPECT_TRUE(std::filesystem::is_empty(cache));
}

}  // namespace
}  // namespace sr::test
