// A runner killed with SIGKILL at any moment leaves nothing in TMPDIR that the next runner's
// start does not remove (contract section 7 item 1). `run`, and `serve` through a job's whole life,
// are killed entering each system call that names a path in TMPDIR in turn, so every state in
// between (a directory made but not yet marked, a mark removed but not yet its directory) is met,
// not just those a timed kill happens to hit. A dry run under strace lists the calls; a tracer that
// counts only those makes each kill (support/kill_points.h says why not strace's `when=`). Before
// owned directories were made and removed under a transit name, a kill at the owner mark's open or
// at the last rmdir left an empty, unmarked directory for good.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "support/harness.h"
#include "support/hostile.h"
#include "support/kill_points.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kStrace[] = "/usr/bin/strace";

grpc::Status DriveJob(const std::string& socket, const proto::RunRequest& job, std::string* log,
                      proto::StatusResponse* status);

class KillPoints : public TreeTest {
 protected:
  void SetUp() override {
    TreeTest::SetUp();
    if (::access(kStrace, X_OK) != 0) GTEST_SKIP() << "no " << kStrace;
    if (!KernelAtLeast(5, 3)) GTEST_SKIP() << "no PTRACE_GET_SYSCALL_INFO, no pidfd";
  }
  Options RunnerOptions() const {
    Options o = ServerOptions(box.dir());
    o.cwd = box.cwd();
    o.env["TMPDIR"] = box.tmp();
    o.env["ASAN_OPTIONS"] = "detect_leaks=0";  // LeakSanitizer cannot work under ptrace
    o.timeout = std::chrono::seconds(120);
    return o;
  }
  // Kills the runner `argv` entering the `nth` call of the dry run's `points` (its main thread's
  // calls naming TMPDIR); `meanwhile` drives it. Then `restart` (it sweeps TMPDIR), and TMPDIR
  // must be empty but for the git cache.
  void KillAndRestart(const std::vector<std::string>& argv, const std::vector<TracedCall>& points,
                      size_t nth, const std::function<void(const Tracee&)>& meanwhile,
                      const std::function<Output()>& restart) {
    SCOPED_TRACE("killed entering " + points[nth - 1].line);
    KilledAt k = KillEntering(argv, RunnerOptions(), box.tmp(), static_cast<int>(nth), meanwhile);
    EXPECT_TRUE(k.killed()) << "status " << k.status << ": " << k.err;
    EXPECT_EQ(Shape(k.call), Shape(points[nth - 1].line)) << k.err;
    Output next = restart();
    EXPECT_EQ(next.exit_code, 0) << next.err;
    EXPECT_THAT(box.Leftovers(), IsEmpty());
    for (const std::string& left : box.Leftovers())
      std::filesystem::remove_all(left);  // start clean
    ReapOrphans();                        // the dead runner's orphans, killed by the sweep
  }
  // `drive` once a `serve` on `socket` (removed before it started) listens, unless it ended
  // first; then SIGTERM.
  std::function<void(const Tracee&)> Drive(const std::function<void()>& drive) const {
    return [this, drive](const Tracee& server) {
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::seconds(60);  // safety net only
      while (!server.ended && !std::filesystem::exists(socket) &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      if (!server.ended) drive();
      server.Signal(SIGTERM);
    };
  }
  std::vector<std::string> Serve() const { return {Binary(), "serve", "--socket", socket}; }
  // The calls of `serve`'s main thread that name TMPDIR through `job`'s whole life (DriveJob),
  // from a dry run with every thread traced (strace -f), which must run the job to success with
  // `logged` in its log; no other thread may make such calls.
  void ServePoints(const proto::RunRequest& job, const std::string& logged, std::vector<TracedCall>* points) {
    const std::vector<std::string> serve = Serve();
    const std::string trace = box.dir() / "trace";
    std::vector<std::string> strace = {
        kStrace, "-f", "-y", "-o", trace, "-e", std::string("trace=clone,clone3,") + kPathCalls};
    strace.insert(strace.end(), serve.begin(), serve.end());
    Child dry(strace, RunnerOptions());
    ASSERT_TRUE(dry.WaitForFile(socket)) << dry.Wait().err;
    pid_t server = 0;  // strace's only child
    std::ifstream("/proc/" + std::to_string(dry.pid()) + "/task/" + std::to_string(dry.pid()) +
                  "/children") >>
        server;
    std::string log;
    proto::StatusResponse status;
    const grpc::Status drove = DriveJob(socket, job, &log, &status);
    if (server > 0) ::kill(server, SIGTERM);  // alive unless the dry run failed already
    Output said = dry.Wait();
    ASSERT_GT(server, 0);
    ASSERT_EQ(said.exit_code, 0) << said.err;
    ASSERT_TRUE(drove.ok()) << drove.error_message();
    ASSERT_EQ(status.jobs_size(), 1);
    ASSERT_EQ(status.jobs(0).status(), proto::StepResult::success) << status.DebugString();
    ASSERT_THAT(log, HasSubstr(logged));
    const std::vector<TracedCall> calls = CallsIn(trace);
    *points = PathCallsUnder(calls, server, box.tmp());
    for (long thread : ThreadsIn(trace, server)) {
      EXPECT_TRUE(thread == server || PathCallsUnder(calls, thread, box.tmp()).empty())
          << "thread " << thread;
    }
    ASSERT_THAT(box.Leftovers(), IsEmpty());
  }
  // A plain `serve` started (its start removes what dead runners left) and stopped.
  Output PlainServe() const {
    std::filesystem::remove(socket);  // a killed server's: the wait below would end at once
    Child server({Binary(), "serve", "--socket", socket}, RunnerOptions());
    EXPECT_TRUE(server.WaitForFile(socket));
    server.Signal(SIGTERM);
    return server.Wait();
  }
  Sandbox box;
  const std::string socket = box.dir() / "s.sock";
};

// One job's whole life: Run, its log to the end, Status, Close; each call with a deadline, the
// first that fails (its server was killed) the last.
grpc::Status DriveJob(const std::string& socket, const proto::RunRequest& job, std::string* log,
                      proto::StatusResponse* status) {
  auto stub = proto::StepRunner::NewStub(
      grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
  grpc::ClientContext run, follow, state, close;
  for (auto* c : {&run, &follow, &state, &close})
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  proto::RunResponse ran;
  grpc::Status s = stub->Run(&run, job, &ran);
  if (!s.ok()) return s;
  proto::FollowLogsRequest from;
  from.set_id(job.id());
  auto reader = stub->FollowLogs(&follow, from);
  for (proto::FollowLogsResponse chunk; reader->Read(&chunk);) *log += chunk.data();
  if (!(s = reader->Finish()).ok()) return s;
  proto::StatusRequest which;
  which.set_id(job.id());
  if (!(s = stub->Status(&state, which, status)).ok()) return s;
  proto::CloseRequest closing;
  closing.set_id(job.id());
  proto::CloseResponse closed;
  return stub->Close(&close, closing, &closed);
}

TEST_F(KillPoints, ASigkillAtAnyCallOnTmpdirLeavesNothingTheNextStartKeeps) {
  const std::string step =
      box.Write("p.yml", "spec: {}\n---\nrun:\n  - name: one\n    script: echo one\n");
  const std::string trace = box.dir() / "trace";
  const std::vector<std::string> run = {Binary(), "run", "-f", step};
  std::vector<std::string> strace = {kStrace, "-y", "-o",
                                     trace,   "-e", std::string("trace=") + kPathCalls};
  strace.insert(strace.end(), run.begin(), run.end());
  Output dry = Child(strace, RunnerOptions()).Wait();
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  const std::vector<TracedCall> points = PathCallsUnder(CallsIn(trace), 0, box.tmp());
  ASSERT_GE(points.size(), 4u) << dry.err;  // at least the temp dir's making, its mark, its removal
  ASSERT_THAT(box.Leftovers(), IsEmpty());
  for (size_t nth = 1; nth <= points.size(); ++nth) {
    // The next start removes what the dead runner left; then it runs and leaves nothing itself.
    KillAndRestart(run, points, nth, nullptr, [&] { return box.Run({"run", "-f", step}); });
  }
}

// The same for `serve` through a job's whole life: Run, the log to its end, Status, Close, SIGTERM.
TEST_F(KillPoints, ASigkillOfServeAtAnyCallOnTmpdirLeavesNothingTheNextStartKeeps) {
  // Every kind of file a job dir holds: the log, the step's files in .tmp, a file variable.
  const std::string script =
      "echo '{\"name\":\"v\",\"value\":\"1\"}' > \"${{ output_file }}\"\ncat \"${{ job.F }}\"";
  proto::RunRequest job = Request("killed", Steps({{"one", script}}), box.cwd());
  proto::Variable* file = job.mutable_job()->add_variables();
  file->set_key("F");
  file->set_value("from a file variable");
  file->set_file(true);
  std::vector<TracedCall> points;
  ServePoints(job, "from a file variable", &points);
  ASSERT_FALSE(HasFatalFailure());
  // At least the cgroup record's writing, the job dir's making, marking and placing, its .tmp,
  // log and file variable, and its removal.
  ASSERT_GE(points.size(), 10u);
  ASSERT_THAT(box.Leftovers(), IsEmpty());
  for (size_t nth = 1; nth <= points.size(); ++nth) {
    std::filesystem::remove(socket);  // a killed server's: the wait for it would end at once
    auto drive = Drive([&] {
      std::string ignored;
      proto::StatusResponse unused;
      (void)DriveJob(socket, job, &ignored, &unused);  // fails once the server is dead: expected
    });
    KillAndRestart(Serve(), points, nth, drive, [&] { return PlainServe(); });
  }
}

// A server killed while it starts a job that `client run` asked for (entering the job dir's
// making), after the client had reached it: the client says it lost the server while starting
// the job. It said "cannot reach step-runner", as if no server had ever listened.
TEST_F(KillPoints, ClientRunSaysItLostAServerKilledWhileStartingTheJob) {
  proto::RunRequest job = Request("dry", Steps({{"one", "echo one"}}), box.cwd());
  std::vector<TracedCall> points;
  ServePoints(job, "one", &points);
  ASSERT_FALSE(HasFatalFailure());
  const auto making = std::find_if(points.begin(), points.end(), [](const TracedCall& c) {
    return c.line.find(".step-runner-owned-") != std::string::npos;
  });
  ASSERT_NE(making, points.end());
  const std::string step = box.Write("p.yml", "spec: {}\n---\nrun:\n  - name: one\n    script: echo one\n");
  std::filesystem::remove(socket);
  Output client;
  KilledAt k = KillEntering(Serve(), RunnerOptions(), box.tmp(), static_cast<int>(making - points.begin()) + 1,
                            Drive([&] {
                              client = RunStepRunner({"client", "--socket", socket, "run", step, "--id", "lost"},
                                                     RunnerOptions());
                            }));
  ASSERT_TRUE(k.killed()) << k.err;
  EXPECT_EQ(Shape(k.call), Shape(making->line));
  EXPECT_EQ(client.exit_code, 1) << client.err;
  EXPECT_THAT(client.err, HasSubstr("step-runner: lost step-runner at " + socket + " while starting job \"lost\""));
  EXPECT_EQ(PlainServe().exit_code, 0);
  ReapOrphans();
}

}  // namespace
}  // namespace sr::test
