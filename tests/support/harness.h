// Test support for tests that drive the real step-runner binary: temp dirs with files, and
// child processes with captured output, signals and a safety timeout (never a timing assertion).
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace sr::test {

/// Path of the built binary (set by CMake).
std::string Binary();

/// A scratch directory removed at the end of the test.
class TestDir {
 public:
  TestDir();
  ~TestDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }
  /// Writes `content` to `rel` (creating parent directories); returns the full path.
  std::string Write(const std::string& rel, const std::string& content, int mode = 0644) const;
  std::string Read(const std::string& rel) const;
  bool Exists(const std::string& rel) const;

 private:
  std::string path_;
};

struct Output {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  std::string out, err;
};

struct Options {
  std::string cwd;
  std::map<std::string, std::string> env;  // added to (or replacing) the test's environment
  std::vector<std::string> unset_env;
  std::chrono::seconds timeout{120};      // safety net only: the child is killed after it
};

/// The environment a child runs with, as NAME=value strings: the test's own, less
/// `options.unset_env`, with `options.env` laid over it. When `own_tmpdir` is given and the test
/// chose no TMPDIR (set or unset), TMPDIR is `own_tmpdir`.
std::vector<std::string> ChildEnvironment(const Options& options, const std::string& own_tmpdir = "");
/// Pointers into `strings` with a null at the end, for execve.
std::vector<char*> ExecVector(std::vector<std::string>& strings);

/// A running child with stdout/stderr captured to files.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const Options& options);
  ~Child();
  pid_t pid() const { return pid_; }
  void Signal(int signo);
  /// Waits for exit (killing the child after the safety timeout) and returns what it printed.
  Output Wait();
  /// Blocks until `path` exists or the safety timeout passes; returns whether it exists.
  bool WaitForFile(const std::string& path);
  /// Current captured stdout (while running).
  std::string StdoutSoFar() const;
  /// Current captured stderr (while running).
  std::string StderrSoFar() const;

 private:
  pid_t pid_ = -1;
  std::string out_path_, err_path_, dir_;
  Options options_;
  bool waited_ = false;
  Output result_;
};

/// Runs the binary with `args` to completion.
Output RunStepRunner(const std::vector<std::string>& args, const Options& options = {});

/// True if a process with this pid exists and is not a zombie.
bool ProcessAlive(pid_t pid);
/// Reads whitespace-separated pids from a file (missing file → empty).
std::vector<pid_t> ReadPids(const std::string& path);
/// Whether the running kernel is at least `major`.`minor` (uname).
bool KernelAtLeast(int major, int minor);
/// Makes the test process a child subreaper and reaps orphans, so trees leave no zombies.
void BecomeSubreaper();
/// Reaps every exited child that nobody else waits for.
void ReapOrphans();

/// The fixture of a test that starts process trees in a directory of its own: the test adopts
/// their orphans and reaps them at the end (pid 1 here reaps nothing). Each suite derives its
/// own empty class from it, for its name.
class TreeTest : public ::testing::Test {
 protected:
  void SetUp() override { BecomeSubreaper(); }
  void TearDown() override { ReapOrphans(); }
  TestDir dir;
};

}  // namespace sr::test
