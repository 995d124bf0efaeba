// In-process built-in steps. They start no process, and notice a cancel at once (they wait on
// the event loop, never in a blocking call).
//   dist://sleep    input `duration` ("1s", "250ms"): waits, or ends as cancelled on a cancel
//   dist://outputs  any inputs: they become the step's outputs unchanged
#include "engine/internal.h"
#include "engine/results.h"

namespace sr::engine {
namespace {

LoadedStep WithSpec(const std::string& text, const std::string& source, BuiltinFn fn) {
  auto file = stepfile::ParseStepFile(text, source);
  LoadedStep step;
  if (file.ok()) step.file = std::move(*file);  // the texts are ours; tests parse them
  step.builtin = std::move(fn);
  return step;
}

Result<Duration> SleepDuration(const json& inputs) {
  auto d = ParseDuration(inputs.value("duration", ""));
  if (!d.ok()) return d.error().Wrap("input \"duration\"");
  return d;
}

Task<StepOutcome> Sleep(Engine::State& st, Scope& caller, const json& inputs, const Env&,
                        ResultNode*) {
  auto d = SleepDuration(inputs);  // checked when the item loaded (check_input)
  if (!d.ok()) co_return StepOutcome{true, d.error()};
  CancelSource& cancel = *caller.cancel;
  EventLoop& loop = st.loop;
  std::optional<EventLoop::TimerId> timer;
  CancelSource::Subscription on_cancel;
  bool cancelled = co_await AwaitCallback<bool>([&](std::function<void(bool)> resume) {
    // Either the timer or the cancel resumes us; whichever comes first disarms the other.
    auto done = std::make_shared<bool>(false);
    timer = loop.After(*d, [resume, done] {
      if (!*done) {
        *done = true;
        resume(false);
      }
    });
    on_cancel = cancel.Subscribe([resume, done](const CancelRequest&) {
      if (!*done) {
        *done = true;
        resume(true);
      }
    });
  });
  on_cancel = {};
  if (timer) loop.CancelTimer(*timer);
  if (cancelled) co_return StepOutcome{true, CancelError(cancel, "sleep")};
  co_return StepOutcome{true, std::nullopt};
}

Task<StepOutcome> Outputs(Engine::State&, Scope&, const json& inputs, const Env&,
                          ResultNode* node) {
  for (auto it = inputs.begin(); it != inputs.end(); ++it) {
    (*node->result.mutable_outputs())[it.key()] = ToProtoValue(it.value());
  }
  co_return StepOutcome{true, std::nullopt};
}

}  // namespace

std::optional<LoadedStep> FindBuiltin(const std::string& name) {
  // Parsed once per process (yaml-cpp costs more than the builtin itself); callers get copies.
  if (name == "sleep") {
    static const LoadedStep sleep = [] {
      LoadedStep step = WithSpec("spec:\n  inputs:\n    duration: {type: string}\n---\nrun: []\n",
                                 "dist://sleep", Sleep);
      step.check_input = [](const std::string& name, const json& value) -> Status {
        if (name != "duration" || !value.is_string()) return Ok();
        auto d = ParseDuration(value.get<std::string>());
        if (!d.ok()) return d.error();
        return Ok();
      };
      return step;
    }();
    return sleep;
  }
  if (name == "outputs") {
    static const LoadedStep outputs = [] {
      LoadedStep step =
          WithSpec("spec:\n  outputs: delegate\n---\nrun: []\n", "dist://outputs", Outputs);
      step.any_inputs = true;
      return step;
    }();
    return outputs;
  }
  return FindOciBuiltin(name);
}

}  // namespace sr::engine
