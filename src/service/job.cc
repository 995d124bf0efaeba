#include "service/job.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "docker/docker.h"
#include "util/fd.h"
#include "util/owner.h"
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

}  // namespace

// The engine's output goes into the job log: both streams, interleaved as written.
// A write that fails (disk full, EIO) keeps what reached the file and fails the job: lost output
// is an error, never a success (contract section 7 item 2). The first error is kept (log_error).
class Job::LogSink : public OutputSink {
 public:
  explicit LogSink(JobLog* log) : log_(log) {}
  void Write(OutputStream stream, std::string_view bytes) override {
    Status written = log_->Write(stream, bytes);
    if (written.ok()) return;
    if (!error_) error_ = written.error();
    if (on_error) on_error(written.error());
  }
  OutputMove Move(OutputStream /*stream*/, int fd, size_t max) override {
    return log_->MoveFrom(fd, max);
  }
  const std::optional<Error>& error() const { return error_; }
  std::function<void(Error)> on_error;

 private:
  JobLog* log_;
  std::optional<Error> error_;
};

std::optional<Error> Job::log_error() const {
  if (!sink_) return std::nullopt;
  return sink_->error();
}

// A job is visible from the moment Run registers it, and Run answers before Start publishes:
// until then it reads `running` (accepted, about to run), never `unspecified` (found by the soak).
Job::Job(std::string id) : id_(std::move(id)) {
  auto s = std::make_shared<proto::Status>();
  s->set_id(id_);
  s->set_status(proto::StepResult::running);
  published_ = std::move(s);
}

Job::~Job() = default;

std::shared_ptr<const proto::Status> Job::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return published_;
}

proto::Status Job::Summary() const {
  std::shared_ptr<const proto::Status> snapshot = Snapshot();
  const proto::Status& published = *snapshot;
  proto::Status s;
  s.set_id(published.id());
  s.set_message(published.message());
  s.set_status(published.status());
  if (published.has_start_time()) *s.mutable_start_time() = published.start_time();
  if (published.has_end_time()) *s.mutable_end_time() = published.end_time();
  if (published.has_error()) *s.mutable_error() = published.error();
  if (published.has_cancel_time()) *s.mutable_cancel_time() = published.cancel_time();
  return s;
}

Status Job::Setup(JobRequest& request) {
  auto fail = [this, &request](Error e) -> Status {
    // Out of fds, a directory walk cannot even open the directory: unlink what Setup made by
    // name first (no fd needed), then walk whatever else is left. Under a transit name, and the
    // owner mark last (see RemoveOwnedTree): a kill half-way leaves a dead runner's leftover.
    if (!dir_.empty()) {
      log_.reset();
      MoveToTransit(dir_);
      ::unlink((dir_ + "/logs").c_str());
      for (const auto& file : request.file_vars) ::unlink((dir_ + "/" + file.first).c_str());
      ::rmdir((dir_ + "/.tmp").c_str());
      ::unlink((dir_ + "/" + kOwnerFile).c_str());
      if (::rmdir(dir_.c_str()) == 0) dir_.clear();
    }
    if (Status removed = RemoveFiles(); !removed.ok()) e.message += "; " + removed.error().message;
    for (auto it = created_dirs_.rbegin(); it != created_dirs_.rend(); ++it) ::rmdir(it->c_str());
    created_dirs_.clear();
    return e;
  };
  if (!request.work_dir.empty()) {
    Status s = MakeDirs(request.work_dir, 0700, &created_dirs_);
    if (!s.ok()) return fail(s.error());
  }
  const std::string& dir = request.dir;
  auto made = MakeOwnedDir(dir);
  if (!made.ok()) return fail(made.error());
  if (!*made) {
    // Another server sharing this TMPDIR runs a job with this id: its files are not ours.
    // Or this server's own, left by a Close whose removal failed (out of fds): its id is free
    // again, the directory is a leftover like a dead server's.
    pid_t owner = 0;
    if (OwnerOfDir(dir, &owner) == Owner::kLive && owner != ::getpid()) {
      return fail(Error{Error::Kind::kInvalid, "job dir " + dir + " belongs to another running "
                                               "step-runner (pid " + std::to_string(owner) + ")"});
    }
    // A leftover of a server that died: nobody owns it (the id is not registered here).
    std::string leftover = dir;
    Status removed = RemoveOwnedTree(leftover);
    if (!removed.ok()) return fail(removed.error());
    made = MakeOwnedDir(dir);
    if (!made.ok() || !*made) {
      return fail(made.ok() ? InternalError("creating job dir " + dir + ": it was made again meanwhile")
                            : made.error());
    }
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
  on_end_ = std::move(on_end);
  sink_ = std::make_unique<LogSink>(log_.get());
  run_ = std::make_unique<JobRun>(loop, supervisor, *sink_, static_cast<Observer*>(this));
  sink_->on_error = [this](Error e) { run_->FailInternal(std::move(e)); };

  JobOptions options;
  options.run.work_dir = request.work_dir;
  options.run.root_step_dir = request.root_step_dir;
  options.run.base_env = std::move(request.env);
  options.run.job_vars = std::move(request.job_vars);
  options.run.secrets = std::move(request.secrets);
  options.run.grace = request.grace;
  options.run.temp_dir = dir_ + "/.tmp";
  options.run.cache_dir = request.cache_dir;
  options.run.merge_stderr = true;  // one log file: one writer, as the Go runner
  options.timeout = request.timeout;
  options.warn_before = request.warn_before;
  options.warn_signal = request.warn_signal;
  if (auto daemon = docker::DaemonToGuard(options.run.base_env, options.run.job_vars, "")) {
    options.docker = DockerOptions{*daemon, dir_ + "/docker.sock", id_};
  }
  options.run.resources = request.resources;

  running_ = true;
  state_ = proto::StepResult::running;
  start_time_ = WallNow();
  Publish();
  run_->Start(std::move(request.root), std::move(options),
              [this](RunOutcome outcome) { Finish(std::move(outcome)); });
}

void Job::Cancel(CancelReason reason, bool forced) {
  if (!running_) return;
  if (!run_->Cancel(reason, forced).changed) return;  // nothing to escalate
  // The cancel may have ended the job synchronously (nothing was running): Finish published.
  if (!running_) return;
  state_ = proto::StepResult::cancelling;
  // The listing says `cancelling` at once; the result tree and the termination record, which
  // keep changing through the grace, are built when someone asks (FreshSnapshot). Building
  // them here was a third of the loop's work per Cancel, ahead of the next job's signals when
  // a burst of Cancels is queued.
  PublishOutline();
}

Status Job::RemoveFiles() {
  if (dir_.empty()) return Ok();
  // The job's own descriptor of its log first: out of fds, it is the one the removal needs. A
  // follower still streaming holds the log too, and reads the removed file through it.
  log_.reset();
  if (Status removed = RemoveOwnedTree(dir_); !removed.ok()) {
    return removed.error().Wrap("job " + id_ + ": removing its directory " + dir_);
  }
  dir_.clear();
  return Ok();
}

void Job::ReleaseRecords(EventLoop& loop) {
  if (running_) return;
  struct Records {
    std::shared_ptr<const proto::Status> published;
    std::optional<proto::StepResult> final_result;
    std::shared_ptr<void> results;
  };
  auto records = std::make_shared<Records>();
  records->final_result = std::move(final_result_);
  final_result_.reset();
  stale_ = false;  // nothing is left to build a status from
  if (run_) records->results = run_->DetachResults();
  auto summary = std::make_shared<const proto::Status>(Summary());
  {
    std::lock_guard<std::mutex> lock(mu_);
    records->published = std::move(published_);
    published_ = std::move(summary);
  }
  loop.Offload([records = std::move(records)]() mutable { records.reset(); }, [] {});
}

void Job::StepStarted(const std::string& /*name*/) { stale_ = true; }

void Job::StepFinished(const std::string& /*name*/, proto::StepResult::Status /*status*/,
                       Duration /*took*/, const proto::StepResult& /*result*/) {
  stale_ = true;
}

std::shared_ptr<const proto::Status> Job::FreshSnapshot() {
  // While cancelling, the termination record changes as processes end within the grace.
  if (stale_ || (running_ && state_ == proto::StepResult::cancelling)) Publish();
  return Snapshot();
}

void Job::Finish(RunOutcome outcome) {
  running_ = false;
  ended_ = true;
  end_time_ = WallNow();
  final_result_ = std::move(outcome.result);

  if (!outcome.error) {
    state_ = proto::StepResult::success;
  } else {
    proto::StatusError error;
    error.set_message(outcome.error->message);
    switch (outcome.error->kind) {
      case Error::Kind::kCancelled:
        state_ = proto::StepResult::cancelled;
        error.set_kind(proto::StatusError::cancelled);
        break;
      case Error::Kind::kTimedOut:
        state_ = proto::StepResult::failure;
        error.set_kind(proto::StatusError::timed_out);
        break;
      case Error::Kind::kInternal:
      case Error::Kind::kExhausted:  // the runner's own resources, not the user's step
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
  // The outline only, as for a cancel: Status(id) builds the trees from the final result when it
  // is asked, off the loop turns that kill the other jobs of a burst at their grace's end.
  PublishOutline();
  log_->Close(Outline().SerializeAsString());
  // Run the end callback outside the engine's task: it may destroy this job.
  loop_->Post([this] {
    auto cb = std::move(on_end_);
    if (cb) cb();
  });
}

proto::Status Job::Outline() const {
  proto::Status s;
  s.set_id(id_);
  s.set_status(state_);
  if (error_) {
    s.set_message(error_->message());
    *s.mutable_error() = *error_;
  }
  if (start_time_) *s.mutable_start_time() = ToTimestamp(*start_time_);
  if (end_time_) *s.mutable_end_time() = ToTimestamp(*end_time_);
  return s;
}

void Job::Publish() {
  stale_ = false;
  proto::Status s = Outline();
  if (final_result_) {
    *s.mutable_result() = *final_result_;
  } else if (run_) {
    *s.mutable_result() = run_->Snapshot();
  }
  AddCancelTime(s);
  if (run_) {
    if (auto termination = run_->Termination()) *s.mutable_termination() = *termination;
  }
  Store(std::move(s));
}

void Job::PublishOutline() {
  stale_ = true;  // the trees are not in it
  proto::Status s = Outline();
  AddCancelTime(s);
  Store(std::move(s));
}

void Job::AddCancelTime(proto::Status& s) const {
  if (!run_) return;
  if (const auto& cancel = run_->cancel_request()) {
    *s.mutable_cancel_time() = ToTimestamp(cancel->requested_wall);
  }
}

void Job::Store(proto::Status s) {
  // Once per change, not per Status call: every answer and listing is built from this copy.
  MakeValidUtf8(&s);
  auto shared = std::make_shared<const proto::Status>(std::move(s));
  std::shared_ptr<const proto::Status> old;  // freed outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  old = std::move(published_);
  published_ = std::move(shared);
}

}  // namespace sr::service
