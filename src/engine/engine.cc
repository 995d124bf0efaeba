#include "engine/engine.h"

#include <google/protobuf/descriptor.pb.h>

#include "engine/internal.h"
#include "engine/results.h"
#include "engine/usage.h"
#include "expr/mask.h"
#include "util/signals.h"

namespace sr {

using engine::json;

Engine::Engine(EventLoop& loop, Supervisor& supervisor, OutputSink& sink, Observer* observer)
    : state_(std::make_unique<State>(loop, supervisor, sink, observer)) {}

Engine::~Engine() = default;

json Engine::State::View(const engine::Scope& scope, const engine::Env& env) const {
  json view = json::object();
  view["inputs"] = scope.inputs;
  view["env"] = env;
  view["job"] = options.job_vars;
  view["steps"] = scope.steps;
  view["step_dir"] = scope.step_dir;
  view["work_dir"] = options.work_dir;
  view["run"] = scope.run;
  return view;
}

std::string Engine::State::Mask(std::string_view text) const {
  if (options.secrets.empty()) return std::string(text);
  return expr::MaskAll(text, options.secrets);
}

void Engine::State::Log(const std::string& line) {
  sink.Write(OutputStream::kStdout, Mask(line + "\n"));
}

Task<RunOutcome> Engine::Run(stepfile::StepFile root, RunOptions options) {
  State& st = *state_;
  st.options = std::move(options);
  // Go's CI_STEPS_DEBUG=true may also come as a job variable or in the job's environment:
  // settled once here, not looked up again for every step's output and export files.
  for (const auto* vars : {&st.options.job_vars, &st.options.base_env}) {
    if (st.options.steps_debug) break;
    if (auto it = vars->find("CI_STEPS_DEBUG"); it != vars->end()) {
      st.options.steps_debug = it->second == "true";
      break;
    }
  }
  std::vector<std::string> git_env;
  for (const auto& [k, v] : st.options.base_env) git_env.push_back(k + "=" + v);
  // Never let git stop to ask for credentials on a terminal: a CI step has no one to answer.
  git_env.push_back("GIT_TERMINAL_PROMPT=0");
  st.git = std::make_unique<engine::GitCache>(
      st.sup, st.options.cache_dir, std::move(git_env),
      [&st](const TreeExit& exit, const CancelSource& cancel) {
        st.helper_stops.push_back(engine::StepTermination(exit, cancel));
      });

  engine::Scope top;
  top.step_dir = st.options.root_step_dir;
  top.ambient_env = st.options.base_env;
  top.cancel = &st.job_cancel;
  top.node = nullptr;
  if (st.options.resources.any()) {
    // The job's group holds every step's: job-wide limits cover the whole run.
    auto group = engine::EnterGroup(st, top, st.options.resources, "job");
    if (!group.ok()) co_return RunOutcome{proto::StepResult(), group.error()};
  }
  json inputs = json::object();
  for (auto it = st.options.root_inputs.begin(); it != st.options.root_inputs.end(); ++it) {
    auto decl = root.spec.inputs.find(it.key());
    std::optional<Error> bad;
    if (decl == root.spec.inputs.end()) {
      bad = InvalidError("step does not accept input with name \"" + it.key() + "\"");
    } else if (auto typed = stepfile::CheckType(decl->second.type, it.value()); !typed.ok()) {
      bad = typed.error().Wrap("input \"" + it.key() + "\"");
      bad->kind = Error::Kind::kInvalid;
    }
    if (bad) co_return RunOutcome{proto::StepResult(), bad};
    inputs[it.key()] = it.value();
  }
  engine::LoadedStep step;
  step.file = std::move(root);
  step.dir = st.options.root_step_dir;
  // A root exec step is a step too (a root sequence only holds its steps).
  const bool root_exec = step.file.definition.kind == stepfile::Definition::Kind::kExec;
  const std::string root_place = step.file.definition.mark.ToString();
  if (root_exec && st.observer) st.observer->StepStarted("");
  const auto root_started = Clock::now();
  // The steps start on a turn of their own: several jobs started in one turn (the service posts
  // each Run's setup) do not add up their first steps' work in it (contract 7.4).
  engine::ChargeWork(st, engine::kWorkSlice);
  co_await engine::YieldIfBusy(st);
  engine::StepOutcome outcome =
      co_await engine::RunStep(st, top, std::move(step), std::move(inputs), engine::Env(), &st.root);
  if (root_exec && outcome.error) {
    // No item names a root exec step: its errors name its file and, as Go names the root step
    // (`Running step ""`), the step `""` — `s.yml:3:1: step "": exec: exit status 3`, as a
    // nested step's say `step "build": …`.
    outcome.error->message = root_place + ": step \"\": " + outcome.error->message;
  }
  // And the record of the end on one more: the steps' scopes and values were just freed.
  engine::ChargeWork(st, engine::kWorkSlice);
  co_await engine::YieldIfBusy(st);
  if (root_exec && st.observer && outcome.has_result) {
    st.observer->StepFinished("", st.root.result.status(), Clock::now() - root_started,
                              st.root.result);
  }
  if (st.pending_diagnose > 0) {
    // Diagnose steps never outlive the job: kill what is left and wait for it. Reason job_ended:
    // the job's steps ended by themselves. (After a cancel or the timeout, that cancel reached
    // them first, and its reason stays: CancelSource keeps a request's first reason.)
    std::set<CancelSource*> running = st.diagnose_cancels;
    size_t killed = 0;
    for (CancelSource* c : running) {
      killed += c->Cancel(CancelRequest::Forced(CancelReason::kJobEnded)).processes;
    }
    if (killed) {
      st.Log("step-runner: the job's steps have ended: SIGKILL to " + std::to_string(killed) +
             " processes of diagnose steps still running (job_ended)");
    }
    co_await AwaitCallback<bool>([&st](std::function<void(bool)> resume) {
      if (st.pending_diagnose == 0) return resume(true);
      st.on_diagnose_drained = [resume] { resume(true); };
    });
  }
  if (st.job_cancel.requested()) {
    if (auto t = engine::JobTermination(st)) st.Log(engine::CancelFinishedLine(*t));
  }
  RunOutcome out;
  if (st.options.final_result) out.result = Snapshot();
  out.error = outcome.error;
  if (out.error) out.error->message = st.Mask(out.error->message);
  co_return out;
}

namespace {
// Replaces secrets in every string of a message, whatever field holds it (env maps, inputs,
// outputs, argv, the spec/definition as written): reflection, so a new field cannot leak.
void MaskStrings(const Engine::State& st, google::protobuf::Message* m) {
  using google::protobuf::FieldDescriptor;
  const auto* refl = m->GetReflection();
  std::vector<const FieldDescriptor*> fields;
  refl->ListFields(*m, &fields);
  const bool map_entry = m->GetDescriptor()->options().map_entry();
  for (const FieldDescriptor* f : fields) {
    if (map_entry && f->name() == "key") continue;  // rewriting keys could merge two entries
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING && f->type() != FieldDescriptor::TYPE_BYTES) {
      if (f->is_repeated()) {
        for (int i = 0; i < refl->FieldSize(*m, f); ++i) {
          refl->SetRepeatedString(m, f, i, st.Mask(refl->GetRepeatedString(*m, f, i)));
        }
      } else {
        refl->SetString(m, f, st.Mask(refl->GetString(*m, f)));
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && f->is_map()) {
      // Map entries are rebuilt from masked copies: mutating them in place through the
      // repeated view desynchronises protobuf's map storage.
      std::vector<std::unique_ptr<google::protobuf::Message>> entries;
      for (int i = 0; i < refl->FieldSize(*m, f); ++i) {
        const auto& entry = refl->GetRepeatedMessage(*m, f, i);
        entries.emplace_back(entry.New());
        entries.back()->CopyFrom(entry);
        MaskStrings(st, entries.back().get());
      }
      refl->ClearField(m, f);
      for (const auto& entry : entries) refl->AddMessage(m, f)->CopyFrom(*entry);
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {  // also map entries, which are repeated key/value messages
        for (int i = 0; i < refl->FieldSize(*m, f); ++i) {
          MaskStrings(st, refl->MutableRepeatedMessage(m, f, i));
        }
      } else {
        MaskStrings(st, refl->MutableMessage(m, f));
      }
    }
  }
}
}  // namespace

void Engine::State::MaskMessage(google::protobuf::Message* m) const {
  if (!options.secrets.empty()) MaskStrings(*this, m);
}

std::shared_ptr<void> Engine::DetachResults() {
  State& st = *state_;
  auto root = std::make_shared<engine::ResultNode>(std::move(st.root));
  st.root = engine::ResultNode{};
  // Process trees belong to the loop: they stay here, only records go.
  std::vector<engine::ResultNode*> stack{root.get()};
  while (!stack.empty()) {
    engine::ResultNode* n = stack.back();
    stack.pop_back();
    n->tree.reset();
    n->cancel = nullptr;
    for (auto& c : n->children) stack.push_back(c.get());
  }
  return root;
}

proto::StepResult Engine::Snapshot() const {
  proto::StepResult r = state_->root.Snapshot();
  state_->MaskMessage(&r);
  return r;
}

CancelSource::Effect Engine::Cancel(CancelRequest request) {
  State& st = *state_;
  CancelSource::Effect e = st.job_cancel.Cancel(request);
  if (!e.changed) return e;
  // Merged over escalations: a forced cancel after a graceful one keeps the signals and grace
  // the processes got first.
  CancelSource::Effect& all = st.cancel_effect;
  all.changed = true;
  all.processes = std::max(all.processes, e.processes);
  all.signals.insert(e.signals.begin(), e.signals.end());
  const CancelRequest& r = *st.job_cancel.current();
  if (!all.grace) all.grace = e.grace;
  // Forced: SIGKILL came when it was forced (CancelRequest::grace() counts up to that).
  if (r.forced()) all.grace = std::min(all.grace.value_or(r.grace()), r.grace());
  const std::string reason = CancelReasonName(r.reason);
  if (r.forced()) {
    st.Log("step-runner: forced cancel (" + reason + "): SIGKILL to " +
           std::to_string(e.processes) + " processes");
  } else {
    std::string signals;
    for (int s : e.signals) signals += (signals.empty() ? "" : "/") + SignalName(s);
    st.Log("step-runner: cancelling (" + reason + "): " +
           (signals.empty() ? std::string("cancel signal") : signals) + " to " +
           std::to_string(e.processes) + " processes, grace " +
           FormatDuration(e.grace.value_or(r.grace())));
  }
  return e;
}

const std::optional<CancelRequest>& Engine::cancel_request() const {
  return state_->job_cancel.current();
}

std::optional<proto::Termination> Engine::Termination() const {
  return engine::JobTermination(*state_);
}

}  // namespace sr
