// Permissions (issue 9): the socket is 0600, job directories 0700, the job log, file variables
// and every step's output and export files 0600 — also when step-runner is started with umask 0
// — and the runner writes nothing outside the job's directory and the git cache (itself 0700).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "support/hostile.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

unsigned Mode(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// Sets the umask of this process (and so of every child it starts) until destroyed.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }

 private:
  mode_t old_;
};

// A git repository, outside the server's TMPDIR, with one exec step that prints the modes of its
// output file, export file and their directory ("out=600" …), then writes an output and an export.
std::string MakeRepo(const TestDir& dir) {
  dir.Write("repo/steps/hello/step.yml",
            "spec:\n  outputs:\n    v: {type: string}\n---\nexec:\n  command:\n    - sh\n    - -c\n"
            "    - |\n"
            "      stat -c out=%a \"$0\"; stat -c env=%a \"$1\"; stat -c tmp=%a \"$(dirname \"$0\")\"\n"
            "      echo '{\"name\":\"v\",\"value\":\"x\"}' > \"$0\"\n"
            "      echo '{\"name\":\"E\",\"value\":\"y\"}' > \"$1\"\n"
            "    - ${{ output_file }}\n    - ${{ export_file }}\n");
  std::string cmd = "cd " + dir / "repo" +
                    " && git init -q -b main . && git add -A && git -c user.email=a@b -c "
                    "user.name=t commit -qm init && git tag v1";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  return dir / "repo";
}

TEST(Permissions, ServiceSocketJobDirAndFilesArePrivate) {
  TestDir tmp;      // the server's TMPDIR: job dirs, the cache and the socket go here
  TestDir outside;  // the repository, HOME and the job's work dir
  const std::string repo = MakeRepo(outside);
  std::filesystem::create_directories(outside / "home");
  const char* old_home = std::getenv("HOME");
  const std::string saved_home = old_home ? old_home : "";
  ::setenv("HOME", (outside / "home").c_str(), 1);
  std::unique_ptr<LiveServer> server;
  {
    ScopedUmask open_umask(0);
    server = std::make_unique<LiveServer>(tmp);
  }
  ::setenv("HOME", saved_home.c_str(), 1);
  EXPECT_EQ(Mode(server->socket()), 0600u);
  const std::vector<std::string> before = ListTree(tmp.path());

  proto::RunRequest req = Request(
      "perm",
      "spec: {}\n---\nrun:\n  - name: wait\n    script: while [ ! -f " + outside / "release" +
          " ]; do sleep 0.02; done\n  - name: remote\n    step: file://" + repo + "/-/hello@v1\n",
      outside / "work/deep");
  auto* file = req.mutable_job()->add_variables();
  file->set_key("CONFIG");
  file->set_value("secret config");
  file->set_file(true);
  ASSERT_TRUE(server->Run(req).ok());

  // While the job runs: its directory, temp dir, log and file variable.
  const std::string job = JobDir(tmp, "perm");
  ASSERT_TRUE(WaitFor([&] { return server->GetStatusOrDie("perm").status() == proto::StepResult::running; }));
  EXPECT_EQ(Mode(job), 0700u);
  EXPECT_EQ(Mode(job + "/.tmp"), 0700u);
  EXPECT_EQ(Mode(job + "/logs"), 0600u);
  EXPECT_EQ(Mode(job + "/CONFIG"), 0600u);
  EXPECT_EQ(Mode(outside / "work"), 0700u);  // created for the job
  EXPECT_EQ(Mode(outside / "work/deep"), 0700u);
  outside.Write("release", "");
  proto::Status end = server->WaitEnded("perm");
  ASSERT_EQ(end.status(), proto::StepResult::success) << end.DebugString();
  grpc::Status fs;
  std::string log = server->Follow("perm", 0, &fs);
  EXPECT_THAT(log, HasSubstr("out=600\nenv=600\ntmp=700\n"));
  EXPECT_EQ(Mode(tmp / "step-runner-cache"), 0700u);

  // Everything new in TMPDIR is inside the job dir or the cache; the rest is untouched.
  for (const std::string& entry : ListTree(tmp.path())) {
    if (std::find(before.begin(), before.end(), entry) != before.end()) continue;
    const bool in_job = entry.rfind(job + "/", 0) == 0 || entry.rfind(job + " ", 0) == 0;
    const bool in_cache = entry.rfind(tmp / "step-runner-cache", 0) == 0;
    EXPECT_TRUE(in_job || in_cache) << entry;
  }
  ASSERT_TRUE(server->CloseJob("perm").ok());
  std::vector<std::string> after;
  for (const std::string& entry : ListTree(tmp.path())) {
    if (entry.rfind(tmp / "step-runner-cache", 0) != 0) after.push_back(entry);
  }
  EXPECT_EQ(after, before);
  EXPECT_THAT(ListTree(outside / "home"), IsEmpty());
  EXPECT_THAT(ListTree(outside / "work"), ::testing::ElementsAre(outside / "work/deep 0700"));
}

TEST(Permissions, RunCommandFilesArePrivateAndGoAway) {
  Sandbox box;
  TestDir outside;
  const std::string repo = MakeRepo(outside);
  std::string path = box.Write(
      "s.yml", "spec: {}\n---\nrun:\n  - name: remote\n    step: file://" + repo + "/-/hello@v1\n");
  Output o;
  {
    ScopedUmask open_umask(0);
    o = box.Run({"run", "-f", path}, std::chrono::seconds(120), {{"HOME", box.dir() / "home"}});
  }
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("out=600\nenv=600\ntmp=700\n"));
  EXPECT_EQ(Mode(box.tmp() + "/step-runner-cache"), 0700u);
  // Only the cache is left: the run's temp dir went at its end, and nothing was written in the
  // working directory or HOME.
  EXPECT_THAT(box.Leftovers(), IsEmpty());
  EXPECT_FALSE(std::filesystem::exists(box.dir() / "home"));
}

}  // namespace
}  // namespace sr::test
