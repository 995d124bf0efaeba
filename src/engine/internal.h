// Engine internals shared by the step kinds. Not part of the public API (see engine.h).
#pragma once

#include <sys/stat.h>

#include <array>
#include <functional>
#include <initializer_list>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "engine/git_cache.h"
#include "engine/step_files.h"

namespace sr::engine {

using json = nlohmann::json;
using Env = std::map<std::string, std::string>;

/// An expression or type error met while running is the step's failure (exit 1), not a
/// step-file error (exit 2): the file parsed, the values it met at run time did not fit.
inline Error AsFailure(Error e) {
  if (e.kind == Error::Kind::kInvalid) e.kind = Error::Kind::kFailed;
  return e;
}

/// `base` with every entry of `top` on top of it.
inline Env Overlay(Env base, const Env& top) {
  for (const auto& [k, v] : top) base[k] = v;
  return base;
}

/// An exec step's environment, as its record shows it and as its process gets it. The steps of
/// a job mostly run in one environment: they share one EnvRecord (ShareEnv) instead of a copy
/// each in their records (a proto map of the whole environment per step was a third of the
/// runner's allocations for a trivial step).
struct EnvRecord {
  Env vars;
  std::shared_ptr<const std::vector<std::string>> entries;  // "KEY=value", in the order of vars
  std::string nul_key;  // the first variable whose name or value holds a NUL byte, if any
};

/// One node of the live result tree. Children are kept apart from the proto so a snapshot can
/// be taken at any moment while steps are still appending.
struct ResultNode {
  proto::StepResult result;  // sub_step_results and (for exec steps) env stay empty here
  std::shared_ptr<const EnvRecord> env;  // an exec step's env: Snapshot() puts it in `env`
  std::vector<std::unique_ptr<ResultNode>> children;
  std::shared_ptr<ProcessTree> tree;  // set while an exec step's processes run
  StepFilePool::Base files_base;  // its output/export files' path minus suffix, when chosen early
  /// The cancel domain the step runs in: a running step reads `cancelling` once it is cancelled.
  const CancelSource* cancel = nullptr;
  ResultNode* Add() {
    children.push_back(std::make_unique<ResultNode>());
    return children.back().get();
  }
  proto::StepResult Snapshot() const;
};

/// Calls `fn` with the process tree of every exec step still running under `root`.
void ForEachRunningTree(const ResultNode& root, const std::function<void(ProcessTree&)>& fn);

struct Scope;
struct StepOutcome;

/// An in-process built-in step (dist://sleep, dist://outputs, dist://step/oci/*): runs on the
/// loop, cancel-aware. Gets its expanded inputs and the environment an exec step would get.
using BuiltinFn = std::function<Task<StepOutcome>(Engine::State&, Scope&, const nlohmann::json&,
                                                  const Env&, ResultNode*)>;

/// A step file ready to run, with the directory its relative references resolve against.
struct LoadedStep {
  stepfile::StepFile file;
  std::string dir;
  BuiltinFn builtin;         // set for in-process builtins; `file` then only carries the spec
  bool any_inputs = false;   // the builtin accepts inputs of any name and type
  bool any_outputs = false;  // outputs are taken as written, not checked against the spec
  bool own_files = false;    // its inputs see its own output_file/export_file (script steps)
  // A builtin's check of one input's value (a duration that is none), run after its type check
  // when the item loads, so that the error names the input's file:line as that does.
  std::function<Status(const std::string& name, const nlohmann::json& value)> check_input;
};

/// A Scope's expression view, kept between its invocations (see ScopeView). Copying a Scope
/// starts the copy without one: the copy is about to be changed, and builds its own when asked.
struct ViewCache {
  ViewCache() = default;
  ViewCache(const ViewCache&) {}
  ViewCache& operator=(const ViewCache&) {
    value.reset();
    return *this;
  }
  std::unique_ptr<json> value;
};

/// A parsed local step file, and what it was parsed from (see LoadReference).
struct CachedStepFile {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  timespec mtime{};
  LoadedStep step;
};

/// What a running sequence hands to the invocations in it: their callers' view of the world.
struct Scope {
  std::string step_dir;     // directory of the sequence's file
  Env ambient_env;          // base env + every enclosing invocation/definition env (no exports)
  json inputs = json::object();
  json steps = json::object();  // earlier siblings: {name: {outputs: {...}}}
  CancelSource* cancel = nullptr;
  ResultNode* node = nullptr;   // the sequence's own result node
  json run = json::object();    // `${{ run.* }}` (status, termination) for finally steps
  const stepfile::Definition* definition = nullptr;  // the sequence (diagnose steps live here)
  // The innermost resource group around the steps of this scope (null: none) and the tightest
  // limits of every level that encloses them (contract 8.1).
  std::shared_ptr<ResourceGroup> group;
  ResourceLimits limits;
  // View() of this scope, built on first use and updated in place as `steps` grows, so that the
  // i-th step of a sequence does not copy the outputs of the i-1 before it (quadratic in the
  // length of the sequence). Whoever changes steps/inputs/run/step_dir of a scope in use resets it.
  ViewCache view;
};

/// How one step ended.
struct StepOutcome {
  bool has_result = false;  // false when loading failed before the step started
  std::optional<Error> error;
  ResultNode* node = nullptr;  // the invocation's result node, when it has one
};

}  // namespace sr::engine

namespace sr {

struct Engine::State {
  State(EventLoop& l, Supervisor& s, OutputSink& o, Observer* obs)
      : loop(l), sup(s), sink(o), observer(obs) {}
  EventLoop& loop;
  Supervisor& sup;
  OutputSink& sink;
  Observer* observer;
  RunOptions options;
  CancelSource job_cancel;  // the job's cancel domain: every `run:` step's tree registers here
  /// What the job's cancel did so far (for its log line and record), merged over escalations.
  CancelSource::Effect cancel_effect;
  engine::Env exports;  // job-global, every later step sees them (contract 4.4)
  std::array<std::shared_ptr<const engine::EnvRecord>, 2> recent_envs;  // ShareEnv's, newest first
  engine::ResultNode root;
  int file_counter = 0;
  engine::StepFilePool files{&options.temp_dir};  // exec steps' idle output/export files
  size_t expanded_bytes = 0;  // every value expansion produced so far (ChargeExpansion)
  size_t work_since_yield = 0;  // bytes copied or made since the job last let the loop go
  std::unique_ptr<engine::GitCache> git;
  /// What a cancel did to the runner's own helpers (git fetching a step): no step's record holds
  /// these processes, the job's does (JobTermination).
  std::vector<proto::Termination> helper_stops;
  std::vector<engine::Scope*> running_sequences;  // innermost last, for diagnose steps
  int pending_diagnose = 0;                        // diagnose lists still running
  std::set<CancelSource*> diagnose_cancels;        // their cancel sources, while they run
  std::function<void()> on_diagnose_drained;       // called when pending_diagnose drops to 0
  std::optional<std::chrono::system_clock::time_point> warned_at;
  int warning_signal = 0;
  // Local step files parsed in this run, by path: a step invoked N times is parsed once, and
  // again only if the file changed (device, inode, size, mtime) — a step may write the next.
  std::map<std::string, engine::CachedStepFile> step_files;

  /// The view an expression sees: contexts of reference.md 2.2 plus `run`.
  nlohmann::json View(const engine::Scope& scope, const engine::Env& env) const;
  /// Replaces secrets by [MASKED].
  std::string Mask(std::string_view text) const;
  /// Replaces secrets in every string field of a message (reflection: a new field cannot leak).
  void MaskMessage(google::protobuf::Message* m) const;
  void Log(const std::string& line);  // an engine line on the job's stdout
};

namespace engine {
/// Adds `bytes` to the job's expanded values; an error once the total passes
/// expr::kMaxExpandedBytes (16 MiB per job, contract section 7 item 4).
Status ChargeExpansion(Engine::State& st, size_t bytes);
/// About what a value costs in memory: its strings plus 16 bytes per node.
size_t ValueBytes(const json& value);
/// expr::ExpandString / expr::Expand of `raw` in `view`, charged to the job: the expansion stops
/// where the job's total (expr::kMaxExpandedBytes) would be passed, with an error saying so, and
/// a large one is made on the loop's helper thread (engine/expand.cc). Expression errors are the
/// step's failure (AsFailure). `raw` and `view` must stay unchanged until the task is done.
Task<Result<std::string>> ExpandStringCharged(Engine::State& st, const std::string& raw,
                                              const json& view);
Task<Result<json>> ExpandCharged(Engine::State& st, const json& raw, const json& view);
/// The work meter (contract 7.4): copying or making large values is charged here, and once
/// kWorkSlice bytes were charged since the job last let the loop go, YieldIfBusy() lets it go:
/// the rest of the step goes on in a later turn, after whatever else was waiting. No job holds
/// the loop for long, whatever the size of its values; small steps never yield.
inline constexpr size_t kWorkSlice = size_t{1} << 20;
void ChargeWork(Engine::State& st, size_t bytes);
/// ChargeWork() of what `value` costs (expr::ValueSize, counted up to kWorkSlice).
void ChargeWork(Engine::State& st, const json& value);
Task<bool> YieldIfBusy(Engine::State& st);
/// Runs one invocation of a sequence: load, check and expand inputs, run, record.
/// The result node is added under caller.node once the step is loaded.
Task<StepOutcome> RunInvocation(Engine::State& st, Scope& caller, const stepfile::Invocation& inv);
/// Runs a loaded step with its expanded inputs in an environment.
Task<StepOutcome> RunStep(Engine::State& st, Scope& caller, LoadedStep step, json inputs,
                          Env invocation_env, ResultNode* node);
Task<StepOutcome> RunExec(Engine::State& st, Scope& caller, const LoadedStep& step,
                          const json& inputs, std::shared_ptr<const EnvRecord> env,
                          ResultNode* node);
Task<StepOutcome> RunSequence(Engine::State& st, Scope& caller, const LoadedStep& step,
                              const json& inputs, Env env, ResultNode* node);
/// Which list RunList runs, and so how it goes on after a failure.
enum class ListKind {
  kRun,                  // `run:`: the first failure ends it, the items after it are skipped
  kFinally,              // `finally:` after a `run:` that succeeded: its first error is the run's
  kFinallyAfterFailure,  // `finally:` after a `run:` that failed or was cancelled
  kDiagnose,             // `diagnose:` lists, whose errors no one reports
};
/// Runs a list of invocations under `scope`; all but kRun run every item even after a failure.
/// Returns the first error. An item that fails to load leaves no result, only its error: in the
/// lists that run on, each such error that is not the one returned to be reported (every one
/// after `run:` failed, and in `diagnose:`) is logged as it happens, naming the item's file:line.
Task<std::optional<Error>> RunList(Engine::State& st, Scope& scope,
                                   const std::vector<stepfile::Invocation>& list, ListKind kind);
/// Starts the `diagnose:` lists of the running sequences (pre-deadline warning).
void StartDiagnose(Engine::State& st);
/// The job's termination record so far, masked: the cancel request, the warning, and every
/// process record of the steps the cancel reached. The one builder: Status, the log lines and
/// `${{ run.termination }}` render what it returns.
std::optional<proto::Termination> JobTermination(const Engine::State& st);
/// A step's record, from its tree's stop facts: reason (the domain's cancel, or step_ended for
/// processes left behind), effective grace, and how each process ended.
proto::Termination StepTermination(const TreeExit& exit, const CancelSource& cancel);
/// The record of a step that was not stopped but one of whose processes died of the warning
/// signal sent before the deadline (Engine::Warn): reason deadline_warning, the warned
/// processes. Unset when none died of it.
std::optional<proto::Termination> WarningTermination(const TreeExit& exit);
/// What a failed step's error adds when the runner's deadline warning signal ended it (the step
/// failed: no cancel came, the deadline had not): the main process died of that signal, or it
/// exited 128 + that signal after one of its processes died of it, as a shell reports its
/// child's death. Empty otherwise.
std::string WarningEndNote(const TreeExit& exit, pid_t main_pid);
/// The record of a step the kernel's OOM killer ended (contract 8.3): reason oom_killed.
proto::Termination OomTermination(const TreeExit& exit, pid_t main_pid, const std::string& command);
/// The termination record as a `${{ run.termination }}` value: protobuf's JSON names, as Status.
/// The job's; without a job-wide cancel, that of the first step under `scope` that was stopped
/// (its own timeout, the OOM killer); else {}.
json TerminationValue(const Engine::State& st, const ResultNode& scope);
/// The process records of the steps a cancel of `node`'s subtree reached (its own timeout's), masked.
proto::Termination SubtreeTermination(const Engine::State& st, const ResultNode& node);
/// Log lines: the step's leftovers the runner signalled (one line; none if it signalled none),
/// the end of a cancel: the job's, or with `step` set the end of that step's own (its `timeout:`).
std::optional<std::string> LeftoversLine(const std::string& step, const proto::Termination& t);
/// The processes of `step` that died of the warning signal and got no other signal from the
/// runner, one line; none if there are none.
std::optional<std::string> WarningLine(const std::string& step, const proto::Termination& t);
std::string CancelFinishedLine(const proto::Termination& t, const std::string& step = "");
/// The scope a step sees itself in: its own directory and inputs, its caller's cancel and `run`.
Scope StepScope(const Scope& caller, const LoadedStep& step, const json& inputs);
/// What a callee needs of its caller's scope: the caller's, minus `steps` and `inputs` (copying
/// those per step made a long sequence of sequences quadratic).
Scope CallerScope(const Scope& caller);
/// A scope for one `run:` item with limits or a timeout of its own: CallerScope with the inputs.
Scope ItemScope(const Scope& caller);
/// Expands a definition's `env:` in `view` (entries see outer values, not each other), charged
/// to the job (ExpandStringCharged).
Task<Result<Env>> ExpandDefinitionEnv(Engine::State& st, const stepfile::Definition& def,
                                      const json& view);
/// The error of a step stopped by `cancel`: kind cancelled or timed out, "<what> (cancelled)";
/// a step's own timeout is its failure, a diagnose step killed at the job's end "(job ended)".
Error CancelError(const CancelSource& cancel, const std::string& what);
/// The in-process builtin named `name` (path after dist://), if there is one.
std::optional<LoadedStep> FindBuiltin(const std::string& name);
/// dist://step/oci/{fetch,build,promote} (engine/oci_steps.cc), if `name` is one of them.
std::optional<LoadedStep> FindOciBuiltin(const std::string& name);
/// Pulls the image of an `oci:` reference (fields expanded in `view`) into a fresh directory
/// under the job's temp dir; returns that directory joined with the reference's `dir`.
Task<Result<std::string>> FetchOciReference(Engine::State& st, const Scope& caller,
                                            const stepfile::Reference& ref, const json& view);
/// Loads the step an invocation references (local, dist, git, dynamic, oci).
/// `caller_view` must outlive the returned task (the caller awaits it at once).
Task<Result<LoadedStep>> LoadReference(Engine::State& st, const Scope& caller,
                                       stepfile::Reference ref, const json& caller_view);
/// The environment made of `layers` (later layers win: Overlay) as an EnvRecord: one of the
/// job's recent records when it holds exactly that environment (the usual case in a sequence:
/// compared without building it), else a new one, which becomes the most recent. At most 4
/// layers.
std::shared_ptr<const EnvRecord> ShareEnv(Engine::State& st,
                                          std::initializer_list<const Env*> layers);
/// The view of `scope` with `env` as its env context: State::View, cached in scope.view.
const json& ScopeView(Engine::State& st, Scope& scope, const Env& env);
/// Loads a local reference (static path) relative to `step_dir`, from the run's cache if unchanged.
Result<LoadedStep> LoadLocalStep(Engine::State& st, const stepfile::Reference& ref,
                                 const std::string& step_dir);
/// Before a sequence runs: every `steps.X.outputs.Y` its lists read names an earlier sibling X
/// and, where X's file can be read now, an output X has. Errors name the file:line.
Status CheckOutputReads(Engine::State& st, const std::string& step_dir,
                        const stepfile::Definition& def);
/// A fresh path prefix for a step's output (".out") and export (".env") files.
/// Records a finished step's outputs as `steps.<name>` in scope (and its cached view).
void SetStepOutputs(Scope& scope, const std::string& name, json outputs);
}  // namespace engine

}  // namespace sr
