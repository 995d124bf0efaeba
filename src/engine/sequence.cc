// A sequence step: run its invocations in order, then its `finally:` cleanup, then compute its
// outputs (reference.md 3.4, contract 4.7).
#include "engine/internal.h"
#include "engine/results.h"
#include "engine/usage.h"
#include "expr/expr.h"

namespace sr::engine {
namespace {

// Sequences nested deeper than this fail. Only sequences nest (an exec step is a leaf), so this
// bounds how deeply steps invoke steps: a step that invokes itself would otherwise recurse until
// memory ran out. Deep enough for any real composition (docs/limits.md).
constexpr size_t kMaxSequenceNesting = 64;

const char* RunStatusName(const std::optional<Error>& e) {
  if (!e) return "success";
  if (e->kind == Error::Kind::kCancelled) return "cancelled";
  if (e->kind == Error::Kind::kTimedOut) return "timed_out";
  return "failure";
}

// A load failure's message names the item's file:line (most do: a missing file, wrong inputs);
// one that does not (an expression, a referenced file that does not parse) gets it in front.
std::string AtItem(const stepfile::Invocation& inv, const std::string& message) {
  if (inv.mark.line <= 0) return message;
  const std::string at = inv.mark.ToString() + ": ";
  return message.starts_with(at) ? message : at + message;
}

}  // namespace

Task<std::optional<Error>> RunList(Engine::State& st, Scope& scope,
                                   const std::vector<stepfile::Invocation>& list, ListKind kind) {
  const bool keep_going = kind != ListKind::kRun;
  // Whether the list's first error is reported by the caller (the rest would be lost).
  const bool first_reported = kind == ListKind::kRun || kind == ListKind::kFinally;
  std::optional<Error> first_error;
  auto skip_rest = [&st, &list](size_t from) {
    if (!st.observer) return;
    for (size_t i = from; i < list.size(); ++i) st.observer->StepSkipped(list[i].name);
  };
  for (size_t index = 0; index < list.size(); ++index) {
    const stepfile::Invocation& inv = list[index];
    if (scope.cancel->requested()) {
      if (!first_error) first_error = CancelError(*scope.cancel, "not started");
      skip_rest(index);
      break;
    }
    StepOutcome out = co_await RunInvocation(st, scope, inv);
    if (out.node) {
      const auto& r = out.node->result;
      json outputs = json::object();
      for (const auto& [k, v] : r.outputs()) outputs[k] = FromProtoValue(v);
      SetStepOutputs(scope, inv.name, std::move(outputs));
    }
    if (out.error) {
      // Cleanup goes on past a failure: each one is said here, unless it is the one the caller
      // reports. One that failed to load has no result at all, and one that failed to start
      // (no fd left, its temp dir gone) printed nothing: the log would not show them otherwise.
      if (keep_going && (first_error || !first_reported)) {
        st.Log(std::string("step-runner: ") + (kind == ListKind::kDiagnose ? "diagnose" : "finally") +
               ": " + AtItem(inv, out.error->message));
      }
      if (!first_error) first_error = out.error;
      if (!keep_going) {
        skip_rest(index + 1);
        break;
      }
    }
  }
  co_return first_error;
}

Task<StepOutcome> RunSequence(Engine::State& st, Scope& caller, const LoadedStep& step,
                              const json& inputs, Env env, ResultNode* node) {
  const stepfile::Definition& def = step.file.definition;
  if (st.running_sequences.size() >= kMaxSequenceNesting) {
    co_return StepOutcome{true, FailedError("steps nested more than " +
                                            std::to_string(kMaxSequenceNesting) +
                                            " levels deep (does a step invoke itself?)")};
  }
  if (Status reads = CheckOutputReads(st, step.dir, def); !reads.ok()) {
    co_return StepOutcome{true, reads.error()};
  }
  Scope self = StepScope(caller, step, inputs);
  self.node = node;
  self.definition = &def;
  if (def.resources) {
    // The sequence's group holds its steps' groups: its limit covers its whole subtree.
    auto group = EnterGroup(st, self, ToLimits(*def.resources), "");
    if (!group.ok()) co_return StepOutcome{true, group.error()};
  }
  const json def_view = st.View(self, env);
  ChargeWork(st, inputs);
  co_await YieldIfBusy(st);
  auto def_env = co_await ExpandDefinitionEnv(st, def, def_view);
  if (!def_env.ok()) co_return StepOutcome{true, def_env.error()};
  self.ambient_env = Overlay(caller.ambient_env, *def_env);
  for (const auto& [k, v] : Overlay(env, *def_env)) (*node->result.mutable_env())[k] = v;

  node->cancel = caller.cancel;
  st.running_sequences.push_back(&self);
  std::optional<Error> error = co_await RunList(st, self, def.run, ListKind::kRun);

  if (!def.finally.empty()) {
    // Cleanup has its own cancel domain: the cancel that ended `run:` does not stop it, but a
    // forced cancel does, and so does the end of its own budget once a cancel has come.
    CancelSource cleanup(*caller.cancel, CancelSource::Follow::kForcedOnly);
    const Duration budget = def.finally_timeout.value_or(std::chrono::seconds(30));
    std::optional<EventLoop::TimerId> budget_timer;
    EventLoop& loop = st.loop;
    const Duration grace = st.options.grace;
    CancelSource::Subscription start_budget = caller.cancel->Subscribe([&](const CancelRequest&) {
      if (budget_timer) return;
      budget_timer = loop.After(budget, [&cleanup, &st, budget, grace] {
        // Said, because the finally: steps still to come are then skipped.
        st.Log("step-runner: finally: its budget of " + FormatDuration(budget) +
               " (finally_timeout) ran out: cancelling the cleanup");
        // The cleanup's own timeout ran out, as a step's own `timeout:` does: not the job's.
        cleanup.Cancel(CancelRequest::Graceful(CancelReason::kStepTimedOut, grace));
      });
    });
    Scope cleanup_scope = self;
    cleanup_scope.cancel = &cleanup;
    cleanup_scope.run["status"] = RunStatusName(error);
    cleanup_scope.run["termination"] = TerminationValue(st, *node);
    std::optional<Error> cleanup_error = co_await RunList(
        st, cleanup_scope, def.finally, error ? ListKind::kFinallyAfterFailure : ListKind::kFinally);
    start_budget = {};
    if (budget_timer) loop.CancelTimer(*budget_timer);
    self.steps = std::move(cleanup_scope.steps);
    self.view = {};
    if (!error && caller.cancel->requested()) {
      // A cancel or timeout that came while the cleanup ran ends the job as one (contract
      // section 2: 130 / 124), also when a cleanup step then failed: the budget the cancel
      // started may be what stopped it. That failure is said here; it would be lost otherwise.
      if (cleanup_error) st.Log("step-runner: finally: " + cleanup_error->message);
      error = CancelError(*caller.cancel, "stopped while finally: ran");
    }
    // A failing cleanup fails a successful run, but never turns a cancel into anything else.
    if (!error && cleanup_error) error = cleanup_error;
  }
  st.running_sequences.pop_back();
  if (error) co_return StepOutcome{true, error};

  const json out_view = st.View(self, Overlay(self.ambient_env, st.exports));
  if (step.file.spec.delegate_outputs) {
    const std::string target = def.delegate.value_or("");
    bool found = false;
    for (const auto& child : node->children) {
      if (child->result.step().name() == target) {
        *node->result.mutable_outputs() = child->result.outputs();
        found = true;
      }
    }
    if (!found) {
      co_return StepOutcome{true, FailedError("outputs: delegate: could not find step with name \"" +
                                              target + "\"")};
    }
  } else if (def.outputs.is_object()) {
    for (auto it = def.outputs.begin(); it != def.outputs.end(); ++it) {
      auto v = co_await ExpandCharged(st, it.value(), out_view);
      if (!v.ok()) co_return StepOutcome{true, v.error().Wrap("outputs: expand \"" + it.key() + "\"")};
      (*node->result.mutable_outputs())[it.key()] = ToProtoValue(*v);
    }
  }
  co_return StepOutcome{true, std::nullopt};
}

}  // namespace sr::engine
