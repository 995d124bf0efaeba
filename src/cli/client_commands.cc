// `client`: the operator's side of the gRPC API (contract section 5). Human-readable output by
// default, `--json` (protobuf JSON) for scripts. Exit codes: 0 ok; for `run --follow` the job's
// (1 failed, 124 timed out, 130 cancelled); 2 usage or step-file errors; 1 other errors.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "cli/cli.h"
#include "cli/log_follow.h"
#include "engine/engine.h"
#include "cli/progress.h"
#include "proto/step.grpc.pb.h"
#include "stepfile/stepfile.h"
#include "util/fd.h"
#include "util/time.h"

namespace sr::cli {

namespace {

using google::protobuf::util::TimeUtil;

struct ClientArgs {
  std::string socket;
  // run
  std::string file, id, work_dir, timeout, grace, warn_before, warn_signal;
  std::string memory, pids, cpus;  // RunRequest.resources
  std::vector<std::string> env, job, masked_job;
  bool follow = false;
  // cancel / status / logs
  bool force = false, json = false;
  int64_t offset = 0;
};

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

  /// Streams the job log from `offset` to stdout until the job has ended.
  grpc::Status Follow(const std::string& id, int64_t offset, grpc::ClientContext* ctx) {
    return FollowLogsTo(channel_, id, offset, ctx, 1);
  }

 private:
  std::string path_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<proto::StepRunner::Stub> stub_;
};

Result<std::pair<std::string, std::string>> SplitPair(const std::string& kv, const char* flag) {
  auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) {
    return InvalidError(std::string(flag) + ": expected KEY=VALUE, got \"" + kv + "\"");
  }
  return std::make_pair(kv.substr(0, eq), kv.substr(eq + 1));
}

Status SetDuration(const std::string& text, const char* flag, google::protobuf::Duration* out) {
  auto d = ParseDuration(text);
  if (!d.ok()) return InvalidError(std::string(flag) + ": " + d.error().message);
  out->set_seconds(d->count() / 1000000000);
  out->set_nanos(static_cast<int32_t>(d->count() % 1000000000));
  return Ok();
}

// The exit code of `client run --follow` from the job's final status (contract section 5).
int ExitCodeForStatus(const proto::Status& s) {
  switch (s.status()) {
    case proto::StepResult::success: return 0;
    case proto::StepResult::cancelled: return 130;
    default: return s.error().kind() == proto::StatusError::timed_out ? 124 : 1;
  }
}

Result<proto::RunRequest> BuildRunRequest(const ClientArgs& a) {
  proto::RunRequest req;
  auto text = stepfile::ReadStepText(a.file, /*regular_only=*/false);  // the server's limit
  if (!text.ok()) return InvalidError(text.error().message);
  req.set_id(a.id);
  req.set_steps(*text);
  std::error_code ec;
  req.set_work_dir(a.work_dir.empty() ? std::filesystem::current_path(ec).string()
                                      : std::filesystem::absolute(a.work_dir, ec).string());
  for (const auto& kv : a.env) {
    SR_ASSIGN_OR_RETURN(auto p, SplitPair(kv, "--env"));
    (*req.mutable_env())[p.first] = p.second;
  }
  for (const auto* list : {&a.job, &a.masked_job}) {
    for (const auto& kv : *list) {
      std::pair<std::string, std::string> p;
      if (list == &a.masked_job && kv.find('=') == std::string::npos) {
        SR_ASSIGN_OR_RETURN(p.second, ValueFromEnv(kv, "--masked-job"));  // `--masked-job KEY`
        p.first = kv;
      } else {
        SR_ASSIGN_OR_RETURN(p, SplitPair(kv, list == &a.job ? "--job" : "--masked-job"));
      }
      proto::Variable* v = req.mutable_job()->add_variables();
      v->set_key(p.first);
      v->set_value(p.second);
      v->set_masked(list == &a.masked_job);
    }
  }
  if (!a.grace.empty()) SR_RETURN_IF_ERROR(SetDuration(a.grace, "--grace", req.mutable_graceful_exit_timeout()));
  if (!a.timeout.empty()) SR_RETURN_IF_ERROR(SetDuration(a.timeout, "--timeout", req.mutable_timeout()));
  if (!a.warn_before.empty()) {
    SR_RETURN_IF_ERROR(SetDuration(a.warn_before, "--warn-before", req.mutable_warn_before()));
  }
  req.set_warn_signal(a.warn_signal);
  if (!a.memory.empty()) {
    auto v = stepfile::ParseMemory(a.memory);
    if (!v.ok()) return v.error().Wrap("--memory");
    req.mutable_resources()->set_memory_bytes(*v);
  }
  if (!a.pids.empty()) {
    auto v = stepfile::ParsePids(a.pids);
    if (!v.ok()) return v.error().Wrap("--pids");
    req.mutable_resources()->set_pids(*v);
  }
  if (!a.cpus.empty()) {
    auto v = stepfile::ParseCpus(a.cpus);
    if (!v.ok()) return v.error().Wrap("--cpus");
    req.mutable_resources()->set_cpus(*v);
  }
  return req;
}

int RunCommand(const ClientArgs& a) {
  auto req = BuildRunRequest(a);
  if (!req.ok()) return Fail(req.error().message, 2);
  // Ctrl-C while following cancels the job: signals are taken by one thread with sigtimedwait,
  // so they are blocked before gRPC creates its threads.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  if (a.follow) pthread_sigmask(SIG_BLOCK, &mask, nullptr);

  Client client(a.socket);
  {
    // Run with an id the server already has does nothing (as in Go): say so, so that nobody
    // takes the replayed log for a run of FILE.
    grpc::ClientContext ctx;
    proto::StatusRequest sreq;
    sreq.set_id(a.id);
    proto::StatusResponse existing;
    if (client.stub().Status(&ctx, sreq, &existing).ok() && existing.jobs_size() == 1) {
      std::fprintf(stderr, "step-runner: job \"%s\" already exists (%s); %s was not run%s\n",
                   a.id.c_str(), proto::StepResult::Status_Name(existing.jobs(0).status()).c_str(),
                   a.file.c_str(), a.follow ? ", following the existing job's log" : "");
    }
  }
  grpc::ClientContext run_ctx;
  proto::RunResponse run_resp;
  grpc::Status s = client.stub().Run(&run_ctx, *req, &run_resp);
  if (!s.ok()) return client.Fail(s);
  if (!a.follow) return 0;

  std::atomic<bool> done{false};
  std::thread signals([&] {
    int seen = 0;
    const timespec tick{0, 100 * 1000 * 1000};
    while (!done.load()) {
      siginfo_t info;
      if (::sigtimedwait(&mask, &info, &tick) < 0) continue;
      proto::CancelRequest cancel;
      cancel.set_id(a.id);
      cancel.set_force(++seen > 1);
      std::fprintf(stderr, seen == 1 ? "step-runner: cancelling job \"%s\"; press Ctrl-C again to force\n"
                                     : "step-runner: killing job \"%s\" now\n",
                   a.id.c_str());
      grpc::ClientContext ctx;
      proto::CancelResponse resp;
      grpc::Status cs = client.stub().Cancel(&ctx, cancel, &resp);
      if (!cs.ok()) std::fprintf(stderr, "step-runner: cancel: %s\n", cs.error_message().c_str());
    }
  });
  // Progress on a terminal, as `run` prints it: from the job's result tree, polled.
  SnapshotProgress progress;
  const bool show_progress = ::isatty(2);
  std::atomic<bool> followed{false};
  std::thread poller([&] {
    while (show_progress && !followed.load()) {
      grpc::ClientContext ctx;
      proto::StatusRequest sreq;
      sreq.set_id(a.id);
      proto::StatusResponse now;
      if (client.stub().Status(&ctx, sreq, &now).ok() && now.jobs_size() == 1) {
        progress.Update(now.jobs(0).result(), /*final=*/false);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  grpc::ClientContext follow_ctx;
  grpc::Status fs = client.Follow(a.id, 0, &follow_ctx);
  followed = true;
  poller.join();
  proto::StatusResponse status;
  grpc::Status ss = grpc::Status::OK;
  if (fs.ok()) {
    grpc::ClientContext ctx;
    proto::StatusRequest sreq;
    sreq.set_id(a.id);
    ss = client.stub().Status(&ctx, sreq, &status);
  }
  done = true;
  signals.join();
  if (show_progress && ss.ok() && fs.ok() && status.jobs_size() == 1) {
    const proto::Status& job = status.jobs(0);
    progress.Update(job.result(), /*final=*/true);
    progress.Done(job.status(), std::chrono::nanoseconds(TimeUtil::DurationToNanoseconds(
                                    job.end_time() - job.start_time())));
  }
  if (!fs.ok()) return client.Fail(fs);
  if (!ss.ok()) return client.Fail(ss);
  if (status.jobs_size() != 1) return Fail("no status for job \"" + a.id + "\"", 1);
  const proto::Status& job = status.jobs(0);
  int code = ExitCodeForStatus(job);
  if (code != 0) return Fail(job.message().empty() ? "job " + job.id() + " " +
                                 proto::StepResult::Status_Name(job.status()) : job.message(), code);
  return 0;
}

// RFC 3339 in UTC to the millisecond: `2026-12-04T20:58:50.123Z`.
std::string Time(const google::protobuf::Timestamp& t) {
  google::protobuf::Timestamp ms = t;
  ms.set_nanos(t.nanos() / 1000000 * 1000000);
  std::string s = TimeUtil::ToString(ms);
  if (ms.nanos() == 0) s.insert(s.size() - 1, ".000");  // ToString drops a zero fraction
  return s;
}

std::string Took(const proto::Status& s) {
  if (!s.has_start_time() || !s.has_end_time()) return "-";
  return std::to_string(TimeUtil::DurationToMilliseconds(s.end_time() - s.start_time())) + "ms";
}

// One row per step, nested steps indented; what each used in its own columns (contract 8.2).
void PrintSteps(const proto::StepResult& r, int depth) {
  if (depth == 0) {
    std::printf("  %-20s %-10s %5s %8s %8s %10s %5s %4s\n", "STEP", "STATUS", "EXIT", "TIME", "CPU",
                "PEAK MEM", "PIDS", "OOM");
  }
  for (const auto& sub : r.sub_step_results()) {
    std::string name(static_cast<size_t>(2 * depth), ' ');
    name += sub.step().name().empty() ? "(step)" : sub.step().name();
    const auto& u = sub.usage();
    char time[32] = "-", cpu[32] = "-";
    if (u.has_start_time() && u.has_end_time()) {
      auto took = TimeUtil::TimestampToMilliseconds(u.end_time()) -
                  TimeUtil::TimestampToMilliseconds(u.start_time());
      std::snprintf(time, sizeof time, "%.1fs", static_cast<double>(took) / 1000);
    }
    if (u.cpu_user_usec() || u.cpu_system_usec()) {
      std::snprintf(cpu, sizeof cpu, "%.1fs",
                    static_cast<double>(u.cpu_user_usec() + u.cpu_system_usec()) / 1e6);
    }
    std::printf("  %-20s %-10s %5s %8s %8s %10s %5s %4s\n", name.c_str(),
                proto::StepResult::Status_Name(sub.status()).c_str(),
                sub.has_exec_result() ? std::to_string(sub.exec_result().exit_code()).c_str() : "-",
                time, cpu, u.memory_peak_bytes() ? FormatBytes(u.memory_peak_bytes()).c_str() : "-",
                u.pids_peak() ? std::to_string(u.pids_peak()).c_str() : "-",
                u.has_start_time() ? std::to_string(u.oom_kills()).c_str() : "-");
    PrintSteps(sub, depth + 1);
  }
}

// Steps the runner stopped for a reason of their own (OOM kill, own timeout): which processes.
void PrintStepTerminations(const proto::StepResult& r) {
  for (const auto& sub : r.sub_step_results()) {
    const auto& t = sub.termination();
    if (sub.has_termination() && (t.reason() == proto::Termination::oom_killed ||
                                  t.reason() == proto::Termination::step_timed_out)) {
      std::printf("step %s: %s\n", sub.step().name().c_str(),
                  proto::Termination::Reason_Name(t.reason()).c_str());
      for (const auto& p : t.processes()) {
        std::printf("  pid %d %s: %s\n", p.pid(), p.command().c_str(),
                    proto::Termination::ProcessRecord::Ending_Name(p.ending()).c_str());
      }
    }
    PrintStepTerminations(sub);
  }
}

void PrintDetail(const proto::Status& s) {
  std::printf("id:        %s\nstate:     %s\n", s.id().c_str(),
              proto::StepResult::Status_Name(s.status()).c_str());
  if (s.has_error()) {
    std::printf("error:     %s: %s\n", proto::StatusError::ErrorKind_Name(s.error().kind()).c_str(),
                s.error().message().c_str());
  }
  if (s.has_start_time()) std::printf("started:   %s\n", Time(s.start_time()).c_str());
  if (s.has_end_time()) std::printf("ended:     %s\n", Time(s.end_time()).c_str());
  if (s.has_cancel_time()) std::printf("cancelled: %s\n", Time(s.cancel_time()).c_str());
  if (s.result().sub_step_results_size() > 0) {
    std::printf("steps:\n");
    PrintSteps(s.result(), 0);
    PrintStepTerminations(s.result());
  }
  if (s.has_termination()) {
    const auto& t = s.termination();
    std::printf("termination: %s%s, grace %s\n", proto::Termination::Reason_Name(t.reason()).c_str(),
                t.forced() ? " (forced)" : "",
                TimeUtil::ToString(t.grace()).c_str());
    if (t.has_warning_time()) {
      std::printf("  warning: %s at %s\n",
                  t.warning_signal().empty() ? "no signal" : t.warning_signal().c_str(),
                  Time(t.warning_time()).c_str());
    }
    for (const auto& p : t.processes()) {
      std::printf("  pid %d %s: %s -> %s\n", p.pid(), p.command().c_str(),
                  p.signal().empty() ? "no signal" : p.signal().c_str(),
                  proto::Termination::ProcessRecord::Ending_Name(p.ending()).c_str());
    }
  }
}

int StatusCommand(const ClientArgs& a) {
  Client client(a.socket);
  grpc::ClientContext ctx;
  proto::StatusRequest req;
  req.set_id(a.id);
  proto::StatusResponse resp;
  grpc::Status s = client.stub().Status(&ctx, req, &resp);
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
    for (const auto& job : resp.jobs()) PrintDetail(job);
    return 0;
  }
  // Columns as wide as their widest cell, so long ids keep the table aligned.
  std::vector<std::array<std::string, 5>> rows{{"ID", "STATE", "STARTED", "TOOK", "MESSAGE"}};
  for (const auto& job : resp.jobs()) {
    rows.push_back({job.id(), proto::StepResult::Status_Name(job.status()),
                    job.has_start_time() ? Time(job.start_time()) : "-", Took(job), job.message()});
  }
  std::array<size_t, 5> width{};
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(width[c] - row[c].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  }
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
      exit_code = cmd(*a);
    };
  };

  CLI::App* run = client->add_subcommand("run", "submit a job (a full step file)");
  run->add_option("file", a->file, "step file")->required();
  run->add_option("--id", a->id, "job id")->required();
  run->add_option("--memory", a->memory, "job-wide memory limit, e.g. 2Gi");
  run->add_option("--pids", a->pids, "job-wide limit on the number of processes");
  run->add_option("--cpus", a->cpus, "job-wide CPU limit as a number of CPUs");
  run->add_flag("--follow", a->follow, "stream the log and exit with the job's exit code");
  run->add_option("--timeout", a->timeout, "job timeout, e.g. 10m (default: none)");
  run->add_option("--grace", a->grace, "grace between the cancel signal and SIGKILL (default 30s)");
  run->add_option("--warn-before", a->warn_before, "with --timeout: warn this long before it");
  run->add_option("--warn-signal", a->warn_signal, "signal sent at the warning, e.g. SIGUSR1");
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
