// Test support for tests/faults_kill_points_test.cc: which system calls of a runner name a path in
// its TMPDIR, read from a dry run's strace trace, and a kill exactly as its main thread enters one
// of them.
//
// The kill is made by a ptrace tracer of the main thread that counts only those calls, not by
// strace's `-e inject=...:when=N`: that counts every call of a name the thread makes, and the main
// thread of `serve` makes some at random. absl (under gRPC) reads /sys/devices/system/cpu/online
// and .../cpu0/tsc_freq_khz once per process, on whichever thread first needs them (the first to
// wait on a contended mutex), often the main one. So no N names the same openat in every run;
// counting only the calls that name the directory, which only the runner's own code makes, does.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "support/harness.h"

namespace sr::test {

/// The system calls that make, rename or remove a name (strace's `-e trace=` syntax).
inline constexpr char kPathCalls[] =
    "mkdir,mkdirat,mknod,mknodat,open,openat,openat2,creat,rename,renameat,renameat2,link,linkat,"
    "symlink,symlinkat,unlink,unlinkat,rmdir";

// --- The dry run's trace (strace -o with -y; -f for every thread) ---

/// A line of a trace, or a call as KilledAt says it (`<name> "<path>"...`).
struct TracedCall {
  long tid = 0;      // the thread that made it (0 in a trace without -f)
  std::string name;  // of the call the line starts, "" if none (a resumed call, a signal, an exit)
  std::string text;  // the line after the thread
  std::string line;
};
/// The calls in a trace file, each at its first line (an interrupted call resumes on a later one).
std::vector<TracedCall> CallsIn(const std::string& trace);
/// The calls of thread `tid` whose arguments name a path under `dir` (or a descriptor's under it).
std::vector<TracedCall> PathCallsUnder(std::vector<TracedCall> calls, long tid,
                                       const std::string& dir);
/// The name and the paths of a call, without what differs from run to run: the random part of
/// transit and temp dir names, and numbers (pids, start times).
std::string Shape(const std::string& call);
/// The threads of process `main` in a `strace -f` trace of clone and clone3: main and every thread
/// (CLONE_THREAD) one of them made.
std::set<long> ThreadsIn(const std::string& trace, long main);

// --- The kill ---

/// A traced process while it runs, for the test's other thread.
struct Tracee {
  pid_t pid = 0;
  int pidfd = -1;
  std::atomic<bool> ended{false};
  /// Signals it through its pidfd: once it ended, no other process that got its pid.
  void Signal(int signo) const;
};

struct KilledAt {
  std::string call;     // `<name> "<path>"[ "<path>"]`: the call it was killed entering, or ""
  int status = 0;       // as waitpid reports it
  std::string err;      // what it wrote to stderr
  bool killed() const;  // by SIGKILL
};

/// Runs `argv` as Child would with `options`, its main thread traced, and kills it with SIGKILL
/// as that thread enters its `nth` call (from 1) of kPathCalls that names a path under `dir`
/// (relative paths resolved). `meanwhile`, if given, runs on another thread while it runs.
KilledAt KillEntering(const std::vector<std::string>& argv, const Options& options,
                      const std::string& dir, int nth,
                      const std::function<void(const Tracee&)>& meanwhile = nullptr);

}  // namespace sr::test
