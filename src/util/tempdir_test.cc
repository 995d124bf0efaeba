// RemoveTree when the fd table is (nearly) full: the state in which a server's jobs fail with
// EMFILE is the state in which their directories must still go.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "util/fd.h"
#include "util/owner.h"
#include "util/tempdir.h"

namespace sr {
namespace {

// Lowers the soft limit on open files and fills the table up to it, leaving `free` slots;
// everything is given back at the end of the scope.
class FullFdTable {
 public:
  explicit FullFdTable(int free) {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit low = saved_;
    low.rlim_cur = 64;
    ::setrlimit(RLIMIT_NOFILE, &low);
    for (;;) {
      UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) break;
      held_.push_back(std::move(fd));
    }
    for (int i = 0; i < free && !held_.empty(); ++i) held_.pop_back();
  }
  ~FullFdTable() {
    held_.clear();
    ::setrlimit(RLIMIT_NOFILE, &saved_);
  }
  FullFdTable(const FullFdTable&) = delete;
  FullFdTable& operator=(const FullFdTable&) = delete;

 private:
  rlimit saved_{};
  std::vector<UniqueFd> held_;
};

// A job dir as the service makes it, with a step's tree some levels deep in its .tmp.
std::string MakeJobDir(const TempDir& base) {
  const std::string dir = base.path() + "/step-runner-output-j";
  EXPECT_EQ(::mkdir(dir.c_str(), 0700), 0);
  EXPECT_TRUE(MarkOwned(dir).ok());
  EXPECT_TRUE(WriteFile(dir + "/logs", "log\n").ok());
  std::string deep = dir + "/.tmp";
  for (int level = 0; level < 6; ++level) {
    EXPECT_EQ(::mkdir(deep.c_str(), 0700), 0) << deep;
    EXPECT_TRUE(WriteFile(deep + "/f", "x").ok());
    deep += "/d";
  }
  EXPECT_EQ(::symlink("/", (dir + "/.tmp/root-link").c_str()), 0);
  return dir;
}

TEST(RemoveTree, NeedsOneFreeFdHoweverDeepTheTree) {
  TempDir base = TempDir::Create("sr-removetree-").value();
  const std::string dir = MakeJobDir(base);
  Status removed = Ok();
  {
    FullFdTable full(1);
    removed = RemoveTree(dir);
  }
  EXPECT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_NE(::access(dir.c_str(), F_OK), 0) << dir << " is still there";
  EXPECT_EQ(::access("/", F_OK), 0);  // a symlink is removed, never followed
}

TEST(RemoveTree, WithNoFdAtAllKeepsTheOwnerMarkAndSaysWhy) {
  TempDir base = TempDir::Create("sr-removetree-").value();
  const std::string dir = MakeJobDir(base);
  Status removed = Ok();
  {
    FullFdTable full(0);
    removed = RemoveTree(dir);
  }
  ASSERT_FALSE(removed.ok());
  EXPECT_NE(removed.error().message.find("Too many open files"), std::string::npos)
      << removed.error().message;
  // Whatever is left still says whose it is: the next runner's sweep can remove it.
  EXPECT_EQ(::access((dir + "/" + kOwnerFile).c_str(), F_OK), 0);
  EXPECT_EQ(OwnerOfDir(dir), Owner::kLive);
  EXPECT_TRUE(RemoveTree(dir).ok());
  EXPECT_NE(::access(dir.c_str(), F_OK), 0);
}

TEST(RemoveTree, AnEmptyDirGoesWithNoFdAtAll) {
  // What a start-up leaves whose owner mark was refused (EMFILE): an empty directory.
  TempDir base = TempDir::Create("sr-removetree-").value();
  const std::string dir = base.path() + "/step-runner-XXXXXX";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  Status removed = Ok();
  {
    FullFdTable full(0);
    removed = RemoveTree(dir);
  }
  EXPECT_TRUE(removed.ok()) << removed.error().message;
  EXPECT_NE(::access(dir.c_str(), F_OK), 0) << dir << " is still there";
}

TEST(RemoveTree, AnEntryThatCannotGoKeepsTheOwnerMark) {
  TempDir base = TempDir::Create("sr-removetree-").value();
  const std::string dir = MakeJobDir(base);
  const std::string busy = dir + "/.tmp/busy";
  ASSERT_EQ(::mkdir(busy.c_str(), 0700), 0);
  // A mount point cannot be removed (EBUSY): the removal stops half-way.
  if (::mount("tmpfs", busy.c_str(), "tmpfs", 0, "size=64k") != 0) GTEST_SKIP() << "cannot mount (not root?)";
  Status removed = RemoveTree(dir);
  ::umount2(busy.c_str(), MNT_DETACH);
  ASSERT_FALSE(removed.ok());
  EXPECT_NE(removed.error().message.find(busy), std::string::npos) << removed.error().message;
  EXPECT_NE(::access((dir + "/logs").c_str(), F_OK), 0);  // the rest went
  EXPECT_EQ(OwnerOfDir(dir), Owner::kLive);
  EXPECT_TRUE(RemoveTree(dir).ok());
}

TEST(RemoveTree, FilesAndMissingPathsToo) {
  TempDir base = TempDir::Create("sr-removetree-").value();
  ASSERT_TRUE(WriteFile(base.path() + "/f", "x").ok());
  EXPECT_TRUE(RemoveTree(base.path() + "/f").ok());
  EXPECT_NE(::access((base.path() + "/f").c_str(), F_OK), 0);
  EXPECT_TRUE(RemoveTree(base.path() + "/missing").ok());
}

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

// A marked directory has its own name only while marked; what is made or removed meanwhile
// is under a transit name that names this process, and nothing else is ever left beside it.
TEST(OwnedDir, HasItsNameOnlyWhileMarked) {
  TempDir base = TempDir::Create("sr-owned-").value();
  const std::string dir = base.path() + "/step-runner-output-j";
  ASSERT_EQ(MakeOwnedDir(dir).value(), true);
  EXPECT_EQ(OwnerOfDir(dir), Owner::kLive);
  EXPECT_EQ(Names(base.path()), std::vector<std::string>{"step-runner-output-j"});
  // Made again: refused, the first one untouched, no transit left.
  ASSERT_TRUE(WriteFile(dir + "/logs", "x").ok());
  EXPECT_EQ(MakeOwnedDir(dir).value(), false);
  EXPECT_EQ(Names(dir), (std::vector<std::string>{kOwnerFile, "logs"}));
  EXPECT_EQ(Names(base.path()), std::vector<std::string>{"step-runner-output-j"});
  std::string removing = dir;
  ASSERT_TRUE(RemoveOwnedTree(removing).ok());
  EXPECT_EQ(removing.rfind(base.path() + "/" + SelfTransitPrefix(), 0), 0u) << removing;
  EXPECT_TRUE(Names(base.path()).empty());
  {
    TempDir temp = TempDir::CreateOwned("step-runner-", base.path()).value();
    const std::string name = temp.path().substr(base.path().size() + 1);
    EXPECT_EQ(name.size(), std::string("step-runner-XXXXXX").size()) << name;
    EXPECT_EQ(OwnerOfDir(temp.path()), Owner::kLive);
    EXPECT_EQ(Names(base.path()), std::vector<std::string>{name});
  }
  EXPECT_TRUE(Names(base.path()).empty());
  // Errors name what was to be made.
  auto missing = MakeOwnedDir(base.path() + "/no/such");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().message.rfind("creating " + base.path() + "/no/such: mkdir: ", 0), 0u)
      << missing.error().message;
}

TEST(OwnedDir, ATransitNameSaysWhoseItIs) {
  pid_t pid = 0;
  unsigned long long ticks = 0;
  EXPECT_EQ(OwnerFromTransitName(SelfTransitPrefix() + "AbC123", &pid, &ticks), Owner::kLive);
  EXPECT_EQ(pid, ::getpid());
  EXPECT_EQ(ticks, ProcessStartTicks(::getpid()));
  // Our pid, another start: a recycled pid is not the owner.
  EXPECT_EQ(OwnerFromTransitName(std::string(kTransitPrefix) + std::to_string(::getpid()) + "-1-AbC123"),
            Owner::kDead);
  for (const std::string bad : {"step-runner-AbC123", ".step-runner-owned-", ".step-runner-owned-12-AbC123",
                                ".step-runner-owned--12-5-x", ".step-runner-owned-012-5-x",
                                ".step-runner-owned-12-0-x", ".step-runner-owned-12-5"}) {
    EXPECT_EQ(OwnerFromTransitName(bad), Owner::kUnknown) << bad;
  }
}

}  // namespace
}  // namespace sr
