#include "support/service_client.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <sstream>
#include <thread>

// Under ThreadSanitizer: gRPC and its libraries are not instrumented (see tests/tsan.supp).
// Interceptors called from them are ignored, and their remaining reports suppressed.
#define SR_TSAN_OPTIONS \
  "ignore_noninstrumented_modules=1 suppressions=" STEP_RUNNER_SOURCE_DIR "/tests/tsan.supp"
extern "C" const char* __tsan_default_options() { return SR_TSAN_OPTIONS; }

namespace sr::test {

Options ServerOptions(const TestDir& dir, const std::map<std::string, std::string>& env) {
  Options o;
  o.env = env;
  o.env["TMPDIR"] = dir.path();
  o.env["TSAN_OPTIONS"] = SR_TSAN_OPTIONS;
  o.timeout = std::chrono::seconds(300);
  return o;
}

Options ClientOptions(const std::string& cwd) {
  Options o;
  o.cwd = cwd;
  o.env["TSAN_OPTIONS"] = SR_TSAN_OPTIONS;
  return o;
}

std::string Steps(const std::vector<std::pair<std::string, std::string>>& steps) {
  std::string s = "spec: {}\n---\nrun:\n";
  for (const auto& [name, script] : steps) {
    s += "  - name: " + name + "\n    script: |\n";
    std::istringstream lines(script);
    std::string line;
    while (std::getline(lines, line)) s += "      " + line + "\n";
  }
  return s;
}

proto::RunRequest Request(const std::string& id, const std::string& steps, const std::string& work_dir) {
  proto::RunRequest r;
  r.set_id(id);
  r.set_steps(steps);
  r.mutable_job()->set_build_dir(work_dir);
  return r;
}

std::string JobDir(const TestDir& dir, const std::string& id) {
  return dir.path() + "/step-runner-output-" + id;
}

bool WaitFor(const std::function<bool()>& done) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

LiveServer::LiveServer(const TestDir& dir, const std::vector<std::string>& extra_args)
    : LiveServer(dir, extra_args, ServerOptions(dir)) {}

LiveServer::LiveServer(const TestDir& dir, const std::vector<std::string>& extra_args,
                       const Options& options)
    : socket_(dir / "s.sock") {
  BecomeSubreaper();
  std::vector<std::string> argv{Binary(), "serve", "--socket", socket_};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  child_ = std::make_unique<Child>(argv, options);
  channel_ = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
  EXPECT_TRUE(child_->WaitForFile(socket_)) << "server did not create " << socket_;
  EXPECT_TRUE(channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(60)))
      << "cannot connect to " << socket_;
  stub_ = proto::StepRunner::NewStub(channel_);
}

LiveServer::~LiveServer() {
  stub_.reset();
  channel_.reset();
  child_->Signal(SIGTERM);
  Output out = child_->Wait();
  if (::testing::Test::HasFailure()) {
    std::fprintf(stderr, "--- server stderr ---\n%s--- end ---\n", out.err.c_str());
  }
  ReapOrphans();
}

grpc::Status LiveServer::Run(const proto::RunRequest& request) {
  grpc::ClientContext ctx;
  proto::RunResponse resp;
  return stub_->Run(&ctx, request, &resp);
}

grpc::Status LiveServer::CancelJob(const std::string& id, bool force) {
  grpc::ClientContext ctx;
  proto::CancelRequest req;
  req.set_id(id);
  req.set_force(force);
  proto::CancelResponse resp;
  return stub_->Cancel(&ctx, req, &resp);
}

grpc::Status LiveServer::CloseJob(const std::string& id) {
  grpc::ClientContext ctx;
  proto::CloseRequest req;
  req.set_id(id);
  proto::CloseResponse resp;
  return stub_->Close(&ctx, req, &resp);
}

grpc::Status LiveServer::GetStatus(const std::string& id, proto::Status* out) {
  grpc::ClientContext ctx;
  proto::StatusRequest req;
  req.set_id(id);
  proto::StatusResponse resp;
  grpc::Status s = stub_->Status(&ctx, req, &resp);
  if (s.ok() && out) {
    EXPECT_EQ(resp.jobs_size(), 1);
    if (resp.jobs_size() == 1) *out = resp.jobs(0);
  }
  return s;
}

proto::Status LiveServer::GetStatusOrDie(const std::string& id) {
  proto::Status st;
  grpc::Status s = GetStatus(id, &st);
  EXPECT_TRUE(s.ok()) << id << ": " << s.error_message();
  return st;
}

proto::StatusResponse LiveServer::All() {
  grpc::ClientContext ctx;
  proto::StatusRequest req;
  proto::StatusResponse resp;
  grpc::Status s = stub_->Status(&ctx, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return resp;
}

proto::Status LiveServer::WaitEnded(const std::string& id) {
  proto::Status st;
  bool ended = WaitFor([&] {
    st = GetStatusOrDie(id);
    return st.status() == proto::StepResult::success || st.status() == proto::StepResult::failure ||
           st.status() == proto::StepResult::cancelled;
  });
  EXPECT_TRUE(ended) << "job " << id << " did not end: " << st.DebugString();
  return st;
}

std::string LiveServer::Follow(const std::string& id, int64_t offset, grpc::Status* status,
                               const std::function<void()>& on_first) {
  grpc::ClientContext ctx;
  proto::FollowLogsRequest req;
  req.set_id(id);
  req.set_offset(offset);
  auto reader = stub_->FollowLogs(&ctx, req);
  proto::FollowLogsResponse chunk;
  std::string out;
  bool first = true;
  while (reader->Read(&chunk)) {
    out += chunk.data();
    if (first && on_first) on_first();
    first = false;
  }
  *status = reader->Finish();
  return out;
}

}  // namespace sr::test
