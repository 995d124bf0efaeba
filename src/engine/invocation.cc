// Running one invocation: load the referenced step, check and expand its inputs and env in the
// caller's view, then run it and record the result (reference.md 3.2, contract 4.6).
#include <charconv>
#include <string_view>

#include "engine/internal.h"
#include "engine/results.h"
#include "engine/usage.h"
#include "expr/expr.h"

namespace sr::engine {
namespace {

// "step "<name>": <message>". A step that invokes itself would repeat its name once per level
// (64 before the nesting limit stops it): a run of the same name is counted instead.
Error WrapInStep(const std::string& name, const Error& e) {
  const std::string head = "step \"" + name + "\"";
  const std::string& m = e.message;
  if (m.rfind(head + ": ", 0) == 0) return {e.kind, head + " (nested 2 times): " + m.substr(head.size() + 2)};
  static constexpr std::string_view kOpen = " (nested ", kTail = " times): ";
  if (m.rfind(head, 0) == 0 && std::string_view(m).substr(head.size()).starts_with(kOpen)) {
    const char* last = m.data() + m.size();
    int levels = 0;
    auto [after, ec] = std::from_chars(m.data() + head.size() + kOpen.size(), last, levels);
    if (ec == std::errc() && std::string_view(after, last - after).starts_with(kTail)) {
      return {e.kind, head + " (nested " + std::to_string(levels + 1) + " times): " + (after + kTail.size())};
    }
  }
  return e.Wrap(head);
}

// A load failure lies in the invocation itself (its reference, its inputs, their expressions,
// its env): the error names the file:line of what is wrong, the item's or (`at`) the line of the
// one input or env entry it is about. It keeps its kind.
Error AtInvocation(const stepfile::Invocation& inv, const Error& e, const stepfile::Mark* at = nullptr) {
  const stepfile::Mark& where = at ? *at : inv.mark;
  Error out = e.Wrap("step \"" + inv.name + "\": failed to load");
  if (where.line > 0) out.message = where.ToString() + ": " + out.message;
  return out;
}

}  // namespace

Task<StepOutcome> RunInvocation(Engine::State& st, Scope& caller, const stepfile::Invocation& inv) {
  // A reference into caller.view: nothing else runs in this scope until this step is done.
  // Built (or brought up to date: that converts the whole environment) only when something here
  // reads it: a reference that is not a fixed local or dist path, inputs, env, a script's text.
  static const json kNoView = json::object();
  const bool fixed_ref = inv.step.protocol == stepfile::Reference::Protocol::kLocal ||
                         inv.step.protocol == stepfile::Reference::Protocol::kDist;
  const json* view_ptr = fixed_ref && inv.inputs.empty() && inv.env.empty()
                             ? &kNoView
                             : &ScopeView(st, caller, Overlay(caller.ambient_env, st.exports));
  co_await YieldIfBusy(st);

  auto loaded = co_await LoadReference(st, caller, inv.step, *view_ptr);
  // Whatever keeps the step from loading (a file that is not there, a dist name that is not
  // one, a dynamic reference's expression, a git fetch) is found at this item: its file:line.
  if (!loaded.ok()) co_return StepOutcome{false, AtInvocation(inv, loaded.error())};
  const stepfile::Spec& spec = loaded->file.spec;

  // A script step's text sees the script step's own output and export files: that is how a
  // script writes outputs (docs/step-language.md). Set in the cached view only while expanding.
  // Taken from the job's pool now; given back if the step never gets to run.
  struct FilesBase {
    StepFilePool* pool = nullptr;
    StepFilePool::Base base;
    ~FilesBase() {
      if (pool && base.exists) pool->Give(std::move(base.path));
    }
  } files_base;
  if (loaded->own_files) {
    if (view_ptr == &kNoView) {
      view_ptr = &ScopeView(st, caller, Overlay(caller.ambient_env, st.exports));
    }
    files_base.pool = &st.files;
    files_base.base = st.files.Take();
    (*caller.view.value)["output_file"] = files_base.base.path + ".out";
    (*caller.view.value)["export_file"] = files_base.base.path + ".env";
  }
  struct Unset {
    json* view;
    void Now() {
      if (view) {
        view->erase("output_file");
        view->erase("export_file");
      }
      view = nullptr;
    }
    ~Unset() { Now(); }
  } unset{loaded->own_files ? caller.view.value.get() : nullptr};

  json inputs = json::object();
  for (const auto& [name, raw] : inv.inputs) {
    auto decl = spec.inputs.find(name);
    if (loaded->any_inputs) {
      auto value = co_await ExpandCharged(st, raw, *view_ptr);
      if (!value.ok()) {
        co_return StepOutcome{false, AtInvocation(inv, AsFailure(value.error()).Wrap("expand input \"" + name + "\""),
                                                  &inv.InputMark(name))};
      }
      inputs[name] = std::move(*value);
      continue;
    }
    if (decl == spec.inputs.end()) {
      co_return StepOutcome{
          false, AtInvocation(inv, FailedError("step does not accept input with name \"" + name + "\""),
                              &inv.InputMark(name))};
    }
    Result<json> value = json();
    if (auto text = inv.text_inputs.find(name); text != inv.text_inputs.end()) {
      // `run REF --inputs k=v`: the text is typed by the declared type (`who=123` is "123").
      auto expanded = co_await ExpandStringCharged(st, text->second, *view_ptr);
      if (!expanded.ok()) {
        value = expanded.error();
      } else if (auto typed = stepfile::ValueFromText(decl->second.type, *expanded); typed.ok()) {
        value = std::move(*typed);
      } else {
        co_return StepOutcome{false, AtInvocation(inv, AsFailure(typed.error()).Wrap("input \"" + name + "\""),
                                                  &inv.InputMark(name))};
      }
    } else {
      value = co_await ExpandCharged(st, raw, *view_ptr);
    }
    if (!value.ok()) {
      co_return StepOutcome{false, AtInvocation(inv, AsFailure(value.error()).Wrap("expand input \"" + name + "\""),
                                                &inv.InputMark(name))};
    }
    Status typed = stepfile::CheckType(decl->second.type, *value);
    if (typed.ok() && loaded->check_input) typed = loaded->check_input(name, *value);
    if (!typed.ok()) {
      co_return StepOutcome{false, AtInvocation(inv, AsFailure(typed.error()).Wrap("input \"" + name + "\""),
                                                &inv.InputMark(name))};
    }
    inputs[name] = std::move(*value);
  }
  // Go's words and kind: a step failure found while running (RunStep refuses a root step's
  // missing input as a usage error).
  for (const auto& [name, decl] : spec.inputs) {
    if (!loaded->any_inputs && !decl.default_value && !inputs.contains(name)) {
      co_return StepOutcome{false, AtInvocation(inv, FailedError("failed to parse spec definition: input \"" +
                                                                 name + "\" required, but not defined"))};
    }
  }
  Env inv_env;
  for (const auto& [k, raw] : inv.env) {
    auto value = co_await ExpandStringCharged(st, raw, *view_ptr);
    if (!value.ok()) {
      co_return StepOutcome{false, AtInvocation(inv, AsFailure(value.error()).Wrap("env \"" + k + "\""),
                                                &inv.EnvMark(k))};
    }
    inv_env[k] = std::move(*value);
  }

  unset.Now();
  ResultNode* node = caller.node->Add();
  node->files_base = std::move(files_base.base);
  files_base.pool = nullptr;
  proto::Step* step = node->result.mutable_step();
  step->set_name(inv.name);
  *step->mutable_step() = ToProtoReference(inv.step);
  for (auto it = inputs.begin(); it != inputs.end(); ++it) {
    (*step->mutable_inputs())[it.key()] = ToProtoValue(it.value());
  }
  for (const auto& [k, v] : inv_env) (*step->mutable_env())[k] = v;

  // An item with its own limits or timeout runs in a scope of its own: a resource group below
  // the caller's, and a cancel source that the caller's cancel and the item's timer both feed.
  Scope* scope = &caller;
  Scope item_scope;
  std::optional<CancelSource> item_cancel;  // a domain below the caller's (engine/cancel.h)
  std::optional<EventLoop::TimerId> timer;
  bool timed_out = false;
  if (inv.resources || inv.timeout) {
    item_scope = ItemScope(caller);
    scope = &item_scope;
    if (inv.resources) {
      auto group = EnterGroup(st, item_scope, ToLimits(*inv.resources), "");
      if (!group.ok()) {
        node->result.set_status(proto::StepResult::failure);
        co_return StepOutcome{true, group.error().Wrap("step \"" + inv.name + "\""), node};
      }
    }
    if (inv.timeout) {
      item_cancel.emplace(*caller.cancel, CancelSource::Follow::kAll);
      item_scope.cancel = &*item_cancel;
      // The same graceful cancel a job cancel gives, to this item's subtree only; the step's
      // `cancel:` override applies through the policy (StopOrderFor).
      Engine::State* state = &st;
      const std::string name = inv.name;
      const Duration limit = *inv.timeout;
      timer = st.loop.After(limit, [state, name, limit, &item_cancel, &timed_out] {
        timed_out = true;
        auto effect = item_cancel->Cancel(
            CancelRequest::Graceful(CancelReason::kStepTimedOut, state->options.grace));
        state->Log("step-runner: step \"" + name + "\" timed out after " + FormatDuration(limit) +
                   ": cancel signal to " + std::to_string(effect.processes) + " processes, grace " +
                   FormatDuration(effect.grace.value_or(state->options.grace)));
      });
    }
  }

  if (st.observer) st.observer->StepStarted(inv.name);
  auto started = Clock::now();
  StepOutcome out =
      co_await RunStep(st, *scope, std::move(*loaded), std::move(inputs), std::move(inv_env), node);
  if (timer) st.loop.CancelTimer(*timer);
  // Every cancel that wrote its first line writes its last (contract 2, termination record):
  // for the item's own timeout, once its subtree has ended, before `finally:` runs.
  if (timed_out) st.Log(CancelFinishedLine(SubtreeTermination(st, *node), inv.name));
  if (timed_out && out.error && !caller.cancel->requested()) {
    // Contract 8.4: the step failed because its own time ran out, whatever its processes said.
    out.error = FailedError("timed out after " + FormatDuration(*inv.timeout));
    node->result.set_status(proto::StepResult::failure);
  }
  if (st.observer) {
    st.observer->StepFinished(inv.name, node->result.status(), Clock::now() - started, node->result);
  }
  if (out.error) out.error = WrapInStep(inv.name, *out.error);
  out.has_result = true;
  out.node = node;
  co_return out;
}

Task<StepOutcome> RunStep(Engine::State& st, Scope& caller, LoadedStep step, json inputs,
                          Env invocation_env, ResultNode* node) {
  for (const auto& [name, decl] : step.file.spec.inputs) {
    if (inputs.contains(name)) continue;
    if (!decl.default_value) {
      co_return StepOutcome{false, InvalidError("failed to parse spec definition: input \"" +
                                                name + "\" required, but not defined")};
    }
    inputs[name] = *decl.default_value;  // defaults are never expanded
  }
  ChargeWork(st, inputs);
  co_await YieldIfBusy(st);
  // Sensitive inputs are masked whoever set them: caller, default, `run --inputs` (the root).
  for (const auto& [name, decl] : step.file.spec.inputs) {
    if (decl.sensitive && inputs.contains(name) && inputs[name].is_string()) {
      st.options.secrets.push_back(inputs[name].get<std::string>());
    }
  }
  *node->result.mutable_specdefinition() = ToProtoSpecDefinition(step.file);
  ChargeWork(st, inputs);  // the defaults again, as protobuf values
  co_await YieldIfBusy(st);
  node->result.set_status(proto::StepResult::running);
  // Usually the environment of the step before: shared with it, not copied (ShareEnv).
  std::shared_ptr<const EnvRecord> env =
      ShareEnv(st, {&caller.ambient_env, &st.exports, &invocation_env});
  const auto started = WallNow();
  StepOutcome out;
  if (step.builtin) {
    out = co_await step.builtin(st, caller, inputs, env->vars, node);
  } else if (step.file.definition.kind == stepfile::Definition::Kind::kExec) {
    out = co_await RunExec(st, caller, step, inputs, std::move(env), node);
  } else {
    // Children see the invocation env as ambient env, under later exports (contract 4.4).
    Scope sequence_caller = CallerScope(caller);
    sequence_caller.ambient_env = Overlay(caller.ambient_env, invocation_env);
    out = co_await RunSequence(st, sequence_caller, step, inputs, env->vars, node);
    AggregateUsage(started, WallNow(), node);
  }
  if (!out.error) {
    node->result.set_status(proto::StepResult::success);
  } else if (out.error->kind == Error::Kind::kCancelled ||
             out.error->kind == Error::Kind::kTimedOut) {
    node->result.set_status(proto::StepResult::cancelled);
  } else {
    node->result.set_status(proto::StepResult::failure);
  }
  out.has_result = true;
  co_return out;
}

const json& ScopeView(Engine::State& st, Scope& scope, const Env& env) {
  if (!scope.view.value) {
    scope.view.value = std::make_unique<json>(st.View(scope, env));
    ChargeWork(st, scope.inputs);
  } else {
    (*scope.view.value)["env"] = env;  // exports and the ambient env change between steps
  }
  return *scope.view.value;
}

void SetStepOutputs(Scope& scope, const std::string& name, json outputs) {
  json entry = json::object();
  entry["outputs"] = std::move(outputs);  // an initializer list would copy them
  if (scope.view.value) (*scope.view.value)["steps"][name] = entry;
  scope.steps[name] = std::move(entry);
}

namespace {
// What every scope takes from the one it runs in: its cancel, `run` and resource group.
Scope Inherited(const Scope& caller) {
  Scope s;
  s.run = caller.run;
  s.cancel = caller.cancel;
  s.group = caller.group;
  s.limits = caller.limits;
  return s;
}
}  // namespace

Scope StepScope(const Scope& caller, const LoadedStep& step, const json& inputs) {
  Scope self = Inherited(caller);
  self.step_dir = step.dir;
  self.inputs = inputs;
  return self;
}

Scope CallerScope(const Scope& caller) {
  Scope s = Inherited(caller);
  s.step_dir = caller.step_dir;
  s.ambient_env = caller.ambient_env;
  s.node = caller.node;
  s.definition = caller.definition;
  return s;
}

Scope ItemScope(const Scope& caller) {
  Scope s = CallerScope(caller);
  s.inputs = caller.inputs;  // an item's own expressions may read them
  return s;
}

Error CancelError(const CancelSource& cancel, const std::string& what) {
  const auto reason = cancel.current() ? cancel.current()->reason : CancelReason::kRequested;
  // A step's own timeout is that step's failure (contract 8.4), not the job's cancel.
  if (reason == CancelReason::kStepTimedOut) return FailedError(what + " (timed out)");
  // A diagnose step killed at the job's end: stopped by the runner, like a cancelled step; the
  // job's outcome is its steps', never this (diagnose errors are not the job's).
  if (reason == CancelReason::kJobEnded) return Error{Error::Kind::kCancelled, what + " (job ended)"};
  bool timed_out = reason == CancelReason::kTimedOut;
  return Error{timed_out ? Error::Kind::kTimedOut : Error::Kind::kCancelled,
               what + (timed_out ? " (timed out)" : " (cancelled)")};
}

}  // namespace sr::engine
