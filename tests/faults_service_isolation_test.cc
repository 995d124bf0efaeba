// Faults of the service kept apart (contract section 7): a Run during Close, NUL and '=' in
// variables, a masked value in a command line, another user's socket, the private socket dir.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "support/faults.h"
#include "support/harness.h"
#include "support/service_client.h"

namespace sr::test {
namespace {

using ::testing::HasSubstr;

TEST_F(Faults, RunDuringCloseIsFailedPrecondition) {
  LiveServer server(dir);
  // The cancel's trap keeps the job (and so the Close) busy until the test releases it.
  proto::RunRequest req = Request(
      "c", Steps({{"s", "trap 'while [ ! -e release ]; do sleep 0.05; done; exit 0' TERM; touch trapped; "
                        "sleep 30 & wait"}}), dir.path());
  ASSERT_TRUE(server.Run(req).ok());
  ASSERT_TRUE(WaitFor([&] { return dir.Exists("trapped"); }));
  std::atomic<bool> closed{false};
  std::thread closer([&] {
    EXPECT_TRUE(server.CloseJob("c").ok());
    closed = true;
  });
  grpc::Status during;
  ASSERT_TRUE(WaitFor([&] {
    during = server.Run(req);
    return during.error_code() == grpc::StatusCode::FAILED_PRECONDITION || closed;
  }));
  dir.Write("release", "");
  closer.join();
  EXPECT_EQ(during.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << during.error_message();
  EXPECT_EQ(during.error_message(), "job \"c\" is closing");
  // Closed and forgotten: the id is free again.
  EXPECT_TRUE(server.Run(Request("c", Steps({{"s", "true"}}), dir.path())).ok());
  EXPECT_EQ(server.WaitEnded("c").status(), proto::StepResult::success);
}

TEST_F(Faults, NulAndEqualsInVariablesAreRefused) {
  LiveServer server(dir);
  auto with = [&](const std::function<void(proto::RunRequest&)>& edit) {
    proto::RunRequest r = Request("v", Steps({{"s", "true"}}), dir.path());
    edit(r);
    return server.Run(r);
  };
  const std::string nul("x\0y", 3);
  std::vector<std::pair<grpc::Status, std::string>> cases = {
      {with([&](auto& r) { (*r.mutable_env())["A"] = nul; }), "env variable \"A\": the value contains NUL"},
      {with([&](auto& r) { (*r.mutable_env())[nul] = "v"; }), "env variable \"x\\0y\": the key contains NUL"},
      {with([&](auto& r) {
         auto* v = r.mutable_job()->add_variables();
         v->set_key("a=b");
         v->set_value("v");
       }),
       "job variable \"a=b\": the key contains '='"},
      {with([&](auto& r) {
         auto* v = r.mutable_job()->add_variables();
         v->set_key("K");
         v->set_value(nul);
         v->set_masked(true);
       }),
       "job variable \"K\": the value contains NUL"},
  };
  for (const auto& [status, message] : cases) {
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << message;
    EXPECT_EQ(status.error_message(), message);
  }
  EXPECT_FALSE(dir.Exists(JobDir(dir, "v")));
  EXPECT_EQ(server.All().jobs_size(), 0);
}

TEST_F(Faults, MaskedValueNeverInAScriptsCommandLine) {
  const std::string secret = "s3cr3t-" + std::to_string(::getpid()) + "-value";
  dir.Write("s.yml", "spec: {}\n---\nrun:\n  - name: s\n    script: |\n"
                     "      echo \"got ${{ job.TOKEN }}\"\n      touch " + dir / "started" + "\n"
                     "      while [ ! -e " + dir / "scanned" + " ]; do sleep 0.02; done\n"
                     "  - name: e\n    step: ./echo\n    inputs: {v: \"${{ job.TOKEN }}\"}\n");
  dir.Write("echo/step.yml", "spec:\n  inputs:\n    v: {type: string}\n---\nexec:\n  command: [echo, \"${{ inputs.v }}\"]\n");
  Options o;
  o.env["TOKEN"] = secret;
  Child run({Binary(), "run", "-f", dir / "s.yml", "--masked-job", "TOKEN"}, o);
  ASSERT_TRUE(run.WaitForFile(dir / "started"));
  std::vector<std::string> leaks;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::ifstream in(e.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(secret) != std::string::npos) leaks.push_back(e.path().string());
  }
  dir.Write("scanned", "");  // then step `e` runs: its `echo` has the value in its command line
  Output out = run.Wait();
  EXPECT_TRUE(leaks.empty()) << leaks[0];
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_THAT(out.out, HasSubstr("got [MASKED]"));
  EXPECT_THAT(out.out, HasSubstr("warning: the command of step \"e\" contains a masked value"));
  EXPECT_EQ(out.out.find(secret), std::string::npos);

  Output unset = RunStepRunner({"run", "-f", dir / "s.yml", "--masked-job", "SR_NOT_SET_ANYWHERE"});
  EXPECT_EQ(unset.exit_code, 2);
  EXPECT_THAT(unset.err, HasSubstr("--masked-job SR_NOT_SET_ANYWHERE: environment variable SR_NOT_SET_ANYWHERE is not set"));
}

// A throwaway local user, removed at the end.
class OtherUser {
 public:
  OtherUser() : name_("sri14" + std::to_string(::getpid() % 100000)) {
    ok_ = std::system(("useradd -M -N -s /usr/sbin/nologin " + name_ + " 2>/dev/null").c_str()) == 0;
    if (passwd* pw = ok_ ? ::getpwnam(name_.c_str()) : nullptr) uid_ = pw->pw_uid;
  }
  ~OtherUser() {
    if (ok_) (void)std::system(("userdel " + name_ + " 2>/dev/null").c_str());
  }
  bool ok() const { return ok_ && uid_ != 0; }
  uid_t uid() const { return uid_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  bool ok_ = false;
  uid_t uid_ = 0;
};

TEST_F(Faults, SocketOfAnotherUserIsRefused) {
  OtherUser other;
  if (!other.ok()) GTEST_SKIP() << "useradd is not available";
  // A listening socket that the other user owns (what they would plant in a shared directory).
  const std::string path = dir / "planted.sock";
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  ASSERT_EQ(::chown(path.c_str(), other.uid(), 0), 0);
  const std::string owner = "belongs to " + other.name() + " (uid " + std::to_string(other.uid()) + ")";
  Output client = RunStepRunner({"client", "--socket", path, "status"});
  EXPECT_EQ(client.exit_code, 1);
  EXPECT_THAT(client.err, HasSubstr("socket " + path + " " + owner + ", neither root nor this user"));
  Output proxy = RunStepRunner({"proxy", "--socket", path});
  EXPECT_EQ(proxy.exit_code, 1);
  EXPECT_THAT(proxy.err, HasSubstr(owner));
  ::close(fd);

  // The default socket directory of the other user is refused by serve.
  ::mkdir((dir / "xdg").c_str(), 0700);
  ASSERT_EQ(::chown((dir / "xdg").c_str(), other.uid(), 0), 0);
  Options o = ServerOptions(dir);
  o.env["XDG_RUNTIME_DIR"] = dir / "xdg";
  Output serve = RunStepRunner({"serve"}, o);
  EXPECT_EQ(serve.exit_code, 2);
  EXPECT_THAT(serve.err, HasSubstr("socket dir " + dir / "xdg" + " belongs to " + other.name()));
}

TEST_F(Faults, DefaultSocketIsInAPrivateDirectory) {
  Options o = ServerOptions(dir);
  o.env["XDG_RUNTIME_DIR"] = dir / "run";
  ::mkdir((dir / "run").c_str(), 0755);
  Child serve({Binary(), "serve"}, o);
  ASSERT_TRUE(serve.WaitForFile(dir / "run/step-runner.sock"));
  struct stat st {};
  ASSERT_EQ(::stat((dir / "run").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  Output status = RunStepRunner({"client", "status"}, o);
  EXPECT_EQ(status.exit_code, 0) << status.err;
  serve.Signal(SIGTERM);
  EXPECT_EQ(serve.Wait().exit_code, 0);
}

}  // namespace
}  // namespace sr::test
