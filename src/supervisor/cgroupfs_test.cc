#include "supervisor/cgroupfs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "util/tempdir.h"

namespace sr {
namespace {

TEST(Mountinfo, ReadsTheFieldsOnBothSidesOfTheSeparator) {
  // The second line has two optional fields before " - ", as a shared mount does.
  const auto mounts = ParseMountinfo(
      "24 1 0:22 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
      "30 24 0:27 /runner/ci /sys/fs/cgroup/memory rw shared:12 master:3 - cgroup cgroup "
      "rw,memory\n");
  ASSERT_EQ(mounts.size(), 2u);
  EXPECT_EQ(mounts[0].root, "/");
  EXPECT_EQ(mounts[0].mount_point, "/sys/fs/cgroup/unified");
  EXPECT_EQ(mounts[0].fstype, "cgroup2");
  EXPECT_EQ(mounts[0].options, "rw,nsdelegate");
  EXPECT_EQ(mounts[1].root, "/runner/ci");
  EXPECT_EQ(mounts[1].mount_point, "/sys/fs/cgroup/memory");
  EXPECT_EQ(mounts[1].fstype, "cgroup");
  EXPECT_EQ(mounts[1].options, "rw,memory");
}

TEST(Mountinfo, UndoesTheOctalEscapesOfPaths) {
  const auto mounts = ParseMountinfo(
      "40 1 0:30 /a\\040b /mnt/with\\040space\\011tab\\134slash rw - tmpfs tmpfs rw\n");
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].root, "/a b");
  EXPECT_EQ(mounts[0].mount_point, "/mnt/with space\ttab\\slash");
}

TEST(Mountinfo, KeepsABackslashThatStartsNoEscape) {
  EXPECT_EQ(UnescapeMountPath("a\\9bc"), "a\\9bc");
  EXPECT_EQ(UnescapeMountPath("end\\04"), "end\\04");
  EXPECT_EQ(UnescapeMountPath("\\012"), "\n");
}

TEST(Mountinfo, SkipsLinesWithoutTheSeparator) {
  EXPECT_TRUE(ParseMountinfo("").empty());
  EXPECT_TRUE(ParseMountinfo("garbage line\n\n").empty());
}

TEST(Mountinfo, FindsThisMachinesOwnMounts) {
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream text;
  text << in.rdbuf();
  const auto mounts = ParseMountinfo(text.str());
  ASSERT_FALSE(mounts.empty());
  bool root = false;
  for (const auto& m : mounts) {
    EXPECT_FALSE(m.fstype.empty());
    root = root || m.mount_point == "/";
  }
  EXPECT_TRUE(root) << "no mount at /";
}

TEST(CgroupDirs, RemovingACgroupTreeTakesEmptyDirsDeepestFirstAndStopsAtABusyOne) {
  // Plain directories stand in for cgroups: rmdir refuses one that is not empty, as the kernel
  // refuses a cgroup with a process in it.
  auto tmp = TempDir::Create("cgroupfs-test-");
  ASSERT_TRUE(tmp.ok());
  const std::string root = tmp->path() + "/runner";
  ASSERT_EQ(::mkdir(root.c_str(), 0700), 0);
  for (const char* sub : {"/a", "/a/b", "/a/b/c", "/busy", "/busy/leaf"}) {
    ASSERT_EQ(::mkdir((root + sub).c_str(), 0700), 0) << sub;
  }
  std::ofstream(root + "/busy/leaf/cgroup.procs") << "42\n";

  EXPECT_FALSE(RemoveEmptyCgroupTree(root));
  EXPECT_NE(::access((root + "/a").c_str(), F_OK), 0) << "the empty branch is gone";
  EXPECT_EQ(::access((root + "/busy/leaf").c_str(), F_OK), 0) << "the busy one stays";

  ::unlink((root + "/busy/leaf/cgroup.procs").c_str());
  EXPECT_TRUE(RemoveEmptyCgroupTree(root));
  EXPECT_NE(::access(root.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace sr
