// Parsed step → expanded invocation → supervised process → result. The engine runs one step file
// (a "job" for the service, one `run`/`ci` invocation for the CLI) on the event loop, as a Task.
//
// It knows step semantics (reference.md sections 2–4, contract section 4) and nothing of gRPC or
// the terminal: output goes to an OutputSink, progress to an optional Observer. A job is driven
// by a JobRun (engine/job_run.h), which owns the timeout and the warning and calls Cancel (Cancel,
// Close, timeout, Ctrl-C all look the same here, except for their CancelReason).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "loop/loop.h"
#include "loop/task.h"
#include "proto/step.pb.h"
#include "stepfile/stepfile.h"
#include "engine/cancel.h"
#include "supervisor/supervisor.h"
#include "util/result.h"

namespace sr {

/// Receives every byte the job's steps print, plus the engine's own log lines.
class OutputSink {
 public:
  virtual ~OutputSink() = default;
  virtual void Write(OutputStream stream, std::string_view bytes) = 0;
  /// Used only when nothing is masked: moves up to `max` bytes of `stream` from the step's pipe
  /// `fd` straight to where Write would put them (splice: the runner never copies them). The
  /// default refuses, and the bytes come through Write.
  virtual OutputMove Move(OutputStream /*stream*/, int /*fd*/, size_t /*max*/) {
    return {OutputMove::Kind::kRefused};
  }
  /// True while the destination cannot take more bytes without waiting (a terminal or a pipe
  /// nobody reads): the steps' output then stays in their pipes, and the steps wait on their
  /// own writes, while the runner goes on serving cancels and timers. Asked often: keep it cheap.
  virtual bool Full() { return false; }
  /// After Full() said true: calls `resume` on the loop once there is room again.
  virtual void WhenRoom(std::function<void()> /*resume*/) {}
};

/// Optional progress callbacks (the CLI prints a line per step on a terminal).
class Observer {
 public:
  virtual ~Observer() = default;
  virtual void StepStarted(const std::string& /*name*/) {}
  /// `result` is the step's finished result (status, usage, ...; not its env, which only
  /// Engine::Snapshot() adds).
  virtual void StepFinished(const std::string& /*name*/, proto::StepResult::Status /*status*/,
                            Duration /*took*/, const proto::StepResult& /*result*/) {}
  /// A step of a `run:` list that did not start because an earlier one failed or a cancel came.
  virtual void StepSkipped(const std::string& /*name*/) {}
  /// The warning before the deadline went out (the termination record changed).
  virtual void Warned() {}
};

struct RunOptions {
  /// Job working directory: default for exec steps' work_dir, `${{ work_dir }}`.
  std::string work_dir;
  /// Directory relative references of the root resolve against ("" = process cwd).
  std::string root_step_dir;
  /// Layers 1–3 of the environment (reference.md 3.5): base env, log level, request env.
  std::map<std::string, std::string> base_env;
  /// `${{ job.X }}` values (strings). Never put into the process environment.
  std::map<std::string, std::string> job_vars;
  /// Values to replace by [MASKED] wherever the engine records or prints them.
  std::vector<std::string> secrets;
  /// Grace between the cancel signal and SIGKILL when a cancel request does not say otherwise.
  Duration grace = std::chrono::seconds(30);
  /// At most this long between the cancel signal and SIGKILL for processes a step's main
  /// process left behind when it ended by itself.
  Duration leftover_grace = std::chrono::seconds(2);
  /// Inputs of the root step (`run -f FILE --inputs k=v`); checked against its spec.
  nlohmann::json root_inputs = nlohmann::json::object();
  /// Directory for per-step output/export files; must exist and outlive the run.
  std::string temp_dir;
  /// Steps write stdout and stderr through one pipe (order kept; all reported as stdout): for
  /// destinations that are one file, the job log. Apart only where the two differ (a terminal).
  bool merge_stderr = false;
  /// Where git-referenced steps are cached ("" = /tmp/step-runner-cache; the CLI and the
  /// service pass $TMPDIR/step-runner-cache).
  std::string cache_dir;
  /// Job-wide limits (`run --memory/--pids/--cpus`, RunRequest.resources); 0 = none.
  ResourceLimits resources;
  /// RunOutcome::result is filled: a masked copy of the whole result tree. `run` without a
  /// results file reads nothing of it, and for a long sequence the copy is a sizeable part of
  /// the runner's work per step.
  bool final_result = true;
  /// Go's CI_STEPS_DEBUG=true in the runner's own environment (`run` keeps CI_* variables out
  /// of the steps'): output and export file errors quote the offending line. The job's
  /// variables and environment are read for it too.
  bool steps_debug = false;
};

/// The end of a run: the root StepResult (unless RunOptions::final_result is off) and, unless it
/// succeeded, the error whose kind says why (kFailed, kCancelled, kTimedOut, kInvalid,
/// kInternal).
struct RunOutcome {
  proto::StepResult result;
  std::optional<Error> error;
};

class Engine {
 public:
  Engine(EventLoop& loop, Supervisor& supervisor, OutputSink& sink, Observer* observer = nullptr);
  ~Engine();

  /// Runs the root step. Only one Run per Engine.
  Task<RunOutcome> Run(stepfile::StepFile root, RunOptions options);

  /// Cancels the run, or escalates its cancel (the policy: engine/cancel.h), and writes the
  /// record's first log line. Returns what it did.
  CancelSource::Effect Cancel(CancelRequest request);
  /// The job's cancel request, once there is one.
  const std::optional<CancelRequest>& cancel_request() const;

  /// The result tree so far (running steps show `running` / `cancelling`), masked.
  proto::StepResult Snapshot() const;
  /// Once the run has ended: hands the result tree over, for the caller to free where it likes
  /// (a tree holding megabytes of values takes milliseconds to free; the service frees it off
  /// the event loop). Snapshot() is empty afterwards.
  std::shared_ptr<void> DetachResults();

  /// Pre-deadline warning: sends `signo` (0 = none) to every process of every running exec step
  /// and starts the `diagnose:` steps of the running sequences, with `${{ run.pids }}`.
  void Warn(int signo);

  /// Sends `signo` to every process of every running exec step, recording nothing: job control
  /// (SIGSTOP when the runner is stopped with Ctrl-Z, SIGCONT when it goes on). Returns how
  /// many processes it reached.
  size_t SignalRunning(int signo);

  /// The termination record, masked: the cancel request (reason, forced, time, effective
  /// grace), the warning, and, for every step a cancel reached, which process got which signal
  /// and how it ended. Unset when no cancel or warning happened.
  std::optional<proto::Termination> Termination() const;

  struct State;  // internal

 private:
  std::unique_ptr<State> state_;
};

/// Exit code of `run`/`ci`/`client run --follow` for a run's outcome (contract section 5):
/// 0 success, 1 step failed, 2 step-file/usage error, 124 timed out, 130 cancelled.
int ExitCodeFor(const std::optional<Error>& error);

/// CI_STEPS_LOG_LEVEL as the steps see it (reference.md 3.9): the job variable, else the env
/// value; trimmed, lower-cased, "" = info. Other values than debug/info/warn/error are an error.
Result<std::string> NormalizeLogLevel(const std::map<std::string, std::string>& job_vars,
                                      const std::map<std::string, std::string>& env);

/// A root input with no default and no value is an error naming it (Go's text).
Status CheckRequiredInputs(const stepfile::Spec& spec, const nlohmann::json& provided);

/// Rewrites every string field of `message` (map keys and values, nested messages too) that is
/// not valid UTF-8, each stray byte as `\xNN`: proto3 clients refuse a message with such a
/// string, and the JSON printer would drop the byte. Process names and the runner's environment
/// are bytes.
void MakeValidUtf8(google::protobuf::Message* message);

/// Serialises a StepResult as step-results.json (protobuf JSON, lowerCamelCase field names).
std::string ResultToJson(const proto::StepResult& result);

/// Whether every limit the job and its step file ask for can be enforced on this host (contract
/// 8.1): an error (kInvalid) naming the step, its line and the reason when not. Steps loaded
/// later are checked when they start.
Status CheckResourceLimits(Supervisor& supervisor, const stepfile::StepFile& root,
                           const ResourceLimits& job);

/// ", cpu 20.1s, peak 1.2 GiB" for a step's end line; "" when nothing was measured.
std::string UsageSummary(const proto::ResourceUsage& usage);
/// "512 MiB", "1.2 GiB", "900 B".
std::string FormatBytes(int64_t bytes);

/// A wall-clock time as a protobuf Timestamp.
google::protobuf::Timestamp ToTimestamp(std::chrono::system_clock::time_point t);

}  // namespace sr
