// An exec step: expand its env, command and work dir, run it under the supervisor with its
// output masked into the job's sink, then read its outputs and exports (reference.md 3.3).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include <google/protobuf/util/json_util.h>

#include "engine/internal.h"
#include "util/utf8.h"
#include "engine/outputs.h"
#include "engine/results.h"
#include "engine/usage.h"
#include "expr/expr.h"
#include "expr/mask.h"
#include "util/fd.h"
#include "util/signals.h"

namespace sr::engine {
namespace {

// Reads outputs (validated against the spec, or delegated as a StepResult) and exports.
Status ReadStepFiles(Engine::State& st, const stepfile::Spec& spec, bool any_outputs,
                     const StepFiles& files, ResultNode* node) {
  auto out_text = files.ReadOutput();
  if (!out_text.ok()) return FailedError("output file: " + out_text.error().message);
  if (spec.delegate_outputs) {
    proto::StepResult delegated;
    auto parsed = google::protobuf::util::JsonStringToMessage(*out_text, &delegated);
    if (!parsed.ok()) {
      // protobuf's message points at the place with a caret on lines of its own: errors are
      // one line (contract section 5), and its first line says what is wrong.
      std::string why(parsed.message());
      why = why.substr(0, why.find('\n'));
      if (out_text->empty()) why = "the step wrote nothing to it";
      return FailedError("output file: delegate: reading output_file as a step result: " + why);
    }
    *node->result.mutable_outputs() = delegated.outputs();
  } else {
    auto written = ParseJsonLines(*out_text, st.options.steps_debug);
    if (!written.ok()) return AsFailure(written.error()).Wrap("output file: read output file");
    if (any_outputs) {  // a script step: whatever it wrote, unchecked (docs/step-language.md)
      for (const auto& [k, v] : *written) (*node->result.mutable_outputs())[k] = ToProtoValue(v);
    } else if (!spec.outputs.empty() || !written->empty()) {
      auto valid = ValidateOutputs(spec, std::move(*written));
      if (!valid.ok()) return AsFailure(valid.error()).Wrap("output file: read output file");
      for (const auto& [k, v] : *valid) {
        (*node->result.mutable_outputs())[k] = ToProtoValue(v);
        auto decl = spec.outputs.find(k);
        if (decl != spec.outputs.end() && decl->second.sensitive && v.is_string()) {
          st.options.secrets.push_back(v.get<std::string>());
        }
      }
    }
  }
  auto exp_text = files.ReadExports();
  if (!exp_text.ok()) return FailedError("export file: " + exp_text.error().message);
  auto exported = ParseJsonLines(*exp_text, st.options.steps_debug);
  if (!exported.ok()) return AsFailure(exported.error()).Wrap("export file: read env file");
  auto env = ExportsToEnv(*exported);
  if (!env.ok()) return AsFailure(env.error()).Wrap("export file");
  for (const auto& [k, v] : *env) {
    st.exports[k] = v;
    (*node->result.mutable_exports())[k] = v;
  }
  return Ok();
}

// A process receives its arguments and environment as C strings: a NUL byte would silently cut
// the value there (contract 7.5), so the step fails instead, naming the value, as Go's exec
// refuses it ("invalid argument").
Status RefuseNul(const ProcessSpec& spec, const EnvRecord& env) {
  auto shown = [](const std::string& s) { return ShowNul(s, 200); };
  constexpr char kWhy[] = " contains a NUL byte, which a process cannot receive";
  for (size_t i = 0; i < spec.argv.size(); ++i) {
    if (spec.argv[i].find('\0') != std::string::npos) {
      return FailedError("exec: command argument " + std::to_string(i) + " \"" + shown(spec.argv[i]) + "\"" + kWhy);
    }
  }
  if (spec.work_dir.find('\0') != std::string::npos) {
    return FailedError("exec: workdir \"" + shown(spec.work_dir) + "\"" + kWhy);
  }
  if (!env.nul_key.empty()) {
    return FailedError("exec: environment variable \"" + shown(env.nul_key) + "\"" + kWhy);
  }
  return Ok();
}

// /proc/<pid>/cmdline is readable by every local user. A script (dist://script, `SHELL -c
// TEXT`) reaches the shell through a 0600 file in the step's private temp dir instead; an exec
// step whose own command carries a masked value gets a warning in the log.
Status KeepSecretsOffArgv(Engine::State& st, const LoadedStep& step, StepFiles& files,
                          const std::string& name, std::vector<std::string>& argv) {
  if (step.file.source == "dist://script" && argv.size() == 3 && argv[1] == "-c") {
    std::string path = files.script();
    Status written = WriteFile(path, argv[2], 0600);
    if (!written.ok() && written.error().kind == Error::Kind::kExhausted) {
      st.sup.ReleaseSpareFds();  // the supervisor's fds kept for speed, then once more
      written = WriteFile(path, argv[2], 0600);
    }
    SR_RETURN_IF_ERROR(written);
    argv = {argv[0], path};
    return Ok();
  }
  for (const auto& secret : st.options.secrets) {
    if (secret.size() < expr::Masker::kMinSecretLength) continue;
    for (const auto& arg : argv) {
      if (arg.find(secret) != std::string::npos) {
        st.Log("warning: the command of step \"" + name + "\" contains a masked value; other "
               "local users can read it in the process list (use env or a script: step)");
        return Ok();
      }
    }
  }
  return Ok();
}

// Whether any text of the definition that RunExec expands holds an expression (or something
// that only looks like one, such as the `$${{` escape: then the view is built for nothing).
bool HasExpression(const stepfile::Definition& def) {
  auto has = [](const std::string& s) { return s.find("${{") != std::string::npos; };
  for (const auto& [k, v] : def.env) {
    if (has(v)) return true;
  }
  for (const auto& a : def.command) {
    if (has(a)) return true;
  }
  return has(def.work_dir);
}

}  // namespace

Task<StepOutcome> RunExec(Engine::State& st, Scope& caller, const LoadedStep& step,
                          const json& inputs, std::shared_ptr<const EnvRecord> env,
                          ResultNode* node) {
  const stepfile::Definition& def = step.file.definition;
  // As the Go runner: the line comes first (it exists even when expanding env fails), and the
  // step's files exist and are in the view before its `env:` is expanded.
  st.Log("Running step \"" + node->result.step().name() + "\"");
  Scope self = StepScope(caller, step, inputs);
  auto files = StepFiles::Open(
      st.files, node->files_base.path.empty() ? st.files.Take() : std::move(node->files_base));
  if (!files.ok()) co_return StepOutcome{true, files.error()};
  // Only an expression reads the view; building it copies the whole environment and every
  // earlier output, so a definition without one (a fixed command, plain env) skips it.
  const bool expressions = HasExpression(def);
  json view = expressions ? st.View(self, env->vars) : json::object();
  if (expressions) {
    view["output_file"] = files->output();
    view["export_file"] = files->exports();
    ChargeWork(st, inputs);
    co_await YieldIfBusy(st);
  }
  auto def_env = co_await ExpandDefinitionEnv(st, def, view);
  if (!def_env.ok()) co_return StepOutcome{true, def_env.error()};
  node->env = def_env->empty() ? std::move(env) : ShareEnv(st, {&env->vars, &*def_env});
  if (expressions) view["env"] = node->env->vars;

  ProcessSpec spec;
  for (const auto& raw : def.command) {
    auto arg = co_await ExpandStringCharged(st, raw, view);
    if (!arg.ok()) {
      co_return StepOutcome{true, arg.error().Wrap("exec: interpolate command argument \"" + raw + "\"")};
    }
    spec.argv.push_back(std::move(*arg));
  }
  auto work_dir = co_await ExpandStringCharged(st, def.work_dir, view);
  if (!work_dir.ok()) {
    co_return StepOutcome{true, work_dir.error().Wrap("exec: interpolate workdir \"" + def.work_dir + "\"")};
  }
  spec.work_dir = work_dir->empty() ? st.options.work_dir : *work_dir;
  if (Status whole = RefuseNul(spec, *node->env); !whole.ok()) co_return StepOutcome{true, whole.error()};
  spec.shared_env = node->env->entries;
  spec.merge_stderr = st.options.merge_stderr;
  auto* exec_result = node->result.mutable_exec_result();
  for (const auto& a : spec.argv) exec_result->add_command(a);
  if (Status kept = KeepSecretsOffArgv(st, step, *files, node->result.step().name(), spec.argv);
      !kept.ok()) {
    co_return StepOutcome{true, kept.error().Wrap("exec")};
  }
  exec_result->set_work_dir(spec.work_dir);
  exec_result->set_exit_code(-1);

  CancelSource& cancel = *caller.cancel;
  if (cancel.requested()) co_return StepOutcome{true, CancelError(cancel, "exec: not started")};
  auto acct = BeginAccounting(st, self, def);
  if (!acct.ok()) co_return StepOutcome{true, acct.error()};
  spec.resources = acct->group;
  StepStop stop;
  if (def.cancel && def.cancel->signal) stop.signal = *def.cancel->signal;
  if (def.cancel) stop.grace = def.cancel->grace;
  spec.leftovers = LeftoverPolicy(stop, st.options.grace, st.options.leftover_grace);
  node->cancel = &cancel;

  // Output is masked per stream; a secret split across two writes is still caught.
  auto out_mask = std::make_shared<expr::Masker>(st.options.secrets);
  auto err_mask = std::make_shared<expr::Masker>(st.options.secrets);
  OutputSink& sink = st.sink;
  spec.output_paused = [&sink] { return sink.Full(); };
  spec.when_output_room = [&sink](std::function<void()> resume) { sink.WhenRoom(std::move(resume)); };
  if (out_mask->passthrough() && err_mask->passthrough()) {
    spec.move_output = [&sink](OutputStream s, int fd, size_t max) { return sink.Move(s, fd, max); };
  }
  std::optional<Error> runner_error;
  CancelSource::Registration registered;
  TreeExit exit = co_await AwaitCallback<TreeExit>([&](std::function<void(TreeExit)> resume) {
    auto tree = st.sup.Spawn(
        spec,
        [&sink, out_mask, err_mask](OutputStream s, std::string_view bytes) {
          auto& m = s == OutputStream::kStdout ? *out_mask : *err_mask;
          if (m.passthrough()) {
            sink.Write(s, bytes);  // no secret: the bytes as read, not a copy
            return;
          }
          std::string masked = m.Feed(bytes);
          if (!masked.empty()) sink.Write(s, masked);
        },
        [resume](TreeExit e) { resume(std::move(e)); });
    if (!tree.ok()) {
      runner_error = tree.error();
      resume(TreeExit{});
      return;
    }
    node->tree = *tree;
    // From here on the job's cancel policy stops this tree directly (engine/cancel.h).
    registered = cancel.Register(*tree, stop);
  });
  registered = {};
  const pid_t main_pid = node->tree ? node->tree->pid() : 0;
  node->tree.reset();
  for (auto [s, m] : {std::pair{OutputStream::kStdout, out_mask}, {OutputStream::kStderr, err_mask}}) {
    std::string rest = m->Flush();
    if (!rest.empty()) sink.Write(s, rest);
  }
  // Every process of the tree is gone now. Without a stop, none outlived the main process
  // either, so nobody can write to the files any more: empty ones can serve the next step.
  files->Inspect(!exit.stop.has_value());
  if (runner_error) co_return StepOutcome{true, runner_error->Wrap("exec")};
  exec_result->set_exit_code(exit.exit_code);
  if (auto oom = EndAccounting(st, *acct, exit, main_pid, node)) co_return StepOutcome{true, oom};

  if (exit.stop) {
    *node->result.mutable_termination() = StepTermination(exit, cancel);
  } else if (auto warned = WarningTermination(exit)) {
    // Nobody stopped the step, yet the runner's warning signal ended some of it: recorded.
    *node->result.mutable_termination() = std::move(*warned);
  }
  if (!exit.stop_requested && node->result.has_termination()) {
    // Both lines when the main process died of the warning before its children did: those were
    // then stopped as leftovers (the warning's line was lost behind the leftovers').
    const std::string& name = node->result.step().name();
    if (auto line = WarningLine(name, node->result.termination())) st.Log(*line);
    if (auto line = exit.stop ? LeftoversLine(name, node->result.termination()) : std::nullopt) {
      st.Log(*line);
    }
  }
  if (exit.stop_requested) {
    std::string how = exit.term_signal ? "signal: " + SignalName(exit.term_signal)
                                       : "exit status " + std::to_string(exit.exit_code);
    co_return StepOutcome{true, CancelError(cancel, "exec: " + how)};
  }
  if (exit.spawn_error) co_return StepOutcome{true, exit.spawn_error->Wrap("exec")};
  if (exit.term_signal) {
    co_return StepOutcome{true, FailedError("exec: signal: " + SignalName(exit.term_signal) +
                                            WarningEndNote(exit, main_pid))};
  }
  if (exit.exit_code != 0) {
    co_return StepOutcome{true, FailedError("exec: exit status " + std::to_string(exit.exit_code) +
                                            WarningEndNote(exit, main_pid))};
  }
  Status read = ReadStepFiles(st, step.file.spec, step.any_outputs, *files, node);
  if (!read.ok()) co_return StepOutcome{true, read.error()};
  co_return StepOutcome{true, std::nullopt};
}

}  // namespace sr::engine
