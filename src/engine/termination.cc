// The termination record (contract section 2) and the pre-deadline warning's `diagnose:` steps
// (contract 4.10): what the cancel did to each process, and a chance to look before the kill.
#include <google/protobuf/util/json_util.h>

#include "engine/internal.h"
#include "engine/results.h"
#include "util/signals.h"

namespace sr::engine {
namespace {

void CollectProcesses(const ResultNode& node, proto::Termination* out) {
  if (node.result.has_termination()) {
    for (const auto& p : node.result.termination().processes()) *out->add_processes() = p;
  }
  for (const auto& c : node.children) CollectProcesses(*c, out);
}

// One running `diagnose:` list: its own cancel source, killed when the deadline's cancel comes.
struct DiagnoseRun {
  CancelSource cancel;
  Scope scope;
  std::vector<stepfile::Invocation> list;
  CancelSource::Subscription on_deadline;
};

Task<bool> RunDiagnose(Engine::State& st, std::shared_ptr<DiagnoseRun> run) {
  (void)co_await RunList(st, run->scope, run->list, /*keep_going=*/true);
  co_return true;
}

}  // namespace

std::optional<proto::Termination> JobTermination(const Engine::State& st) {
  if (!st.job_cancel || !st.job_cancel->requested()) {
    if (!st.warned_at) return std::nullopt;
  }
  proto::Termination t;
  if (st.job_cancel && st.job_cancel->current()) {
    SetTerminationRequest(*st.job_cancel->current(), &t);
  }
  if (st.warned_at) *t.mutable_warning_time() = ToTimestamp(*st.warned_at);
  CollectProcesses(st.root, &t);
  return t;
}

json TerminationValue(const Engine::State& st) {
  auto t = JobTermination(st);
  if (!t) return json::object();
  std::string text;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(*t, &text, opts);
  json v = json::parse(text, nullptr, false);
  return v.is_discarded() ? json::object() : v;
}

void ForEachRunningTree(const ResultNode& root, const std::function<void(ProcessTree&)>& fn) {
  std::vector<const ResultNode*> stack{&root};
  while (!stack.empty()) {
    const ResultNode* n = stack.back();
    stack.pop_back();
    if (n->tree && !n->tree->finished()) fn(*n->tree);
    for (const auto& c : n->children) stack.push_back(c.get());
  }
}

void StartDiagnose(Engine::State& st) {
  json pids = json::array();
  ForEachRunningTree(st.root, [&](ProcessTree& t) {
    for (pid_t p : t.Members()) pids.push_back(p);
  });
  for (Scope* seq : st.running_sequences) {
    if (!seq->definition || seq->definition->diagnose.empty()) continue;
    auto run = std::make_shared<DiagnoseRun>();
    run->list = seq->definition->diagnose;
    run->scope = *seq;
    run->scope.cancel = &run->cancel;
    run->scope.run["pids"] = pids;
    run->scope.run["status"] = "running";
    DiagnoseRun* raw = run.get();
    run->on_deadline = st.job_cancel->Subscribe([raw](const CancelRequest& r) {
      CancelRequest kill = r;
      kill.forced = true;
      raw->cancel.Cancel(kill);
    });
    ++st.pending_diagnose;
    st.diagnose_cancels.insert(&run->cancel);
    Engine::State* state = &st;
    StartTask<bool>(RunDiagnose(st, run), [state, run](bool) {
      run->on_deadline = {};
      state->diagnose_cancels.erase(&run->cancel);
      if (--state->pending_diagnose == 0 && state->on_diagnose_drained) {
        auto drained = std::move(state->on_diagnose_drained);
        state->on_diagnose_drained = nullptr;
        drained();
      }
    });
  }
}

}  // namespace sr::engine

namespace sr {

void Engine::Warn(int signo) {
  State& st = *state_;
  st.warned_at = WallNow();
  size_t signalled = 0;
  engine::ForEachRunningTree(st.root, [&](ProcessTree& t) {
    signalled += t.Members().size();
    if (signo) t.Signal(signo);
  });
  st.Log("step-runner: deadline warning: " +
         (signo ? SignalName(signo) + " sent to " + std::to_string(signalled) + " processes"
                : std::string("no warning signal")) +
         "; starting diagnose steps");
  engine::StartDiagnose(st);
}

std::optional<proto::Termination> Engine::Termination() const {
  return engine::JobTermination(*state_);
}

}  // namespace sr
