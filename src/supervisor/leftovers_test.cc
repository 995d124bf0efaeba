// Owner marks and the removal of dead runners' leftovers (contract section 7 item 1).
#include "supervisor/leftovers.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>

#include "supervisor/cgroup.h"
#include "supervisor/guardian.h"
#include "util/fd.h"
#include "util/owner.h"
#include "util/tempdir.h"

namespace sr {
namespace {

// The mark of a process that has exited and been reaped: a dead owner.
std::string DeadMark() {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::usleep(20000);
    ::_exit(0);
  }
  const std::string mark = std::to_string(pid) + " " + std::to_string(ProcessStartTicks(pid)) + "\n";
  int status = 0;
  ::waitpid(pid, &status, 0);
  return mark;
}

TEST(Owner, LiveDeadAndUnknownMarks) {
  EXPECT_EQ(OwnerFromMark(SelfOwnerMark()), Owner::kLive);
  EXPECT_EQ(OwnerFromMark(DeadMark()), Owner::kDead);
  // Our pid with another start time: a recycled pid is not the owner.
  EXPECT_EQ(OwnerFromMark(std::to_string(::getpid()) + " 1\n"), Owner::kDead);
  for (const char* bad : {"", "x", "12", "12 ", "12 x\n", "-1 5\n", "12 0\n"}) {
    EXPECT_EQ(OwnerFromMark(bad), Owner::kUnknown) << bad;
  }
}

// A killed download's blob temp goes; one whose download still holds the digest's lock stays,
// as does every complete blob.
TEST(Leftovers, KilledDownloadsGoFromTheBlobCache) {
  auto base = TempDir::Create("sr-leftovers-");
  ASSERT_TRUE(base.ok());
  const std::string blobs = base->path() + "/" + kGitCacheDir + "/" + kOciBlobDir;
  std::filesystem::create_directories(blobs);
  for (const char* name : {"aaaa", "aaaa.lock", ".aaaa.tmp-4000001-1", ".aaaa.tmp-4000002-7",
                           ".bbbb.tmp-4000003-1", "bbbb.lock", ".cccc.tmp-4000004-2"}) {
    ASSERT_TRUE(WriteFile(blobs + "/" + name, "x").ok());
  }
  // bbbb's download runs (a child holds its lock); cccc's has no lock file at all.
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t holder = ::fork();
  if (holder == 0) {
    const int fd = ::open((blobs + "/bbbb.lock").c_str(), O_RDWR);
    ::flock(fd, LOCK_EX);
    ::write(ready[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  LeftoverReport r = RemoveDeadLeftovers(base->path());
  ::kill(holder, SIGKILL);
  ::waitpid(holder, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  EXPECT_EQ(r.downloads, 3);
  for (const char* gone : {".aaaa.tmp-4000001-1", ".aaaa.tmp-4000002-7", ".cccc.tmp-4000004-2"}) {
    EXPECT_FALSE(std::filesystem::exists(blobs + "/" + gone)) << gone;
  }
  for (const char* kept : {"aaaa", "aaaa.lock", ".bbbb.tmp-4000003-1", "bbbb.lock"}) {
    EXPECT_TRUE(std::filesystem::exists(blobs + "/" + kept)) << kept;
  }
  EXPECT_NE(r.Line(base->path()).find("3 partial downloads"), std::string::npos) << r.Line(base->path());
}

TEST(Leftovers, OnlyDeadOwnersDirectoriesGo) {
  auto base = TempDir::Create("sr-leftovers-");
  ASSERT_TRUE(base.ok());
  const std::string b = base->path();
  auto make = [&](const std::string& name, const std::string& mark) {
    ::mkdir((b + "/" + name).c_str(), 0700);
    if (!mark.empty()) {
      ASSERT_TRUE(WriteFile(b + "/" + name + "/" + kOwnerFile, mark).ok());
    }
    ASSERT_TRUE(WriteFile(b + "/" + name + "/logs", "x").ok());
  };
  const std::string dead = DeadMark();
  make("step-runner-output-dead", dead);
  make("step-runner-abcdef", dead);
  make("step-runner-output-live", SelfOwnerMark());
  make("step-runner-output-unmarked", "");
  make("step-runner-cache", "");
  make("other-dir", dead);
  // Temporary clones and checkouts in the git cache: a dead owner's go, the rest stay.
  make("step-runner-cache/repo", "");
  make("step-runner-cache/repo/.clone-dead", dead);
  make("step-runner-cache/repo/.tree-live", SelfOwnerMark());
  make("step-runner-cache/repo/.tree-unmarked", "");
  make("step-runner-cache/repo/0123abcd", dead);  // a finished checkout: not a temp, kept
  // Under a transit name (made or being removed when its owner was killed: no mark needed),
  // a dead owner's go wherever marked ones would, a live owner's and malformed names stay.
  const std::string dead_transit = std::string(kTransitPrefix) + dead.substr(0, dead.find(' ')) + "-" +
                                   dead.substr(dead.find(' ') + 1, dead.size() - dead.find(' ') - 2);
  make(dead_transit + "-Abc123", "");
  make("step-runner-cache/repo/" + dead_transit + "-Def456", "");
  // Clones are made in the cache itself (checkouts in a repository's directory).
  make("step-runner-cache/.clone-dead", dead);
  make("step-runner-cache/.clone-live", SelfOwnerMark());
  make("step-runner-cache/" + dead_transit + "-Ghi789", "");
  make(SelfTransitPrefix() + "Live12", "");
  make(std::string(kTransitPrefix) + "x-1-Bad123", "");
  LeftoverReport r = RemoveDeadLeftovers(b);
  EXPECT_EQ(r.job_dirs, 1);
  EXPECT_EQ(r.temp_dirs, 2);
  EXPECT_EQ(r.git_temps, 4);
  EXPECT_FALSE(std::filesystem::exists(b + "/" + dead_transit + "-Abc123"));
  EXPECT_FALSE(std::filesystem::exists(b + "/step-runner-cache/repo/" + dead_transit + "-Def456"));
  EXPECT_TRUE(std::filesystem::exists(b + "/" + SelfTransitPrefix() + "Live12"));
  EXPECT_TRUE(std::filesystem::exists(b + "/" + kTransitPrefix + "x-1-Bad123"));
  EXPECT_FALSE(std::filesystem::exists(b + "/step-runner-cache/repo/.clone-dead"));
  EXPECT_FALSE(std::filesystem::exists(b + "/step-runner-cache/.clone-dead"));
  EXPECT_FALSE(std::filesystem::exists(b + "/step-runner-cache/" + dead_transit + "-Ghi789"));
  for (const char* kept : {"step-runner-cache/.clone-live", "step-runner-cache/repo/.tree-live", "step-runner-cache/repo/.tree-unmarked",
                           "step-runner-cache/repo/0123abcd"}) {
    EXPECT_TRUE(std::filesystem::exists(b + "/" + kept)) << kept;
  }
  EXPECT_FALSE(std::filesystem::exists(b + "/step-runner-output-dead"));
  EXPECT_FALSE(std::filesystem::exists(b + "/step-runner-abcdef"));
  for (const char* kept : {"step-runner-output-live", "step-runner-output-unmarked", "step-runner-cache",
                           "other-dir"}) {
    EXPECT_TRUE(std::filesystem::exists(b + "/" + kept)) << kept;
  }
  EXPECT_NE(r.Line(b).find("1 job dir, 2 temp dirs, 4 temporary git clones"), std::string::npos) << r.Line(b);
  EXPECT_TRUE(RemoveDeadLeftovers(b).empty());
}

// A dead runner's cgroup whose record is gone (its TMPDIR deleted) is found by name; a live
// runner's, a fresh one, and other names stay.
TEST(Leftovers, DeadRunnersCgroupWithoutARecordGoes) {
  auto own = RunnerCgroupDir(::getpid());
  if (!own.ok()) GTEST_SKIP() << own.error().message;
  const std::string parent = own->substr(0, own->rfind('/')) + "/sr-test-unrecorded-" + std::to_string(::getpid());
  if (::mkdir(parent.c_str(), 0755) != 0) GTEST_SKIP() << "cgroup v2 not writable here: " << parent;
  const std::string dead_mark = DeadMark();
  const std::string dead_pid = dead_mark.substr(0, dead_mark.find(' '));
  pid_t live = ::fork();
  if (live == 0) {
    ::pause();
    ::_exit(0);
  }
  pid_t inside = ::fork();  // left in the dead runner's cgroup: must be killed
  if (inside == 0) {
    ::pause();
    ::_exit(0);
  }
  const std::string dead_dir = parent + "/step-runner-" + dead_pid;
  const std::string live_dir = parent + "/step-runner-" + std::to_string(live);
  const std::string other_dir = parent + "/step-runner-abc";
  for (const auto& d : {dead_dir, dead_dir + "/leaf", live_dir, other_dir}) {
    ASSERT_EQ(::mkdir(d.c_str(), 0755), 0) << d;
  }
  ASSERT_TRUE(WriteFile(dead_dir + "/leaf/cgroup.procs", std::to_string(inside)).ok());

  LeftoverReport young;
  RemoveDeadRunnerCgroups(parent, std::chrono::seconds(60), young);
  EXPECT_TRUE(young.empty());
  EXPECT_TRUE(std::filesystem::exists(dead_dir)) << "changed within the minute: kept";

  LeftoverReport r;
  RemoveDeadRunnerCgroups(parent, std::chrono::seconds(0), r);
  EXPECT_EQ(r.unrecorded_cgroups, 1);
  EXPECT_EQ(r.owners.count(std::stoi(dead_pid)), 1u);
  EXPECT_EQ(r.Line("/tmp/x"), "removed what dead step-runner instances (pid " + dead_pid + ") left: 1 cgroup in " +
                                  parent + " (found by name: its record went with another TMPDIR)");
  r.processes = 2;
  EXPECT_EQ(r.Line("/tmp/x"), "removed what dead step-runner instances (pid " + dead_pid +
                                  ") left in /tmp/x: 2 processes; 1 cgroup in " + parent +
                                  " (found by name: its record went with another TMPDIR)");
  EXPECT_FALSE(std::filesystem::exists(dead_dir));
  int status = 0;
  ASSERT_EQ(::waitpid(inside, &status, 0), inside);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(std::filesystem::exists(live_dir));
  EXPECT_TRUE(std::filesystem::exists(other_dir));

  ::kill(live, SIGKILL);
  ::waitpid(live, &status, 0);
  ::rmdir(live_dir.c_str());
  ::rmdir(other_dir.c_str());
  ::rmdir(dead_dir.c_str());
  EXPECT_EQ(::rmdir(parent.c_str()), 0) << parent;
}

// A runner killed while writing its cgroup record left an empty `.step-runner-cgroup-<pid>`
// (now: a `.new` beside it, before the rename) that no sweep could read: gone once its pid is
// gone; a live pid's, and names that are no record, stay.
TEST(Leftovers, UnreadableCgroupRecordsOfDeadPidsGo) {
  auto base = TempDir::Create("sr-leftovers-");
  ASSERT_TRUE(base.ok());
  const std::string b = base->path() + "/";
  const std::string dead_mark = DeadMark();
  const std::string dead = dead_mark.substr(0, dead_mark.find(' '));
  const std::string self = std::to_string(::getpid());
  const std::string prefix = kCgroupRecordPrefix;
  ASSERT_TRUE(WriteFile(b + prefix + dead, "").ok());
  ASSERT_TRUE(WriteFile(b + prefix + dead + ".new", dead_mark).ok());  // whole, not yet renamed
  for (const std::string& kept : {prefix + self, prefix + self + ".new", prefix + "1", prefix + dead + "x",
                                  prefix + dead + ".old"}) {
    ASSERT_TRUE(WriteFile(b + kept, "").ok());
  }
  LeftoverReport r = RemoveDeadLeftovers(base->path());
  EXPECT_FALSE(std::filesystem::exists(b + prefix + dead));
  EXPECT_FALSE(std::filesystem::exists(b + prefix + dead + ".new"));
  for (const std::string& kept : {prefix + self, prefix + self + ".new", prefix + "1", prefix + dead + "x",
                                  prefix + dead + ".old"}) {
    EXPECT_TRUE(std::filesystem::exists(b + kept)) << kept;
  }
}

// The record is renamed into place whole; a TMPDIR where it cannot be written is said, once.
TEST(Leftovers, CgroupRecordIsWholeOrSaidMissing) {
  auto base = TempDir::Create("sr-leftovers-");
  ASSERT_TRUE(base.ok());
  {
    auto root = CgroupRoot::Create(base->path());
    if (!root.ok()) GTEST_SKIP() << "no usable cgroup v2: " << root.error().message;
    const std::string record = CgroupRecordPath(base->path(), ::getpid());
    auto text = ReadFile(record);
    ASSERT_TRUE(text.ok()) << text.error().message;
    EXPECT_EQ(*text, SelfOwnerMark() + (*root)->path() + "\n");
    EXPECT_FALSE(std::filesystem::exists(record + kCgroupRecordTempSuffix));
  }
  const std::string missing = base->path() + "/missing";
  ::testing::internal::CaptureStderr();
  auto root = CgroupRoot::Create(missing);
  const std::string said = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(root.ok()) << root.error().message;
  const std::string record = CgroupRecordPath(missing, ::getpid());
  EXPECT_EQ(said, "step-runner: " + record + ": not written (open " + record + kCgroupRecordTempSuffix +
                      ": No such file or directory); without it, a killed runner's cgroup " +
                      (*root)->path() + " is found by name only\n");
}

TEST(Guardian, MarkerOfARunner) {
  std::string env("A=1\0STEP_RUNNER_TREE=51.3,7.12\0B=2\0", 33);
  EXPECT_TRUE(EnvironHasRunnerMarker(env, 51));
  EXPECT_TRUE(EnvironHasRunnerMarker(env, 7));
  EXPECT_FALSE(EnvironHasRunnerMarker(env, 5));
  EXPECT_FALSE(EnvironHasRunnerMarker(env, 1));
  EXPECT_FALSE(EnvironHasRunnerMarker(std::string("STEP_RUNNER_TREE=51.\0", 21), 51));
  EXPECT_FALSE(EnvironHasRunnerMarker(std::string("X_STEP_RUNNER_TREE=51.1\0", 24), 51));
}

}  // namespace
}  // namespace sr
