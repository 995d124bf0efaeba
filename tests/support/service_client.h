// Test support for the gRPC service: a live `step-runner serve` child on a socket in a test dir,
// and a generated C++ stub talking to it. Waits are on states and files, with safety timeouts
// only (never a timing assertion).
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "proto/step.grpc.pb.h"
#include "support/harness.h"

namespace sr::test {

/// Child options for a server: TMPDIR is the test dir, so job dirs land (and are checked) there;
/// `env` adds to the server's environment.
Options ServerOptions(const TestDir& dir, const std::map<std::string, std::string>& env = {});
/// Child options for a `client` command run in `cwd`.
Options ClientOptions(const std::string& cwd);

/// A full step file with one `script:` step per (name, script); scripts may span lines.
std::string Steps(const std::vector<std::pair<std::string, std::string>>& steps);
/// A RunRequest for `steps` with `work_dir` as the job's build dir.
proto::RunRequest Request(const std::string& id, const std::string& steps, const std::string& work_dir);
/// Where the server keeps the job's files: `<TMPDIR>/step-runner-output-<id>`.
std::string JobDir(const TestDir& dir, const std::string& id);
/// Polls `done` until it is true; false after the safety timeout (60 s).
bool WaitFor(const std::function<bool()>& done);

class LiveServer {
 public:
  /// Starts `step-runner serve --socket <dir>/s.sock [extra...]` and connects to it.
  explicit LiveServer(const TestDir& dir, const std::vector<std::string>& extra_args = {});
  /// The same with the child's options given (extra environment: ServerOptions(dir) plus more).
  LiveServer(const TestDir& dir, const std::vector<std::string>& extra_args, const Options& options);
  /// SIGTERM and wait, if still running. Prints the server's stderr when the test failed.
  ~LiveServer();

  proto::StepRunner::Stub& stub() { return *stub_; }
  Child& child() { return *child_; }
  const std::string& socket() const { return socket_; }

  grpc::Status Run(const proto::RunRequest& request);
  grpc::Status CancelJob(const std::string& id, bool force = false);
  grpc::Status CloseJob(const std::string& id);
  grpc::Status GetStatus(const std::string& id, proto::Status* out = nullptr);
  /// Status of one job; a failed RPC fails the test and returns an empty status.
  proto::Status GetStatusOrDie(const std::string& id);
  proto::StatusResponse All();
  /// Polls Status until the job is success, failure or cancelled.
  proto::Status WaitEnded(const std::string& id);
  /// Reads the whole log stream from `offset`; `on_first` runs after the first message.
  std::string Follow(const std::string& id, int64_t offset, grpc::Status* status,
                     const std::function<void()>& on_first = nullptr);

 private:
  std::string socket_;
  std::unique_ptr<Child> child_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<proto::StepRunner::Stub> stub_;
};

}  // namespace sr::test
