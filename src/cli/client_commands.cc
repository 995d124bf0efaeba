// `client`: the operator's side of the gRPC API (contract section 5). Human-readable output by
// default, `--json` (protobuf JSON) for scripts. Exit codes: 0 ok; for `run --follow` the job's
// (1 failed, 124 timed out, 130 cancelled); 2 usage or step-file errors; 1 other errors.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#include "cli/cli.h"
#include "cli/client_request.h"
#include "cli/log_follow.h"
#include "cli/progress.h"
#include "cli/status_text.h"
#include "proto/step.grpc.pb.h"
#include "service/service.h"
#include "util/fd.h"
#include "util/signals.h"
#include "util/time.h"

namespace sr::cli {

namespace {

using google::protobuf::util::TimeUtil;

class Client {
 public:
  explicit Client(const std::string& socket) {
    std::error_code ec;
    path_ = std::filesystem::absolute(socket, ec).string();
    channel_ = grpc::CreateChannel("unix:" + path_, grpc::InsecureChannelCredentials());
    stub_ = proto::StepRunner::NewStub(channel_);
  }
  proto::StepRunner::Stub& stub() { return *stub_; }

  /// Prints the error of a failed RPC and returns the exit code: 2 for a bad request, else 1.
  int Fail(const grpc::Status& s) const {
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      return cli::Fail("cannot reach step-runner at " + path_ + ": " + s.error_message(), 1);
    }
    return cli::Fail(s.error_message(), s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? 2 : 1);
  }
  /// The same for a call to a server this command reached before: it was lost (it stopped)
  /// while the command was `doing` something, e.g. "following job \"x\"".
  int FailLost(const grpc::Status& s, const std::string& doing) const {
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      return cli::Fail("lost step-runner at " + path_ + " while " + doing + ": " + s.error_message(), 1);
    }
    return Fail(s);
  }

  /// Status of the job `id` (of every job when empty).
  grpc::Status JobStatus(const std::string& id, proto::StatusResponse* out) {
    grpc::ClientContext ctx;
    proto::StatusRequest req;
    req.set_id(id);
    return stub_->Status(&ctx, req, out);
  }

  /// Streams the job log from `offset` to stdout until the job has ended.
  grpc::Status Follow(const std::string& id, int64_t offset, grpc::ClientContext* ctx) {
    return FollowLogsTo(channel_, id, offset, ctx, 1);
  }

 private:
  std::string path_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<proto::StepRunner::Stub> stub_;
};

// The exit code of `client run --follow` from the job's final status (contract section 5).
int ExitCodeForStatus(const proto::Status& s) {
  switch (s.status()) {
    case proto::StepResult::success: return 0;
    case proto::StepResult::cancelled: return 130;
    default: return s.error().kind() == proto::StatusError::timed_out ? 124 : 1;
  }
}

// The job's outcome from FollowLogs' trailing metadata, as a one-job StatusResponse.
bool JobEndFromTrailer(const grpc::ClientContext& follow, proto::StatusResponse& out) {
  const auto& trailer = follow.GetServerTrailingMetadata();
  auto it = trailer.find(service::kJobEndTrailer);
  if (it == trailer.end()) return false;
  proto::Status job;
  if (!job.ParseFromArray(it->second.data(), static_cast<int>(it->second.size()))) return false;
  *out.add_jobs() = std::move(job);
  return true;
}

int RunCommand(const ClientArgs& a) {
  auto req = BuildRunRequest(a);
  if (!req.ok()) return Fail(req.error().message, 2);
  // Ctrl-C while following cancels the job: the signals are blocked before gRPC creates its
  // threads and read through a signalfd by one thread (below).
  UniqueFd signal_fd;
  if (a.follow) {
    auto fd = BlockedSignalFd({SIGINT, SIGTERM});
    if (!fd.ok()) return Fail(fd.error().message, 1);
    signal_fd = std::move(fd).value();
  }
  Client client(a.socket);
  proto::StatusResponse existing;
  const grpc::Status asked = client.JobStatus(a.id, &existing);
  const bool reached = asked.error_code() != grpc::StatusCode::UNAVAILABLE;  // a failed Run lost it
  bool replayed = asked.ok() && existing.jobs_size() == 1;  // the service speaks of another text
  grpc::ClientContext run_ctx;
  proto::RunResponse run_resp;
  grpc::Status s = client.stub().Run(&run_ctx, *req, &run_resp);
  if (!s.ok()) {
    // The one line is the server's answer: a job being closed refuses the id (contract 7.5), and
    // "already exists" before it said the opposite.
    std::string why = NameTheFile(s.error_message(), a.file);
    if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) why += "; " + a.file + " was not run";
    if (reached) return client.FailLost(grpc::Status(s.error_code(), why), "starting job \"" + a.id + "\"");
    return client.Fail(grpc::Status(s.error_code(), why));
  }
  if (replayed) {
    // The job Status saw may have been closed before Run came, and Run then ran FILE afresh under
    // the id: only a job with the same start time is the one that was there.
    proto::StatusResponse after;
    replayed = client.JobStatus(a.id, &after).ok() && after.jobs_size() == 1 &&
               after.jobs(0).start_time() == existing.jobs(0).start_time();
  }
  if (replayed) {
    // Run with an id the server already has does nothing (as in Go): say so, so that nobody
    // takes the replayed log for a run of FILE.
    std::fprintf(stderr, "step-runner: job \"%s\" already exists (%s); %s was not run%s\n",
                 a.id.c_str(), proto::StepResult::Status_Name(existing.jobs(0).status()).c_str(),
                 a.file.c_str(), a.follow ? ", following the existing job's log" : "");
  }
  if (!a.follow) return 0;

  // The signal thread waits for a signal or for the follow's end, whichever comes first, so the
  // command exits as soon as the job's log has ended (a polling tick here kept every follow alive
  // up to 100 ms past its last byte).
  UniqueFd follow_over(::eventfd(0, EFD_CLOEXEC));
  if (!follow_over.valid()) return Fail(std::string("eventfd: ") + std::strerror(errno), 1);
  std::thread signals([&] {
    int seen = 0;
    for (;;) {
      pollfd fds[2] = {{signal_fd.get(), POLLIN, 0}, {follow_over.get(), POLLIN, 0}};
      const int ready = ::poll(fds, 2, -1);
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0 || fds[1].revents != 0) return;  // the follow is over (or poll failed)
      signalfd_siginfo info{};
      if (::read(signal_fd.get(), &info, sizeof info) != static_cast<ssize_t>(sizeof info)) continue;
      proto::CancelRequest cancel;
      cancel.set_id(a.id);
      cancel.set_force(++seen > 1);
      // Act first, then say so: a stderr nobody reads must not hold up the cancel.
      grpc::ClientContext ctx;
      proto::CancelResponse resp;
      grpc::Status cs = client.stub().Cancel(&ctx, cancel, &resp);
      std::fprintf(stderr, seen == 1 ? "step-runner: cancelling job \"%s\"; press Ctrl-C again to force\n"
                                     : "step-runner: killing job \"%s\" now\n",
                   a.id.c_str());
      if (!cs.ok()) std::fprintf(stderr, "step-runner: cancel: %s\n", cs.error_message().c_str());
    }
  });
  // Progress on a terminal, as `run` prints it: from the job's result tree, polled every 200 ms
  // until the follow ends (which wakes the poller at once).
  SnapshotProgress progress;
  const bool show_progress = ::isatty(2);
  std::mutex follow_mu;
  std::condition_variable follow_cv;
  bool followed = false;
  std::thread poller([&] {
    std::unique_lock<std::mutex> lock(follow_mu);
    while (show_progress && !followed) {
      lock.unlock();
      proto::StatusResponse now;
      if (client.JobStatus(a.id, &now).ok() && now.jobs_size() == 1) {
        progress.Update(now.jobs(0).result(), /*final=*/false);
      }
      lock.lock();
      follow_cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return followed; });
    }
  });
  grpc::ClientContext follow_ctx;
  grpc::Status fs = client.Follow(a.id, 0, &follow_ctx);
  {
    std::lock_guard<std::mutex> lock(follow_mu);
    followed = true;
  }
  follow_cv.notify_all();
  poller.join();
  proto::StatusResponse status;
  grpc::Status ss = grpc::Status::OK;
  if (fs.ok()) {
    ss = client.JobStatus(a.id, &status);
    // Another client Closed the job between its end and this Status: its outcome came with the
    // log's end (service.h kJobEndTrailer), without the result tree.
    if (ss.error_code() == grpc::StatusCode::NOT_FOUND && JobEndFromTrailer(follow_ctx, status)) {
      ss = grpc::Status::OK;
    }
  }
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t woke = ::write(follow_over.get(), &one, sizeof one);
  signals.join();
  if (show_progress && ss.ok() && fs.ok() && status.jobs_size() == 1) {
    const proto::Status& job = status.jobs(0);
    progress.Update(job.result(), /*final=*/true);
    progress.Done(OutcomeName(job), std::chrono::nanoseconds(TimeUtil::DurationToNanoseconds(
                                    job.end_time() - job.start_time())));
  }
  if (!fs.ok()) return client.FailLost(fs, "following job \"" + a.id + "\"");
  if (!ss.ok()) return client.Fail(ss);
  if (status.jobs_size() != 1) return Fail("no status for job \"" + a.id + "\"", 1);
  const proto::Status& job = status.jobs(0);
  int code = ExitCodeForStatus(job);
  if (code == 0) return 0;
  if (job.message().empty()) {
    return Fail("job " + job.id() + " " + proto::StepResult::Status_Name(job.status()), code);
  }
  return Fail(replayed ? job.message() : NameTheFile(job.message(), a.file), code);
}

int StatusCommand(const ClientArgs& a) {
  Client client(a.socket);
  proto::StatusResponse resp;
  grpc::Status s = client.JobStatus(a.id, &resp);
  if (!s.ok()) return client.Fail(s);
  if (a.json) {
    std::string out;
    if (!a.id.empty() && resp.jobs_size() == 1) {
      (void)google::protobuf::util::MessageToJsonString(resp.jobs(0), &out);
    } else {
      (void)google::protobuf::util::MessageToJsonString(resp, &out);
    }
    std::printf("%s\n", out.c_str());
    return 0;
  }
  if (!a.id.empty()) {
    for (const auto& job : resp.jobs()) PrintJobDetail(job);
    return 0;
  }
  PrintJobTable(resp);
  return 0;
}

// One unary call whose answer carries nothing to print: exit 0, or the error and its exit code.
template <typename Request, typename Response>
int CallForExitCode(const ClientArgs& a,
                    grpc::Status (proto::StepRunner::Stub::*method)(grpc::ClientContext*,
                                                                     const Request&, Response*),
                    const Request& req) {
  Client client(a.socket);
  grpc::ClientContext ctx;
  Response resp;
  grpc::Status s = (client.stub().*method)(&ctx, req, &resp);
  return s.ok() ? 0 : client.Fail(s);
}

int CancelCommand(const ClientArgs& a) {
  proto::CancelRequest req;
  req.set_id(a.id);
  req.set_force(a.force);
  return CallForExitCode(a, &proto::StepRunner::Stub::Cancel, req);
}

int CloseCommand(const ClientArgs& a) {
  proto::CloseRequest req;
  req.set_id(a.id);
  return CallForExitCode(a, &proto::StepRunner::Stub::Close, req);
}

int LogsCommand(const ClientArgs& a) {
  Client client(a.socket);
  grpc::ClientContext ctx;
  grpc::Status s = client.Follow(a.id, a.offset, &ctx);
  return s.ok() ? 0 : client.Fail(s);
}

}  // namespace

void RegisterClientCommands(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<ClientArgs>();
  CLI::App* client = app.add_subcommand("client", "talk to a running `step-runner serve`");
  client->require_subcommand(1);
  client->fallthrough();
  client->add_option("--socket", a->socket, "server socket (default: the one of serve without DIR)");
  auto run_cb = [a, &exit_code](int (*cmd)(const ClientArgs&)) {
    return [a, &exit_code, cmd] {
      if (a->socket.empty()) a->socket = DefaultSocketPath();
      if (Status owner = CheckSocketOwner(a->socket); !owner.ok()) {
        exit_code = Fail(owner.error().message, 1);
        return;
      }
      if (Status id = RequireUtf8(a->id, "job id"); !id.ok()) {
        exit_code = Fail(id.error().message, 2);
        return;
      }
      exit_code = cmd(*a);
    };
  };

  CLI::App* run = client->add_subcommand("run", "submit a job (a full step file)");
  run->add_option("file", a->file, "step file")->required();
  run->add_option("--id", a->id, "job id")->required();
  run->add_flag("--follow", a->follow, "stream the log and exit with the job's exit code");
  AddJobFlags(run, a->flags);
  run->add_option("--work-dir", a->work_dir, "job work dir (default: the current directory)");
  run->add_option("--env", a->env, "environment variable K=V (repeatable)");
  run->add_option("--job", a->job, "job variable K=V, ${{ job.K }} (repeatable)");
  run->add_option("--masked-job", a->masked_job, "job variable whose value is masked: K=V, or K alone to take the value of the "
                    "environment variable K (repeatable)");
  run->callback(run_cb(RunCommand));

  CLI::App* cancel = client->add_subcommand("cancel", "cancel a job (gracefully unless --force)");
  cancel->add_option("id", a->id, "job id")->required();
  cancel->add_flag("--force", a->force, "SIGKILL its processes now");
  cancel->callback(run_cb(CancelCommand));

  CLI::App* close = client->add_subcommand("close", "cancel if running, wait, delete the job");
  close->add_option("id", a->id, "job id")->required();
  close->callback(run_cb(CloseCommand));

  CLI::App* status = client->add_subcommand("status", "show one job, or all jobs");
  status->add_option("id", a->id, "job id (default: all jobs)");
  status->add_flag("--json", a->json, "protobuf JSON");
  status->callback(run_cb(StatusCommand));

  CLI::App* logs = client->add_subcommand("logs", "stream a job's log until it ends");
  logs->add_option("id", a->id, "job id")->required();
  logs->add_option("--offset", a->offset, "byte offset to start from");
  logs->callback(run_cb(LogsCommand));
}

}  // namespace sr::cli
