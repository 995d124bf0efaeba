// `run` when the machine is short of something: on a full disk (a real tmpfs filled to the last
// byte) a clear error naming the file and nothing left behind on the disk — no empty record, no
// cut results file, no temp dir; under a tight open-files limit (`prlimit`), every step runs
// where one does, give or take two fds (the fds the runner keeps for speed give way); with
// a stdout nobody reads, a Ctrl-C and a timeout still stop the job.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/harness.h"
#include "support/scarce.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class RunFaults : public TreeTest {};

// Writes `path` until the disk refuses another byte.
void FillUp(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  const std::string chunk(4096, 'x');
  while (::write(fd, chunk.data(), chunk.size()) > 0) {
  }
  while (::write(fd, "x", 1) > 0) {
  }
  ::close(fd);
}

std::vector<std::string> Entries(const std::string& path) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(path)) {
    out.push_back(e.path().filename().string());
  }
  return out;
}

TEST_F(RunFaults, RunOnAFullTmpdirFailsClearlyAndLeavesNothing) {
  SmallDisk disk(dir / "disk", "256k");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs (not root?)";
  FillUp(dir / "disk/fill");
  dir.Write("p.yml", "spec: {}\n---\nrun:\n  - name: hello\n    script: echo hello\n");
  Output o = RunStepRunner({"run", "-f", dir / "p.yml"}, {.env = {{"TMPDIR", dir / "disk"}}});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, StartsWith("step-runner: " + dir / "disk/"));
  EXPECT_THAT(o.err, HasSubstr("No space left on device"));
  EXPECT_THAT(o.out, ::testing::Not(HasSubstr("hello")));
  EXPECT_EQ(Entries(dir / "disk"), std::vector<std::string>{"fill"}) << "left on the full disk";
  // Space again: the same command runs.
  std::filesystem::remove(dir / "disk/fill");
  Output again = RunStepRunner({"run", "-f", dir / "p.yml"}, {.env = {{"TMPDIR", dir / "disk"}}});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.out, HasSubstr("hello"));
  EXPECT_TRUE(Entries(dir / "disk").empty());
}

TEST_F(RunFaults, ResultsFileOnAFullDiskIsAnErrorAndNoCutFile) {
  SmallDisk disk(dir / "disk", "256k");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs (not root?)";
  FillUp(dir / "disk/fill");
  dir.Write("p.yml", "spec: {}\n---\nrun:\n  - name: hello\n    script: echo hello\n");
  Output o = RunStepRunner({"run", "-f", dir / "p.yml", "--step-results-file", dir / "disk/r.json"});
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.out, HasSubstr("hello"));
  EXPECT_THAT(o.err, HasSubstr("writing step results"));
  EXPECT_THAT(o.err, HasSubstr(dir / "disk/r.json"));
  EXPECT_THAT(o.err, HasSubstr("No space left on device"));
  EXPECT_FALSE(dir.Exists("disk/r.json")) << "a cut results file was left behind";
}

// A results file that cannot be written is found out before the job runs, not after: nothing
// has run, so nothing is lost.
TEST_F(RunFaults, ResultsFileInAMissingDirectoryIsRefusedBeforeAnythingRuns) {
  dir.Write("p.yml", "spec: {}\n---\nrun:\n  - name: hello\n    script: touch " + dir / "ran" + "\n");
  dir.Write("plain", "");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {dir / "missing/r.json", dir / "missing: No such file or directory"},
      {dir / "plain/r.json", dir / "plain: not a directory"},
      {dir.path(), dir.path() + ": is a directory"}};
  for (const auto& [file, why] : cases) {
    Output o = RunStepRunner({"run", "-f", dir / "p.yml", "--step-results-file", file});
    EXPECT_EQ(o.exit_code, 2) << file << ": " << o.err;
    EXPECT_THAT(o.err, HasSubstr("step-runner: step results file " + file));
    EXPECT_THAT(o.err, HasSubstr(why + " (nothing was run)"));
    EXPECT_FALSE(dir.Exists("ran")) << file;
  }
}

// A TMPDIR that is gone or not a directory: `run` and `serve` refuse to start, naming TMPDIR
// (before, `run` said "mkdtemp <dir>/step-runner-XXXXXX" and `serve` started, then failed every job).
TEST_F(RunFaults, UnusableTmpdirIsRefusedByNameBeforeAnythingRuns) {
  dir.Write("p.yml", "spec: {}\n---\nrun:\n  - name: hello\n    script: touch " + dir / "ran" + "\n");
  dir.Write("plain", "");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {dir / "missing", "No such file or directory"}, {dir / "plain", "Not a directory"}};
  for (const auto& [tmpdir, why] : cases) {
    const std::string expected = "step-runner: TMPDIR " + tmpdir + ": " + why;
    Output run = RunStepRunner({"run", "-f", dir / "p.yml"}, {.env = {{"TMPDIR", tmpdir}}});
    EXPECT_EQ(run.exit_code, 2) << tmpdir << ": " << run.err;
    EXPECT_THAT(run.err, HasSubstr(expected));
    EXPECT_FALSE(dir.Exists("ran")) << tmpdir;
    // The safety net ends a server that started after all (the old behaviour).
    Output serve = RunStepRunner({"serve", "--socket", dir / "s.sock"},
                                 {.env = {{"TMPDIR", tmpdir}}, .timeout = std::chrono::seconds(10)});
    EXPECT_EQ(serve.exit_code, 2) << tmpdir << ": " << serve.err;
    EXPECT_THAT(serve.err, HasSubstr(expected));
    EXPECT_FALSE(dir.Exists("s.sock")) << tmpdir;
  }
}

TEST_F(RunFaults, ClosedStdoutOrStderrIsNullNotTheNextFdOpened) {
  // `run … >&-`: fd 1 used to be taken by the runner's signalfd, its output written there
  // (EINVAL) failed the job after the first step; with `2>&-` the runner's own lines went into
  // whatever fd took number 2. Closed standard fds are /dev/null now, as in Go since 1.22.
  dir.Write("p.yml", "spec: {}\n---\nrun:\n  - name: one\n    script: echo one; echo err >&2\n"
                     "  - name: two\n    script: touch " + dir / "two-ran" + "\n");
  for (const std::string closed : {">&-", "2>&-", "<&- >&- 2>&-"}) {
    std::filesystem::remove(dir / "two-ran");
    Output o = Child({"/bin/sh", "-c", "exec \"$0\" run -f \"$1\" " + closed, Binary(), dir / "p.yml"}, {})
                   .Wait();
    EXPECT_EQ(o.exit_code, 0) << closed << ": " << o.err;
    EXPECT_TRUE(dir.Exists("two-ran")) << closed;
    if (closed == "2>&-") {
      EXPECT_THAT(o.out, HasSubstr("one\n"));
    }
    if (closed == ">&-") {
      EXPECT_THAT(o.err, HasSubstr("err\n"));
    }
  }
}

// Polls `done` for at most `limit`; a test that fails here must not wait 120 s.
bool Within(std::chrono::seconds limit, const std::function<bool()>& done) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

bool AppearsWithin(const std::string& path, std::chrono::seconds limit) {
  return Within(limit, [&] { return ::access(path.c_str(), F_OK) == 0; });
}

// `run … | reader` whose reader stops reading (a paused terminal, `less`, a stuck CI agent):
// the runner used to sit in write(2) on its full stdout, so neither Ctrl-C nor --timeout
// acted, and the step ran on. Now the step waits on its own full pipe while the runner serves
// the cancel; only the runner's last output waits for the reader (a second Ctrl-C gives up).
// The reader is a pipe or a socket, read for 100 bytes (the step is running), then held.
TEST_F(RunFaults, CtrlCAndTimeoutActWhileStdoutIsNotRead) {
  dir.Write("noisy.yml", "spec: {}\n---\nrun:\n  - name: noisy\n"
                         "    script: echo $$ > step.tmp && mv step.tmp step.pid; "
                         "exec yes some output to fill the pipe\n");
  dir.Write("reader.py",
            "import os, socket, subprocess, sys\n"
            "kind, extra = sys.argv[1], sys.argv[2:]\n"
            "if kind == 'socket':\n"
            "    ours, theirs = socket.socketpair()\n"
            "    read = lambda: ours.recv(100)\n"
            "else:\n"
            "    r, theirs = os.pipe()\n"
            "    read = lambda: os.read(r, 100)\n"
            "p = subprocess.Popen(['" + Binary() + "', 'run', '-f', 'noisy.yml', '--grace', '500ms',"
            " '--step-results-file', 'r.json'] + extra, stdout=theirs, stderr=open('err.txt', 'w'))\n"
            "theirs.close() if kind == 'socket' else os.close(theirs)\n"
            "with open('runner.tmp', 'w') as f: f.write(str(p.pid))\n"
            "os.rename('runner.tmp', 'runner.pid')\n"
            "read()\n"
            "sys.exit(p.wait())\n");
  struct Case {
    std::string reader, how;
  };
  for (const Case& c : {Case{"pipe", "ctrl-c"}, Case{"pipe", "timeout"}, Case{"socket", "ctrl-c"}}) {
    const std::string what = c.reader + ", " + c.how;
    for (const char* f : {"r.json", "step.pid", "runner.pid"}) ::unlink((dir / f).c_str());
    std::vector<std::string> argv{"/usr/bin/python3", dir / "reader.py", c.reader};
    if (c.how == "timeout") argv.insert(argv.end(), {"--timeout", "3s"});  // after step.pid
    Options o;
    o.cwd = dir.path();
    Child reader(argv, o);
    ASSERT_TRUE(AppearsWithin(dir / "step.pid", std::chrono::seconds(30))) << what;
    ASSERT_TRUE(AppearsWithin(dir / "runner.pid", std::chrono::seconds(30))) << what;
    const pid_t runner = ReadPids(dir / "runner.pid").at(0);
    const pid_t step = ReadPids(dir / "step.pid").at(0);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let the pipe fill up
    if (c.how == "ctrl-c") ::kill(runner, SIGINT);
    // The results file is written in place: it is all there once it parses.
    const bool ended =
        Within(std::chrono::seconds(20), [&] { return nlohmann::json::accept(dir.Read("r.json")); });
    EXPECT_TRUE(ended) << what << ": the job did not end while stdout was full";
    if (ended) {
      const std::string results = dir.Read("r.json");
      EXPECT_THAT(results, HasSubstr(c.how == "timeout" ? "timed_out" : "cancel_requested")) << what;
      // Reaped by the runner before it wrote the results: not running now.
      EXPECT_FALSE(ProcessAlive(step)) << what << ": the step still runs";
    }
    // The runner waits to hand its last output to the reader; a second signal gives up on it.
    ::kill(runner, ended ? SIGINT : SIGKILL);
    Output out = reader.Wait();
    EXPECT_EQ(out.exit_code, ended ? (c.how == "timeout" ? 124 : 130) : 255 - 8) << what << out.err;
    EXPECT_THAT(dir.Read("err.txt"), HasSubstr(c.how == "timeout" ? "(timed out)" : "(cancelled)"))
        << what;
    ReapOrphans();
  }
}

// `run -f file` with soft and hard open-files limits `n`, set by the real prlimit.
Output RunWithFdLimit(const TestDir& dir, int n, const std::string& file, const std::string& cgroup,
                      const std::string& tmpdir = "") {
  const std::string limit = "--nofile=" + std::to_string(n) + ":" + std::to_string(n);
  Options o;
  FullFdTable(dir, o);
  if (!cgroup.empty()) o.env["STEP_RUNNER_CGROUP"] = cgroup;
  if (!tmpdir.empty()) o.env["TMPDIR"] = tmpdir;
  return Child({"/usr/bin/prlimit", limit, Binary(), "run", "-f", file}, o).Wait();
}

// A start-up that runs out of fds (its temp dir's owner mark refused with EMFILE at 7 or 8
// fds) left its empty temp dir for good: removing it needed an fd to list it. Whatever the
// limit, a failed run leaves nothing in TMPDIR, as on a full disk.
TEST_F(RunFaults, UnderAnyFdLimitAFailedRunLeavesNothingInTmpdir) {
  if (::access("/usr/bin/prlimit", X_OK) != 0) GTEST_SKIP() << "no prlimit";
  const std::string file = dir.Write("hello.yml", "spec: {}\n---\nrun:\n  - name: s\n    script: echo hello\n");
  const std::string tmp = dir.Write("t/.keep", "").substr(0, (dir / "t").size());
  ::unlink((tmp + "/.keep").c_str());
  for (int n = 5; n <= 16; ++n) {
    Output o = RunWithFdLimit(dir, n, file, "", tmp);
    EXPECT_THAT(Entries(tmp), ::testing::IsEmpty()) << "limit " << n << ": " << o.err;
    for (const auto& name : Entries(tmp)) std::filesystem::remove_all(tmp + "/" + name);
  }
}

TEST_F(RunFaults, UnderAnFdLimitThatFitsOneStepEveryStepRuns) {
  if (::access("/usr/bin/prlimit", X_OK) != 0) GTEST_SKIP() << "no prlimit";
  std::string one = "spec: {}\n---\nrun:\n  - name: s0\n    script: echo s0\n";
  std::string five = "spec: {}\n---\nrun:\n";
  for (int i = 0; i < 5; ++i) {
    five += "  - name: s" + std::to_string(i) + "\n    script: echo s" + std::to_string(i) + "\n";
  }
  const std::string one_file = dir.Write("one.yml", one);
  const std::string five_file = dir.Write("five.yml", five);
  for (const std::string cgroup : {"", "off"}) {
    int n = 6;
    while (n <= 64 && RunWithFdLimit(dir, n, one_file, cgroup).exit_code != 0) ++n;
    ASSERT_LE(n, 64) << "not even one step ran under 64 fds, cgroup=" << cgroup;
    // Two to spare for what is opened once and kept for good after a first step (the
    // fallback's /proc fd); what is kept only for speed must not need more.
    n += 2;
    Output o = RunWithFdLimit(dir, n, five_file, cgroup);
    EXPECT_EQ(o.exit_code, 0) << "cgroup=" << cgroup << ", limit " << n << ": " << o.err;
    EXPECT_THAT(o.out, HasSubstr("s4"));
  }
}

}  // namespace
}  // namespace sr::test
