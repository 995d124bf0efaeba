// `step-runner client ...` against a live server: the operator's commands end to end.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "support/harness.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class ServiceCli : public ::testing::Test {
 protected:
  ServiceCli() : server_(dir_) {}
  // Runs `step-runner client --socket S args...`.
  Output Client(const std::vector<std::string>& args) {
    std::vector<std::string> full{"client", "--socket", server_.socket()};
    full.insert(full.end(), args.begin(), args.end());
    return RunStepRunner(full, ClientOptions(dir_.path()));
  }
  std::string File(const std::string& name, const std::vector<std::pair<std::string, std::string>>& steps) {
    return dir_.Write(name, Steps(steps));
  }

  TestDir dir_;
  LiveServer server_;
};

// Waits until `client` follows its job's log: it printed the step's `up` line. A test that stops
// the server, closes the job or kills the server must wait for this, not merely for the step to
// run: before Run's answer and the FollowLogs that follows it, the client does not follow yet
// (TSan runs met it, for a kill and a shutdown).
bool Follows(const Child& client) {
  return WaitFor([&] { return client.StdoutSoFar().find("up\n") != std::string::npos; });
}

TEST_F(ServiceCli, RunFollowStatusLogsClose) {
  std::string file = File("ok.yml", {{"hello", "echo hello from the job\necho second line"}});
  Output run = Client({"run", file, "--id", "ok", "--follow", "--env", "GREETING=hi there"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("hello from the job\nsecond line\n"));

  Output json = Client({"status", "ok", "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  auto status = nlohmann::json::parse(json.out);
  EXPECT_EQ(status["id"], "ok");
  EXPECT_EQ(status["status"], "success");
  EXPECT_TRUE(status.contains("startTime"));
  EXPECT_TRUE(status.contains("endTime"));
  EXPECT_EQ(status["result"]["subStepResults"][0]["step"]["name"], "hello");

  Output table = Client({"status"});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("ok"));
  EXPECT_THAT(table.out, HasSubstr("success"));
  Output human = Client({"status", "ok"});
  EXPECT_THAT(human.out, HasSubstr("state:     success"));

  Output logs = Client({"logs", "ok"});
  EXPECT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(logs.out, run.out);
  Output tail = Client({"logs", "ok", "--offset", "3"});
  EXPECT_EQ(tail.out, run.out.substr(3));

  EXPECT_EQ(Client({"close", "ok"}).exit_code, 0);
  Output gone = Client({"status", "ok"});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_THAT(gone.err, HasSubstr("step-runner: no job with id \"ok\""));
  EXPECT_EQ(Client({"close", "ok"}).exit_code, 0);  // idempotent
}

TEST_F(ServiceCli, FollowExitCodesFollowTheJob) {
  Output failed = Client({"run", File("f.yml", {{"build", "exit 2"}}), "--id", "f", "--follow"});
  EXPECT_EQ(failed.exit_code, 1);
  EXPECT_THAT(failed.err, HasSubstr("step-runner: step \"build\": exec: exit status 2"));

  Output timed_out = Client({"run", File("t.yml", {{"slow", "sleep 60"}}), "--id", "t", "--follow",
                             "--timeout", "300ms", "--grace", "1s"});
  EXPECT_EQ(timed_out.exit_code, 124) << timed_out.err;

  Output masked = Client({"run", File("m.yml", {{"m", "echo secret=${{ job.TOKEN }}"}}), "--id", "m",
                          "--follow", "--masked-job", "TOKEN=hunter2"});
  EXPECT_EQ(masked.exit_code, 0) << masked.err;
  EXPECT_THAT(masked.out, HasSubstr("secret=[MASKED]"));
  EXPECT_THAT(masked.out, ::testing::Not(HasSubstr("hunter2")));
}

// Megabytes of output (the runner's pipe grows, it reads and the follower sends in large
// pieces) with a masked value split across two writes at a read boundary: the value is masked in
// the log a follower gets, and every other byte arrives, in order.
TEST_F(ServiceCli, SecretSplitAcrossLargeReadsIsMaskedInTheFollowedLog) {
  const std::string file = File(
      "big.yml", {{"big", "head -c 3145724 /dev/zero | tr '\\0' x; printf TOPS; sleep 0.3\n"
                          "printf ECRETVALUE; head -c 2000000 /dev/zero | tr '\\0' y"}});
  Output run = Client({"run", file, "--id", "big", "--follow", "--masked-job", "TOKEN=TOPSECRETVALUE"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out.find("TOPSECRETVALUE"), std::string::npos);
  const std::string expected = std::string(3145724, 'x') + "[MASKED]" + std::string(2000000, 'y');
  const size_t at = run.out.find(expected.substr(0, 100));
  ASSERT_NE(at, std::string::npos);
  EXPECT_TRUE(run.out.compare(at, expected.size(), expected) == 0) << "the log differs from the step's output";
  Output again = Client({"logs", "big"});  // a follower that starts after the job ended
  EXPECT_TRUE(again.out == run.out) << again.out.size() << " bytes, expected " << run.out.size();
  EXPECT_EQ(Client({"close", "big"}).exit_code, 0);
}

TEST_F(ServiceCli, CtrlCOnFollowCancelsTheJob) {
  std::string file = File("c.yml", {{"wait", "trap 'exit 1' TERM; touch " + dir_ / "ready" +
                                                 "; while :; do sleep 0.02; done"}});
  Child client({Binary(), "client", "--socket", server_.socket(), "run", file, "--id", "c", "--follow"},
               ClientOptions(dir_.path()));
  ASSERT_TRUE(client.WaitForFile(dir_ / "ready"));
  client.Signal(SIGINT);
  Output out = client.Wait();
  EXPECT_EQ(out.exit_code, 130) << out.err;
  EXPECT_THAT(out.err, HasSubstr("cancelling job \"c\""));
  EXPECT_EQ(server_.GetStatusOrDie("c").status(), proto::StepResult::cancelled);
}

// A server shut down while `client run --follow` follows a job: the job is cancelled, and the
// client exits with the cancelled job's code (130). The Status it asks after the log's end was
// refused (UNAVAILABLE) and the client exited 1, "cannot reach step-runner".
TEST_F(ServiceCli, FollowOfAJobCancelledByTheServersShutdownExitsWithItsCode) {
  std::string file = File("s.yml", {{"wait", "trap 'exit 1' TERM; echo up; while :; do sleep 0.02; done"}});
  Child client({Binary(), "client", "--socket", server_.socket(), "run", file, "--id", "s", "--follow"},
               ClientOptions(dir_.path()));
  // A FollowLogs that comes after the shutdown began is refused (contract section 1).
  ASSERT_TRUE(Follows(client));
  server_.child().Signal(SIGTERM);
  Output out = client.Wait();
  EXPECT_EQ(out.exit_code, 130) << out.err;
  EXPECT_THAT(out.out, HasSubstr("cancelling (server_shutdown)"));
  EXPECT_THAT(out.err, Not(HasSubstr("cannot reach")));
  Output server = server_.child().Wait();
  EXPECT_EQ(server.exit_code, 0) << server.err;
}

// Another client Closes the followed job: the job is forgotten by the time the follower asks
// for its status (NOT_FOUND), so the outcome comes with the log's end (trailing metadata). The
// follower used to exit 1 with `no job with id "c"` for a job that was cancelled.
TEST_F(ServiceCli, FollowOfAJobAnotherClientClosesExitsWithItsCode) {
  std::string file = File("c.yml", {{"wait", "echo up; sleep 100"}});
  Child client({Binary(), "client", "--socket", server_.socket(), "run", file, "--id", "c", "--follow"},
               ClientOptions(dir_.path()));
  // A Close before its FollowLogs would leave it no job to follow.
  ASSERT_TRUE(Follows(client));
  ASSERT_EQ(Client({"close", "c"}).exit_code, 0);
  Output out = client.Wait();
  EXPECT_EQ(out.exit_code, 130) << out.err;
  EXPECT_THAT(out.out, HasSubstr("cancelling (closed)"));
  EXPECT_THAT(out.err, Not(HasSubstr("no job with id")));
}

// The second Ctrl-C forces: the signal thread takes every signal, not only the first, and the
// processes that ignore SIGTERM are killed long before the 60 s grace.
TEST_F(ServiceCli, SecondCtrlCOnFollowForcesTheKill) {
  std::string file = File("k.yml", {{"stuck", "trap '' TERM; touch " + dir_ / "ready" +
                                                  "; while :; do sleep 0.02; done"}});
  Child client({Binary(), "client", "--socket", server_.socket(), "run", file, "--id", "k",
                "--follow", "--grace", "60s"},
               ClientOptions(dir_.path()));
  ASSERT_TRUE(client.WaitForFile(dir_ / "ready"));
  client.Signal(SIGINT);
  ASSERT_TRUE(WaitFor([&] {  // the first one took effect: the job is in its grace
    return server_.GetStatusOrDie("k").status() == proto::StepResult::cancelling;
  }));
  client.Signal(SIGINT);
  Output out = client.Wait();
  EXPECT_EQ(out.exit_code, 130) << out.err;
  EXPECT_THAT(out.err, HasSubstr("cancelling job \"k\""));
  EXPECT_THAT(out.err, HasSubstr("killing job \"k\" now"));
  EXPECT_THAT(out.out, HasSubstr("forced cancel"));
  EXPECT_EQ(server_.GetStatusOrDie("k").status(), proto::StepResult::cancelled);
}

// `client logs ID | head`: once head has left, the client stops following at once (the job goes
// on; its log stays on the server) instead of reading the rest of the job's life into nothing.
TEST_F(ServiceCli, LogsIntoAClosedPipeStopFollowingAndTheJobGoesOn) {
  std::string file = File("l.yml", {{"chatty", "touch " + dir_ / "ready" +
                                                   "; while :; do echo line; sleep 0.01; done"}});
  ASSERT_EQ(Client({"run", file, "--id", "l"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return dir_.Exists("ready"); }));
  const std::string more = File("l2.yml", {{"more", "while :; do echo more; sleep 0.01; done"}});
  for (const std::string& cmd : {std::string("logs l"), "run '" + more + "' --id l2 --follow"}) {
    const std::string line = "'" + Binary() + "' client --socket '" + server_.socket() + "' " +
                             cmd + " | head -c 4; echo \"rc=${PIPESTATUS[0]}\" >&2";
    Output o = Child({"/bin/bash", "-c", line}, ClientOptions(dir_.path())).Wait();
    EXPECT_EQ(o.out.size(), 4u) << cmd;
    EXPECT_THAT(o.err, HasSubstr("rc=1")) << cmd;
    EXPECT_THAT(o.err, HasSubstr("writing the job log to stdout: Broken pipe")) << cmd;
  }
  // Both jobs still run (a job without end would have kept the pipeline open forever).
  EXPECT_EQ(server_.GetStatusOrDie("l").status(), proto::StepResult::running);
  EXPECT_EQ(server_.GetStatusOrDie("l2").status(), proto::StepResult::running);
  EXPECT_EQ(Client({"cancel", "l"}).exit_code, 0);
  EXPECT_EQ(Client({"cancel", "l2"}).exit_code, 0);
  EXPECT_EQ(server_.WaitEnded("l").status(), proto::StepResult::cancelled);
  EXPECT_EQ(server_.WaitEnded("l2").status(), proto::StepResult::cancelled);
}

TEST_F(ServiceCli, CancelAnotherJob) {
  std::string file = File("w.yml", {{"wait", "touch " + dir_ / "ready" + "; sleep 60"}, {"never", "true"}});
  Output run = Client({"run", file, "--id", "w", "--grace", "200ms"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ASSERT_TRUE(WaitFor([&] { return dir_.Exists("ready"); }));
  Output cancel = Client({"cancel", "w"});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
  EXPECT_EQ(server_.WaitEnded("w").status(), proto::StepResult::cancelled);
  Output human = Client({"status", "w"});
  EXPECT_THAT(human.out, HasSubstr("state:     cancelled"));
  EXPECT_THAT(human.out, HasSubstr("termination: cancel_requested"));
  EXPECT_EQ(Client({"cancel", "w", "--force"}).exit_code, 0);  // finished: OK, no change
}

// `client run` with the id of a job whose Close is in progress: one line, the server's refusal
// (it said "already exists (cancelling); … was not run", then "is closing").
TEST_F(ServiceCli, RunWithTheIdOfAClosingJobSaysOneThing) {
  // The cancel's trap holds the job, and so the Close, until the test releases it.
  std::string file = File("c.yml", {{"s", "trap 'touch " + dir_ / "trapped" + "; while [ ! -e " + dir_ / "release" +
                                              " ]; do sleep 0.05; done; exit 0' TERM; touch " + dir_ / "ready" +
                                              "; sleep 60 & wait"}});
  ASSERT_EQ(Client({"run", file, "--id", "c"}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return dir_.Exists("ready"); }));
  Child closer({Binary(), "client", "--socket", server_.socket(), "close", "c"}, ClientOptions(dir_.path()));
  ASSERT_TRUE(closer.WaitForFile(dir_ / "trapped"));  // the Close has begun: it sent the signal
  Output run = Client({"run", file, "--id", "c"});
  dir_.Write("release", "");
  EXPECT_EQ(closer.Wait().exit_code, 0);
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_EQ(run.err, "step-runner: job \"c\" is closing; " + file + " was not run\n");
}

// A follow whose server dies under it says it lost the server, not that it could not reach it
// (it did: the job was taken), and exits 1. The guardian ends the job's processes.
TEST_F(ServiceCli, FollowThatLosesItsServerSaysSo) {
  TestDir other;
  LiveServer doomed(other);
  std::string file = File("long.yml", {{"long", "echo up; sleep 100"}});
  Child follow({Binary(), "client", "--socket", doomed.socket(), "run", file, "--id", "long", "--follow"},
               ClientOptions(dir_.path()));
  ASSERT_TRUE(Follows(follow));
  doomed.child().Signal(SIGKILL);
  Output o = follow.Wait();
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_THAT(o.err, HasSubstr("step-runner: lost step-runner at " + doomed.socket() +
                               " while following job \"long\""));
}

TEST_F(ServiceCli, Errors) {
  std::string file = File("ok.yml", {{"a", "true"}});
  Output no_id = Client({"run", file});
  EXPECT_EQ(no_id.exit_code, 2);
  Output bad = Client({"run", dir_.Write("bad.yml", "spec: {}\n---\nrun:\n  - nam: a\n"), "--id", "bad"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr(dir_ / "bad.yml:4"));
  Output unknown = Client({"cancel", "nope"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("step-runner: no job with id \"nope\""));
  Output no_server = RunStepRunner({"client", "--socket", dir_ / "none.sock", "status"}, ClientOptions(dir_.path()));
  EXPECT_EQ(no_server.exit_code, 1);
  EXPECT_THAT(no_server.err, HasSubstr("cannot reach step-runner at " + dir_ / "none.sock"));
}

// The service names the step text `<request>`; the user gave a file, and the client names it as
// given (relative here), in Run's error and in the final message of a followed job.
TEST_F(ServiceCli, StepTextErrorsNameTheFileNotTheRequest) {
  dir_.Write("bad.yml", "spec: {}\n---\nrun:\n  - name: a\n    scrip: true\n");
  Output bad = Client({"run", "bad.yml", "--id", "bad"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("step-runner: loading step: bad.yml:5:5: unknown key \"scrip\""));
  EXPECT_THAT(bad.err, Not(HasSubstr("<request>")));
  EXPECT_EQ(server_.All().jobs_size(), 0);

  // Checked when the job starts: the job's message names a place in the text too.
  dir_.Write("late.yml", "spec: {}\n---\nrun:\n  - name: a\n    script: \"true\"\n"
                         "outputs:\n  x: ${{ steps.nope.outputs.y }}\n");
  Output late = Client({"run", "late.yml", "--id", "late", "--follow"});
  EXPECT_EQ(late.exit_code, 1);
  EXPECT_THAT(late.err, HasSubstr("step-runner: late.yml:7:3: outputs: ${{ steps.nope.outputs.y }}: "
                                  "no step \"nope\""));
  // The id's job exists: its message is about the text it was sent, not about this file.
  File("other.yml", {{"a", "true"}});
  Output replayed = Client({"run", "other.yml", "--id", "late", "--follow"});
  EXPECT_THAT(replayed.err, HasSubstr("<request>:7:3: outputs:"));
  EXPECT_THAT(replayed.err, Not(HasSubstr("other.yml:7")));
}

// The service's words name RunRequest's fields (`warn_before needs a timeout`); the user typed
// flags, and is told which, before anything is sent.
TEST_F(ServiceCli, TimingErrorsNameTheFlags) {
  std::string file = File("t.yml", {{"a", "touch " + dir_ / "ran"}});
  struct Case {
    std::vector<std::string> flags;
    std::string error;
  } cases[] = {
      {{"--warn-before", "1s"}, "step-runner: --warn-before needs --timeout\n"},
      {{"--timeout", "0", "--warn-before", "1s"}, "step-runner: --warn-before needs --timeout\n"},
      {{"--timeout", "5s", "--warn-before", "5s"},
       "step-runner: --warn-before must be shorter than --timeout\n"},
      {{"--warn-signal", "SIGBOGUS"}, "step-runner: --warn-signal: unknown signal \"SIGBOGUS\"\n"},
      {{"--timeout", "10s", "--warn-before", "5s", "--warn-signal", "SIGKILL"},
       "step-runner: --warn-signal: SIGKILL cannot be a warning: it ends the process (use "
       "--timeout)\n"},
      {{"--timeout", "-1s"}, "step-runner: --timeout: invalid duration \"-1s\""},
      {{"--grace", "soon"}, "step-runner: --grace: invalid duration \"soon\""},
      {{"--memory", "lots"}, "step-runner: --memory: \"lots\" is not a size"},
      {{"--pids", "0"}, "step-runner: --pids: \"0\" is not a positive whole number"},
      {{"--cpus", "-1"}, "step-runner: --cpus: \"-1\" is not a positive number of CPUs"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args{"run", file, "--id", "t"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    Output o = Client(args);
    EXPECT_EQ(o.exit_code, 2) << c.error << o.err;
    EXPECT_THAT(o.err, HasSubstr(c.error));
    EXPECT_THAT(o.err, Not(HasSubstr("warn_"))) << "a proto field name";
  }
  EXPECT_EQ(server_.All().jobs_size(), 0) << "nothing was submitted";
  EXPECT_FALSE(dir_.Exists("ran"));
}

// SIGKILL as the warning killed the step at the warning (`exec: signal: SIGKILL`, a failure with
// a termination record without reason): refused, and nothing is submitted.
TEST_F(ServiceCli, AWarningSignalThatKillsOrFreezesIsRefused) {
  std::string file = File("w.yml", {{"a", "touch " + dir_ / "ran"}});
  for (const char* sig : {"SIGKILL", "SIGSTOP"}) {
    Output o = Client({"run", file, "--id", "w", "--follow", "--timeout", "10s", "--warn-before",
                       "5s", "--warn-signal", sig});
    EXPECT_EQ(o.exit_code, 2) << sig << ": " << o.err;
    EXPECT_THAT(o.err, HasSubstr("step-runner: --warn-signal: " + std::string(sig) +
                                 " cannot be a warning"));
  }
  EXPECT_EQ(server_.All().jobs_size(), 0) << "nothing was submitted";
  EXPECT_FALSE(dir_.Exists("ran"));
}

// A request with bytes that are not UTF-8 cannot be sent (gRPC strings are UTF-8): protobuf
// refused it with a log line and the client said "step-runner: " and nothing else. Now the
// client names the flag or the file's line, as the server would for the step text.
TEST_F(ServiceCli, BytesThatAreNotUtf8AreNamedBeforeSending) {
  std::string file = File("ok.yml", {{"a", "true"}});
  Output env = Client({"run", file, "--id", "e", "--env", "K=caf\xe9"});
  EXPECT_EQ(env.exit_code, 2);
  EXPECT_THAT(env.err, HasSubstr("step-runner: --env K: not UTF-8 (byte 0xE9 at offset 5)"));
  Output job = Client({"run", file, "--id", "j", "--job", "J=\xff"});
  EXPECT_EQ(job.exit_code, 2);
  EXPECT_THAT(job.err, HasSubstr("step-runner: --job J: not UTF-8 (byte 0xFF"));
  const std::string latin = dir_.Write("latin.yml", "spec: {}\n---\nrun:\n  - name: a\n    script: echo caf\xe9\n");
  Output text = Client({"run", latin, "--id", "t"});
  EXPECT_EQ(text.exit_code, 2);
  EXPECT_THAT(text.err, HasSubstr(latin + ":5:21: invalid UTF-8 (byte 0xE9): step text must be UTF-8"));
  Output id = Client({"cancel", "caf\xe9"});
  EXPECT_EQ(id.exit_code, 2);
  EXPECT_THAT(id.err, HasSubstr("step-runner: job id: not UTF-8 (byte 0xE9 at offset 3)"));
  for (const Output* o : {&env, &job, &text, &id}) EXPECT_THAT(o->err, Not(HasSubstr("libprotobuf"))) << o->err;
  EXPECT_EQ(server_.All().jobs_size(), 0) << "nothing was submitted";
}

}  // namespace
}  // namespace sr::test
