// The controller layer. The v1 back end is tested end to end (tests/resources_test.cc); these
// hosts have no v2 controllers, so the v2 back end is checked at the file level only: what it
// writes into a group's directory and how it reads the v2 counter files.
#include "supervisor/controllers.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "util/fd.h"
#include "util/tempdir.h"

namespace sr {
namespace {

TEST(ControllersV2Files, LimitsAreWrittenAndCountersRead) {
  auto dir = TempDir::Create("controllers-test-");
  ASSERT_TRUE(dir.ok());
  auto c = Controllers::ForV2Dir(dir->path(),
                                 Controllers::kMemory | Controllers::kPids | Controllers::kCpu | Controllers::kIo);
  ASSERT_TRUE(c->CanEnforce({64 << 20, 20, 0.5}).ok());
  auto outer = c->Create(nullptr, {1 << 30, 0, 0});
  ASSERT_TRUE(outer.ok()) << outer.error().message;
  auto g = c->Create(*outer, {64 << 20, 20, 0.5});
  ASSERT_TRUE(g.ok()) << g.error().message;
  const std::string d = (*g)->v2_dir();
  ASSERT_EQ(d.rfind((*outer)->v2_dir() + "/", 0), 0u) << "nested below its parent: " << d;
  EXPECT_EQ(*ReadFile((*outer)->v2_dir() + "/memory.max"), std::to_string(1 << 30));
  EXPECT_EQ(*ReadFile(d + "/memory.max"), std::to_string(64 << 20));
  EXPECT_EQ(*ReadFile(d + "/memory.oom.group"), "1");
  EXPECT_EQ(*ReadFile(d + "/pids.max"), "20");
  EXPECT_EQ(*ReadFile(d + "/cpu.max"), "50000 100000");
  EXPECT_EQ(*ReadFile(d + "/cgroup.subtree_control"), "+io");  // the last of +memory +pids +cpu +io
  EXPECT_TRUE((*g)->join_fds().empty()) << "v2 joins by CLONE_INTO_CGROUP, not by a write";

  ASSERT_TRUE(WriteFile(d + "/cpu.stat", "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\n").ok());
  ASSERT_TRUE(WriteFile(d + "/memory.peak", "67108864\n").ok());
  ASSERT_TRUE(WriteFile(d + "/pids.peak", "7\n").ok());
  ASSERT_TRUE(WriteFile(d + "/io.stat", "8:0 rbytes=100 wbytes=200 rios=1 wios=2\n"
                                         "8:16 rbytes=1 wbytes=2 rios=1 wios=1\n").ok());
  ASSERT_TRUE(WriteFile(d + "/memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n").ok());
  ResourceUsage u = (*g)->Read();
  EXPECT_EQ(u.cpu_user_usec, 2000);
  EXPECT_EQ(u.cpu_system_usec, 1000);
  EXPECT_EQ(u.memory_peak_bytes, 67108864);
  EXPECT_EQ(u.pids_peak, 7);
  EXPECT_EQ(u.io_read_bytes, 101);
  EXPECT_EQ(u.io_write_bytes, 202);
  EXPECT_EQ(u.oom_kills, 1);
}

TEST(Controllers, NoneRefusesLimitsAndSaysWhy) {
  auto c = Controllers::None("cgroups are switched off (STEP_RUNNER_CGROUP=off)");
  EXPECT_TRUE(c->CanEnforce({}).ok());
  Status s = c->CanEnforce({0, 0, 1.5});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message,
            "a cpus limit needs a writable cpu cgroup controller, and cgroups are switched off "
            "(STEP_RUNNER_CGROUP=off)");
  auto g = c->Create(nullptr, {});
  ASSERT_TRUE(g.ok());
  EXPECT_FALSE((*g)->Read().cpu_user_usec.has_value()) << "nothing measured: nothing made up";
}

TEST(Controllers, ThisHostIsDescribed) {
  // Whatever the host offers, Describe says it and a group can be made and removed.
  auto c = Controllers::Discover("");
  EXPECT_FALSE(c->Describe().empty());
  auto g = c->Create(nullptr, {});
  ASSERT_TRUE(g.ok()) << g.error().message;
  std::vector<std::string> dirs = (*g)->dirs();
  g->reset();
  for (const auto& d : dirs) {
    struct stat st {};
    EXPECT_NE(::stat(d.c_str(), &st), 0) << d << " left behind";
  }
}

}  // namespace
}  // namespace sr
