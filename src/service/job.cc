#include "service/job.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/fd.h"
#include "util/signals.h"
#include "util/tempdir.h"

namespace sr::service {
namespace {

// mkdir -p with `mode`, recording each directory it created (outermost first) so a failed
// setup can take them away again.
Status MakeDirs(const std::string& path, mode_t mode, std::vector<std::string>* created) {
  std::string prefix;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    prefix = path.substr(0, slash);
    pos = slash + 1;
    if (prefix.empty() || prefix == "." || prefix == "..") continue;
    if (::mkdir(prefix.c_str(), mode) == 0) {
      created->push_back(prefix);
      continue;
    }
    int err = errno;
    struct stat st {};
    if (err == EEXIST && ::stat(prefix.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
    if (err == EEXIST) err = ENOTDIR;
    return Error{Error::Kind::kInvalid, "creating work dir " + path + ": " + prefix + ": " +
                                            std::strerror(err)};
  }
  return Ok();
}

// Every process record of every step that has a termination record, depth first.
void CollectProcesses(const proto::StepResult& r, proto::Termination* out) {
  if (r.has_termination()) {
    for (const auto& p : r.termination().processes()) *out->add_processes() = p;
  }
  for (const auto& sub : r.sub_step_results()) CollectProcesses(sub, out);
}

}  // namespace

// The engine's output goes into the job log: both streams, interleaved as written.
class Job::LogSink : public OutputSink {
 public:
  explicit LogSink(JobLog* log) : log_(log) {}
  void Write(OutputStream stream, std::string_view bytes) override { log_->Write(stream, bytes); }

 private:
  JobLog* log_;
};

// A job is visible from the moment Run registers it, and Run answers before Start publishes:
// until then it reads `running` (accepted, about to run), never `unspecified` (found by the soak).
Job::Job(std::string id) : id_(std::move(id)) {
  published_.set_id(id_);
  published_.set_status(proto::StepResult::running);
}

Job::~Job() = default;

proto::Status Job::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return published_;
}

proto::Status Job::Summary() const {
  std::lock_guard<std::mutex> lock(mu_);
  proto::Status s;
  s.set_id(published_.id());
  s.set_message(published_.message());
  s.set_status(published_.status());
  if (published_.has_start_time()) *s.mutable_start_time() = published_.start_time();
  if (published_.has_end_time()) *s.mutable_end_time() = published_.end_time();
  if (published_.has_error()) *s.mutable_error() = published_.error();
  if (published_.has_cancel_time()) *s.mutable_cancel_time() = published_.cancel_time();
  return s;
}

Status Job::Setup(JobRequest& request) {
  auto fail = [this](Error e) -> Status {
    RemoveFiles();
    for (auto it = created_dirs_.rbegin(); it != created_dirs_.rend(); ++it) ::rmdir(it->c_str());
    created_dirs_.clear();
    return e;
  };
  if (!request.work_dir.empty()) {
    Status s = MakeDirs(request.work_dir, 0700, &created_dirs_);
    if (!s.ok()) return fail(s.error());
  }
  std::string dir = JobDir(id_);
  if (::mkdir(dir.c_str(), 0700) != 0) {
    // A leftover of a server that died: nobody owns it (the id is not registered here).
    if (errno != EEXIST) return fail(ErrnoError("creating job dir " + dir, errno));
    Status removed = RemoveTree(dir);
    if (!removed.ok()) return fail(removed.error());
    if (::mkdir(dir.c_str(), 0700) != 0) return fail(ErrnoError("creating job dir " + dir, errno));
  }
  dir_ = dir;
  if (::mkdir((dir_ + "/.tmp").c_str(), 0700) != 0) {
    return fail(ErrnoError("creating " + dir_ + "/.tmp", errno));
  }
  auto log = JobLog::Create(dir_ + "/logs");
  if (!log.ok()) return fail(log.error());
  log_ = std::move(*log);
  for (const auto& [key, value] : request.file_vars) {
    std::string path = dir_ + "/" + key;
    Status w = WriteFile(path, value, 0600);
    if (!w.ok()) return fail(w.error().Wrap("writing file variable \"" + key + "\""));
    request.job_vars[key] = path;
  }
  return Ok();
}

void Job::Start(EventLoop& loop, Supervisor& supervisor, JobRequest request,
                std::function<void()> on_end) {
  loop_ = &loop;
  grace_ = request.grace;
  on_end_ = std::move(on_end);
  sink_ = std::make_unique<LogSink>(log_.get());
  engine_ = std::make_unique<Engine>(loop, supervisor, *sink_, static_cast<Observer*>(this));

  RunOptions options;
  options.work_dir = request.work_dir;
  options.root_step_dir = request.root_step_dir;
  options.base_env = std::move(request.env);
  options.job_vars = std::move(request.job_vars);
  options.secrets = std::move(request.secrets);
  options.grace = request.grace;
  options.resources = request.resources;
  options.temp_dir = dir_ + "/.tmp";

  running_ = true;
  state_ = proto::StepResult::running;
  start_time_ = WallNow();
  if (request.timeout.count() > 0) {
    timeout_timer_ = loop.After(request.timeout, [this] {
      timeout_timer_ = 0;
      Cancel(CancelReason::kTimedOut, false);
    });
    if (request.warn_before.count() > 0) {
      const int signo = request.warn_signal;
      warn_timer_ = loop.After(request.timeout - request.warn_before, [this, signo] {
        warn_timer_ = 0;
        if (!running_ || cancel_.requested()) return;
        warning_time_ = WallNow();
        engine_->Warn(signo);
        Publish();
      });
    }
  }
  Publish();
  StartTask<RunOutcome>(engine_->Run(std::move(request.root), std::move(options), cancel_),
                        [this](RunOutcome outcome) { Finish(std::move(outcome)); });
}

void Job::Cancel(CancelReason reason, bool forced) {
  if (!running_) return;
  const bool first = !cancel_.requested();
  if (!first && (cancel_.forced() || !forced)) return;  // nothing to escalate
  CancelRequest request;
  request.reason = reason;
  request.forced = forced;
  request.grace = forced ? Duration(0) : grace_;
  cancel_.Cancel(request);
  // The cancel may have ended the job synchronously (nothing was running).
  if (running_) state_ = proto::StepResult::cancelling;
  Publish();
}

void Job::RemoveFiles() {
  if (dir_.empty()) return;
  (void)RemoveTree(dir_);
  dir_.clear();
}

void Job::StepStarted(const std::string& /*name*/) { Publish(); }

void Job::StepFinished(const std::string& /*name*/, proto::StepResult::Status /*status*/,
                       Duration /*took*/, const proto::StepResult& /*result*/) {
  Publish();
}

void Job::Finish(RunOutcome outcome) {
  running_ = false;
  ended_ = true;
  if (timeout_timer_) loop_->CancelTimer(timeout_timer_);
  if (warn_timer_) loop_->CancelTimer(warn_timer_);
  timeout_timer_ = warn_timer_ = 0;
  end_time_ = WallNow();
  final_result_ = std::move(outcome.result);

  if (!outcome.error) {
    state_ = proto::StepResult::success;
  } else {
    proto::StatusError error;
    error.set_message(outcome.error->message);
    Error::Kind kind = outcome.error->kind;
    // Classification uses what the runner did: a cancel whose reason was the timeout is a
    // timeout, whatever the step printed.
    if (kind == Error::Kind::kCancelled && cancel_.current() &&
        cancel_.current()->reason == CancelReason::kTimedOut) {
      kind = Error::Kind::kTimedOut;
    }
    switch (kind) {
      case Error::Kind::kCancelled:
        state_ = proto::StepResult::cancelled;
        error.set_kind(proto::StatusError::cancelled);
        break;
      case Error::Kind::kTimedOut:
        state_ = proto::StepResult::failure;
        error.set_kind(proto::StatusError::timed_out);
        break;
      case Error::Kind::kInternal:
        state_ = proto::StepResult::failure;
        error.set_kind(proto::StatusError::internal);
        break;
      default:
        state_ = proto::StepResult::failure;
        error.set_kind(proto::StatusError::step_failure);
        break;
    }
    error_ = std::move(error);
  }
  // Publish before closing the log: a follower that sees the end then asks for the final status.
  Publish();
  log_->Close();
  // Run the end callback outside the engine's task: it may destroy this job.
  loop_->Post([this] {
    auto cb = std::move(on_end_);
    if (cb) cb();
  });
}

std::optional<proto::Termination> Job::BuildTermination(const proto::StepResult& result) const {
  const auto& request = cancel_.current();
  if (!request) return std::nullopt;
  if (ended_ && state_ == proto::StepResult::success) return std::nullopt;  // ran to its end
  proto::Termination t;
  SetTerminationRequest(*request, &t);
  if (warning_time_) *t.mutable_warning_time() = ToTimestamp(*warning_time_);
  CollectProcesses(result, &t);
  return t;
}

void Job::Publish() {
  proto::Status s;
  s.set_id(id_);
  s.set_status(state_);
  if (error_) {
    s.set_message(error_->message());
    *s.mutable_error() = *error_;
  }
  if (start_time_) *s.mutable_start_time() = ToTimestamp(*start_time_);
  if (end_time_) *s.mutable_end_time() = ToTimestamp(*end_time_);
  if (cancel_.current()) *s.mutable_cancel_time() = ToTimestamp(cancel_.current()->requested_wall);
  if (final_result_) {
    *s.mutable_result() = *final_result_;
  } else if (engine_) {
    *s.mutable_result() = engine_->Snapshot();
  }
  if (auto termination = BuildTermination(s.result())) *s.mutable_termination() = *termination;
  std::lock_guard<std::mutex> lock(mu_);
  published_ = std::move(s);
}

}  // namespace sr::service
