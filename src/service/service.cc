// Run, Status, Cancel, Close and the job registry (FollowLogs: follow_logs.cc).
#include <malloc.h>

#include <cstdio>
#include <utility>

#include "service/job_service.h"
#include "service/service.h"
#include "service/status.h"

namespace sr::service {
namespace {

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context, grpc::Status status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(std::move(status));
  return reactor;
}

// A Run whose id is registered: an idempotent no-op (as in Go), unless the job is being closed:
// answering OK then would promise a job that is about to be forgotten and never runs.
grpc::Status RunOfKnownId(const Job& job) {
  if (job.closing) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "job \"" + job.id() + "\" is closing");
  }
  return grpc::Status::OK;
}

}  // namespace

JobService::JobService(EventLoop& loop, Supervisor& supervisor,
                       std::map<std::string, std::string> env, std::string temp_base,
                       Duration retention, Duration stream_deadline)
    : loop_(loop),
      supervisor_(supervisor),
      env_(std::move(env)),
      temp_base_(std::move(temp_base)),
      retention_(retention),
      stream_deadline_(stream_deadline) {}

JobService::~JobService() = default;

bool JobService::shutting_down() const {
  std::lock_guard<std::mutex> lock(mu_);
  return shutting_down_;
}

std::shared_ptr<Job> JobService::Find(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second;
}

std::shared_ptr<JobLog> JobService::FindLog(const std::string& id) {
  auto job = Find(id);
  return job ? job->log() : nullptr;
}

// --- Run -------------------------------------------------------------------------------------

grpc::ServerUnaryReactor* JobService::Run(grpc::CallbackServerContext* context,
                                          const proto::RunRequest* request,
                                          proto::RunResponse* /*response*/) {
  if (auto valid = ValidateJobId(request->id()); !valid.ok()) {
    return FinishNow(context, ToGrpcStatus(valid.error()));
  }
  {
    // A registered id makes Run an idempotent no-op (as in Go), whatever the new request says.
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_) return FinishNow(context, ShuttingDown());
    auto it = jobs_.find(request->id());
    if (it != jobs_.end()) return FinishNow(context, RunOfKnownId(*it->second));
  }
  auto parsed = ParseRunRequest(*request, env_);
  if (!parsed.ok()) return FinishNow(context, ToGrpcStatus(parsed.error()));
  parsed->dir = JobDir(temp_base_, request->id());
  parsed->cache_dir = temp_base_ + "/step-runner-cache";

  auto job = std::make_shared<Job>(request->id());
  auto job_request = std::make_shared<JobRequest>(std::move(*parsed));
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::lock_guard<std::mutex> lock(mu_);
  // Checked again: check and insert are atomic, so two concurrent Runs start one job.
  if (shutting_down_) {
    reactor->Finish(ShuttingDown());
  } else if (auto it = jobs_.find(request->id()); it != jobs_.end()) {
    reactor->Finish(RunOfKnownId(*it->second));
  } else {
    jobs_.emplace(request->id(), job);
    loop_.Post([this, job = std::move(job), job_request, reactor] {
      StartJob(job, *job_request, reactor);
    });
  }
  return reactor;
}

void JobService::StartJob(const std::shared_ptr<Job>& job, JobRequest& request,
                          grpc::ServerUnaryReactor* reactor) {
  auto unregister = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(job->id());
    if (it != jobs_.end() && it->second == job) jobs_.erase(it);
  };
  if (shutting_down()) {
    unregister();
    reactor->Finish(ShuttingDown());
    MaybeDrained();
    return;
  }
  // A limit this host cannot enforce is refused before anything exists (contract 8.1).
  if (sr::Status ok = CheckResourceLimits(supervisor_, request.root, request.resources); !ok.ok()) {
    unregister();
    reactor->Finish(ToGrpcStatus(ok.error()));
    return;
  }
  // A setup error answers with the error and leaves nothing behind.
  sr::Status setup = job->Setup(request);
  if (!setup.ok()) {
    unregister();
    reactor->Finish(ToGrpcStatus(setup.error()));
    return;
  }
  // Answer first: starting the engine spawns the first step's processes.
  reactor->Finish(grpc::Status::OK);
  job->Start(loop_, supervisor_, std::move(request), [this, job] { OnJobEnd(job); });
}

void JobService::OnJobEnd(const std::shared_ptr<Job>& job) {
  if (!job->end_waiters.empty()) {
    // Close of a running job: every process is gone now, so the files can go.
    auto waiters = std::move(job->end_waiters);
    Forget(job);
    for (auto& w : waiters) w();
  } else if (retention_.count() > 0 && !shutting_down()) {
    std::weak_ptr<Job> weak = job;
    job->retention_timer = loop_.After(retention_, [this, weak] {
      if (auto j = weak.lock()) {
        j->retention_timer = 0;
        Forget(j);
      }
    });
  }
  MaybeDrained();
}

void JobService::Forget(const std::shared_ptr<Job>& job) {
  if (job->retention_timer) loop_.CancelTimer(job->retention_timer);
  job->retention_timer = 0;
  if (sr::Status removed = job->RemoveFiles(); !removed.ok()) {
    // Short of fds (the state that fails jobs with EMFILE): give back the ones kept only for
    // speed and try once more. What stays keeps its owner mark: a Run of this id or the next
    // server with this TMPDIR removes it.
    supervisor_.ReleaseSpareFds();
    removed = job->RemoveFiles();
    if (!removed.ok()) {
      std::fprintf(stderr, "step-runner: %s; left for the next start with this TMPDIR\n",
                   removed.error().message.c_str());
    }
  }
  bool idle = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(job->id());
    if (it != jobs_.end() && it->second == job) jobs_.erase(it);
    idle = jobs_.empty();
  }
  job->ReleaseRecords(loop_);
  // The last job is gone: give back what malloc keeps of the freed records, results and
  // buffers (free pages in every thread's arena), after the release above (same helper, in
  // order). A server that was busy then idles holds its idle size, not its peak.
  if (idle) loop_.Offload([] { ::malloc_trim(0); }, [] {});
}

// --- Status ----------------------------------------------------------------------------------

grpc::ServerUnaryReactor* JobService::Status(grpc::CallbackServerContext* context,
                                             const proto::StatusRequest* request,
                                             proto::StatusResponse* response) {
  if (!request->id().empty()) {
    if (auto valid = ValidateJobId(request->id()); !valid.ok()) {
      return FinishNow(context, ToGrpcStatus(valid.error()));
    }
  }
  if (request->id().empty()) {
    // The listing leaves out each job's result and termination trees (Status(id) has them):
    // with them, 1000 jobs came to 4.6 MB, past the 4 MiB every gRPC client accepts by default.
    // Without, an entry is ~100 bytes: 40 000 jobs fit.
    std::lock_guard<std::mutex> lock(mu_);
    if (shutting_down_) return FinishNow(context, ShuttingDown());
    for (const auto& [id, job] : jobs_) *response->add_jobs() = job->Summary();
    return FinishNow(context, grpc::Status::OK);
  }
  // On the loop, which owns the job: the result tree is brought up to date only now, when
  // someone asks (a step starting or ending just marks it stale), so a job's steps cost no
  // copies of the tree. The copy into the response and the cut to fit happen here too: a status
  // of megabytes takes milliseconds, well inside the loop's budget (contract 7.4).
  return OnRegisteredJob(context, request->id(), ToGrpcStatus(JobNotFound(request->id())),
                         [this, id = request->id(), response](grpc::ServerUnaryReactor* reactor) {
                           auto job = Find(id);
                           if (!job) {
                             reactor->Finish(ToGrpcStatus(JobNotFound(id)));
                             return;
                           }
                           *response->add_jobs() = *job->FreshSnapshot();
                           FitStatus(response->mutable_jobs(0), kStatusLimit);
                           reactor->Finish(grpc::Status::OK);
                           if (linger_timer_) ArmStatusLinger();
                         },
                         /*during_shutdown=*/true);
}

grpc::ServerUnaryReactor* JobService::OnRegisteredJob(
    grpc::CallbackServerContext* context, const std::string& id, grpc::Status if_unknown,
    std::function<void(grpc::ServerUnaryReactor*)> work, bool during_shutdown) {
  if (auto valid = ValidateJobId(id); !valid.ok()) {
    return FinishNow(context, ToGrpcStatus(valid.error()));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_ && !during_shutdown) {
    reactor->Finish(ShuttingDown());
  } else if (!jobs_.count(id)) {
    reactor->Finish(std::move(if_unknown));
  } else {
    loop_.Post([work = std::move(work), reactor] { work(reactor); });
  }
  return reactor;
}

// --- Cancel ----------------------------------------------------------------------------------

grpc::ServerUnaryReactor* JobService::Cancel(grpc::CallbackServerContext* context,
                                             const proto::CancelRequest* request,
                                             proto::CancelResponse* /*response*/) {
  return OnRegisteredJob(context, request->id(), ToGrpcStatus(JobNotFound(request->id())),
                         [this, id = request->id(), force = request->force()](
                             grpc::ServerUnaryReactor* reactor) {
                           // Idempotent; a finished job is left unchanged.
                           if (auto job = Find(id)) job->Cancel(CancelReason::kRequested, force);
                           // The reply (gRPC's write of it is about half of this task's CPU)
                           // waits for the Cancels already queued behind this one: in a burst
                           // every job's signal goes out before any reply, not one job's signal
                           // after all the replies before it.
                           loop_.Post([reactor] { reactor->Finish(grpc::Status::OK); });
                         });
}

// --- Close -----------------------------------------------------------------------------------

grpc::ServerUnaryReactor* JobService::Close(grpc::CallbackServerContext* context,
                                            const proto::CloseRequest* request,
                                            proto::CloseResponse* /*response*/) {
  if (auto valid = ValidateJobId(request->id()); !valid.ok()) {
    return FinishNow(context, ToGrpcStatus(valid.error()));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::lock_guard<std::mutex> lock(mu_);
  if (shutting_down_) {
    reactor->Finish(ShuttingDown());
  } else if (auto it = jobs_.find(request->id()); it == jobs_.end()) {
    reactor->Finish(grpc::Status::OK);  // idempotent, as in Go
  } else {
    // From here until the job is forgotten, a Run with this id is refused (RunOfKnownId).
    it->second->closing = true;
    loop_.Post([this, id = request->id(), reactor] { CloseJob(id, reactor); });
  }
  return reactor;
}

void JobService::CloseJob(const std::string& id, grpc::ServerUnaryReactor* reactor) {
  auto job = Find(id);
  if (!job) {
    reactor->Finish(grpc::Status::OK);
  } else if (job->ended()) {
    Forget(job);
    reactor->Finish(grpc::Status::OK);
  } else {
    // Finish only when the engine's task is over: every process of the job is gone. Never
    // delete files under a live process.
    job->end_waiters.push_back([reactor] { reactor->Finish(grpc::Status::OK); });
    job->Cancel(CancelReason::kClosed, false);
  }
}

// --- Shutdown --------------------------------------------------------------------------------

void JobService::BeginShutdown(std::function<void()> drained) {
  const bool force = ++shutdown_calls_ > 1;
  std::vector<std::shared_ptr<Job>> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutting_down_ = true;
    for (const auto& [id, job] : jobs_) jobs.push_back(job);
  }
  if (!force) drained_ = std::move(drained);
  if (followers_ > 0) followed_at_shutdown_ = true;
  for (const auto& job : jobs) job->Cancel(CancelReason::kServerShutdown, force);
  MaybeDrained();
}

// The Status linger: over once no Status came for kQuiet, or kMost after it began (a client
// polling Status must not hold the shutdown).
void JobService::ArmStatusLinger() {
  constexpr auto kQuiet = std::chrono::milliseconds(500);
  constexpr auto kMost = std::chrono::seconds(3);
  const Clock::time_point now = Clock::now();
  if (!linger_started_) linger_started_ = now;
  if (linger_timer_) loop_.CancelTimer(linger_timer_);
  const auto wait = std::min<Duration>(kQuiet, std::max<Duration>(Duration::zero(), *linger_started_ + kMost - now));
  linger_timer_ = loop_.After(wait, [this] {
    linger_timer_ = 0;
    linger_over_ = true;
    MaybeDrained();
  });
}

void JobService::FollowerGone() {
  --followers_;
  MaybeDrained();
}

void JobService::MaybeDrained() {
  if (!drained_) return;
  std::vector<std::shared_ptr<Job>> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!shutting_down_) return;
    for (const auto& [id, job] : jobs_) {
      if (!job->ended()) return;  // still running, or a Run whose setup is still queued
      jobs.push_back(job);
    }
  }
  // A Close still waiting is answered once the job's files are gone; the other jobs' files go
  // with the server (nobody can Close them any more), after the Status linger below.
  std::vector<std::shared_ptr<Job>> kept;
  for (const auto& job : jobs) {
    if (job->end_waiters.empty()) {
      kept.push_back(job);
      continue;
    }
    auto waiters = std::move(job->end_waiters);
    Forget(job);
    for (auto& w : waiters) w();
  }
  // Every log is closed: streams end once their client has the last byte. A client that does
  // not read is cut off after the deadline (Server::Shutdown cancels what is left).
  if (followers_ > 0 && !stream_deadline_passed_) {
    if (!stream_timer_) {
      stream_timer_ = loop_.After(stream_deadline_, [this] {
        stream_timer_ = 0;
        stream_deadline_passed_ = true;
        MaybeDrained();
      });
    }
    return;
  }
  if (stream_timer_) loop_.CancelTimer(stream_timer_);
  stream_timer_ = 0;
  // `client run --follow` exits with the job's code, read by a Status after the log's end: it
  // was refused here (UNAVAILABLE), and a job cancelled by the shutdown exited 1, "cannot
  // reach". Only followers wait for it; a second signal does not.
  if (!linger_over_ && shutdown_calls_ == 1 && followed_at_shutdown_ && !kept.empty()) {
    if (!linger_timer_) ArmStatusLinger();
    return;
  }
  if (linger_timer_) loop_.CancelTimer(linger_timer_);
  linger_timer_ = 0;
  for (const auto& job : kept) Forget(job);
  auto cb = std::move(drained_);
  drained_ = nullptr;
  cb();
}

}  // namespace sr::service
