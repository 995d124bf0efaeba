// Test support for the supervisor tests: a fixture parameterised over the two mechanisms, shell
// specs, loop driving with a safety timeout, and the after-test checks (no survivor, no zombie
// child, no cgroup directory of ours left behind).
#pragma once

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "loop/loop.h"
#include "supervisor/cgroup.h"
#include "supervisor/proc_scan.h"
#include "supervisor/supervisor.h"
#include "util/fd.h"

namespace sr::testing {

using Mechanism = Supervisor::Options::Mechanism;
using namespace std::chrono_literals;

/// Everything one tree reported.
struct Outcome {
  bool done = false;
  TreeExit exit;
  std::string out;
  std::string err;
  bool output_after_exit = false;
};

inline bool PidGone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

/// Live (not zombie, not exiting) processes whose environment has TEST_TAG=<tag>.
inline std::vector<pid_t> Survivors(const std::string& tag) {
  std::vector<pid_t> out;
  for (pid_t pid : ListPids()) {
    auto st = ReadProcStat(pid);
    if (!st || st->ending() || pid == ::getpid()) continue;
    if (EnvironHasToken(ReadEnviron(pid), "TEST_TAG", tag)) out.push_back(pid);
  }
  return out;
}

inline std::string MechanismName(const ::testing::TestParamInfo<Mechanism>& info) {
  return info.param == Mechanism::kCgroup ? "Cgroup" : "ProcessGroup";
}

// A shell script for a tree: a TERM-ignoring sleeper, plus a line once it runs.
inline constexpr char kIgnoresTerm[] = "trap '' TERM; sleep 1000 & echo ready; wait";

class SupervisorTest : public ::testing::TestWithParam<Mechanism> {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create();
    ASSERT_TRUE(loop.ok());
    loop_ = std::move(loop).value();
    std::string templ = "/tmp/sup-test-XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
    static std::atomic<int> counter{0};
    tag_ = "sup" + std::to_string(::getpid()) + "x" + std::to_string(++counter);
    const char* forced = std::getenv("STEP_RUNNER_CGROUP");
    if (GetParam() == Mechanism::kCgroup && forced && std::string(forced) == "off") {
      skipped_ = true;
      GTEST_SKIP() << "STEP_RUNNER_CGROUP=off forces the process-group mechanism";
    }
    auto sup = Supervisor::Create(*loop_, Options());
    if (!sup.ok() && GetParam() == Mechanism::kCgroup) {
      skipped_ = true;
      GTEST_SKIP() << "cgroup v2 not usable here: " << sup.error().message;
    }
    ASSERT_TRUE(sup.ok()) << sup.error().message;
    sup_ = std::move(sup).value();
    mechanism_ = sup_->mechanism();
    if (GetParam() == Mechanism::kCgroup) {
      ASSERT_EQ(mechanism_.rfind("cgroup v2 (", 0), 0u) << mechanism_;
    } else {
      ASSERT_EQ(mechanism_, "process group + subreaper");
    }
  }

  /// The fixture supervisor's options; `clone3` false spawns as on a kernel without clone3.
  Supervisor::Options Options(bool clone3 = true) const {
    Supervisor::Options options;
    options.mechanism = GetParam();
    options.leftover_grace = 200ms;
    options.clone3 = clone3;
    return options;
  }

  void TearDown() override {
    std::string rm = "rm -rf '" + dir_ + "'";
    if (skipped_ || dir_.empty()) {
      if (!dir_.empty()) {
        EXPECT_EQ(std::system(rm.c_str()), 0);
      }
      return;
    }
    if (sup_ && sup_->live_trees() == 0 && mechanism_.rfind("cgroup v2 (", 0) == 0) {
      // Each finished tree removed its leaf, or left it empty for the next tree (a few at most).
      std::string runner_dir = mechanism_.substr(11, mechanism_.size() - 12);
      int idle = 0;
      if (DIR* d = ::opendir(runner_dir.c_str())) {
        while (dirent* e = ::readdir(d)) {
          std::string name = e->d_name;
          if (e->d_type != DT_DIR || name == "." || name == "..") continue;
          ++idle;
          std::ifstream events(runner_dir + "/" + name + "/cgroup.events");
          std::string text((std::istreambuf_iterator<char>(events)), std::istreambuf_iterator<char>());
          if (text.find("populated 0") == std::string::npos) {
            ADD_FAILURE() << "leaf " << name << " outlived its tree: " << text;
          }
        }
        ::closedir(d);
      }
      EXPECT_LE(idle, 16) << "idle leaves kept in " << runner_dir;
    }
    sup_.reset();  // KillAll + reap + remove the cgroup directory
    EXPECT_TRUE(Survivors(tag_).empty()) << "processes of this test outlived the supervisor";
    for (pid_t p : recorded_) EXPECT_TRUE(PidGone(p)) << "recorded pid " << p << " exists";
    // No child of ours is left, not even a zombie.
    for (pid_t pid : ListPids()) {
      auto st = ReadProcStat(pid);
      if (st && st->ppid == ::getpid()) ADD_FAILURE() << "child " << pid << " state " << st->state;
    }
    int status;
    pid_t w = ::waitpid(-1, &status, WNOHANG);
    EXPECT_TRUE(w == 0 || (w < 0 && errno == ECHILD)) << "waitpid gave " << w;
    if (mechanism_.rfind("cgroup v2 (", 0) == 0) {
      std::string path = mechanism_.substr(11, mechanism_.size() - 12);
      struct stat sb {};
      EXPECT_NE(::stat(path.c_str(), &sb), 0) << path << " still exists";
    }
    EXPECT_EQ(std::system(rm.c_str()), 0);
  }

  ProcessSpec Shell(const std::string& script) {
    ProcessSpec spec;
    spec.argv = {"/bin/sh", "-c", script};
    spec.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "TEST_TAG=" + tag_, "D=" + dir_};
    return spec;
  }

  std::shared_ptr<ProcessTree> Start(const ProcessSpec& spec, Outcome& o) {
    auto tree = sup_->Spawn(
        spec,
        [&o](OutputStream s, std::string_view bytes) {
          if (o.done) o.output_after_exit = true;
          (s == OutputStream::kStdout ? o.out : o.err).append(bytes);
        },
        [this, &o](TreeExit e) {
          EXPECT_FALSE(o.done) << "on_exit called twice";
          for (const auto& r : e.records) recorded_.push_back(r.pid);
          o.exit = std::move(e);
          o.done = true;
        });
    EXPECT_TRUE(tree.ok()) << (tree.ok() ? "" : tree.error().message);
    EXPECT_FALSE(o.done) << "on_exit must not run inside Spawn";
    return tree.ok() ? *tree : nullptr;
  }

  /// Runs the loop until `done()`, failing the test instead of hanging.
  bool RunUntil(const std::function<bool()>& done, Duration limit = 30s) {
    bool expired = false;
    auto timer = loop_->After(limit, [&] { expired = true; });
    loop_->RunUntil([&] { return expired || done(); });
    loop_->CancelTimer(timer);
    if (expired) ADD_FAILURE() << "timed out waiting";
    return !expired;
  }
  bool Wait(Outcome& o) {
    bool ok = RunUntil([&] { return o.done; });
    EXPECT_FALSE(o.output_after_exit) << "output callback after on_exit";
    return ok;
  }
  bool WaitOutput(Outcome& o, const std::string& needle) { return WaitOutputs(o, {needle}); }
  /// Runs the loop until the tree has printed every one of `needles` (false if it ended first).
  bool WaitOutputs(Outcome& o, std::initializer_list<std::string> needles) {
    auto all_seen = [&] {
      for (const std::string& n : needles) {
        if (o.out.find(n) == std::string::npos) return false;
      }
      return true;
    };
    return RunUntil([&] { return o.done || all_seen(); }) && !o.done;
  }
  /// The record of `pid` in the tree's exit, or null when it has none.
  static const ProcessRecord* RecordOf(const Outcome& o, pid_t pid) {
    for (const auto& r : o.exit.records) {
      if (r.pid == pid) return &r;
    }
    return nullptr;
  }
  /// Every record's pid must be gone once on_exit has run, not merely dying.
  void ExpectRecordsGone(const Outcome& o) {
    for (const auto& r : o.exit.records) EXPECT_TRUE(PidGone(r.pid)) << r.pid << " " << r.command;
    EXPECT_TRUE(Survivors(tag_).empty());
  }
  pid_t ReadPid(const std::string& name) {
    auto text = ReadFile(dir_ + "/" + name);
    EXPECT_TRUE(text.ok()) << name;
    return text.ok() ? static_cast<pid_t>(std::atoi(text->c_str())) : -1;
  }
  bool FileExists(const std::string& name) {
    struct stat sb {};
    return ::stat((dir_ + "/" + name).c_str(), &sb) == 0;
  }
  /// A tree whose main process starts a daemon (setsid + double fork: it leaves the group and
  /// the session, and is re-parented to the runner) that sets `term_trap` as its TERM trap,
  /// writes its pid to $D/daemon and runs `body`; then the main process prints "ready" and
  /// runs `then`.
  std::shared_ptr<ProcessTree> StartWithDaemon(const std::string& term_trap,
                                               const std::string& body, const std::string& then,
                                               Outcome& o) {
    return Start(Shell("( setsid sh -c 'trap " + term_trap + " TERM; echo $$ > \"$D/daemon\"; " +
                       body + "' & )\nwhile [ ! -s \"$D/daemon\" ]; do sleep 0.01; done\n" +
                       "echo ready\n" + then),
                 o);
  }
  /// Remembers pids that must be gone after the test.
  void ExpectGoneLater(pid_t pid) { recorded_.push_back(pid); }

  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Supervisor> sup_;
  std::string mechanism_;
  std::string dir_;
  std::string tag_;
  std::vector<pid_t> recorded_;
  bool skipped_ = false;
};

}  // namespace sr::testing
