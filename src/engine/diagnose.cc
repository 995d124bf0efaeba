// The pre-deadline warning (contract 4.10): the warning signal to every running process, and
// the `diagnose:` steps of the running sequences, a chance to look before the kill.
#include "engine/internal.h"
#include "util/signals.h"

namespace sr::engine {
namespace {

// One running `diagnose:` list: a cancel domain of its own that any cancel of the job kills.
struct DiagnoseRun {
  explicit DiagnoseRun(CancelSource& job) : cancel(job, CancelSource::Follow::kAsForced) {}
  CancelSource cancel;
  Scope scope;
  std::vector<stepfile::Invocation> list;
};

Task<bool> RunDiagnose(Engine::State& st, std::shared_ptr<DiagnoseRun> run) {
  (void)co_await RunList(st, run->scope, run->list, ListKind::kDiagnose);
  co_return true;
}

}  // namespace

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
    auto run = std::make_shared<DiagnoseRun>(st.job_cancel);
    run->list = seq->definition->diagnose;
    run->scope = *seq;
    run->scope.cancel = &run->cancel;
    run->scope.run["pids"] = pids;
    run->scope.run["status"] = "running";
    ++st.pending_diagnose;
    st.diagnose_cancels.insert(&run->cancel);
    Engine::State* state = &st;
    StartTask<bool>(RunDiagnose(st, run), [state, run](bool) {
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

size_t Engine::SignalRunning(int signo) {
  size_t reached = 0;
  engine::ForEachRunningTree(state_->root, [&](ProcessTree& t) {
    reached += t.Members().size();
    t.Signal(signo);
  });
  return reached;
}

void Engine::Warn(int signo) {
  State& st = *state_;
  st.warned_at = WallNow();
  st.warning_signal = signo;
  size_t signalled = 0;
  if (signo) {
    // ProcessTree::Warn, not Signal: each process's record keeps the warning, so a step whose
    // process dies of it says the runner's signal ended it (engine/exec.cc).
    engine::ForEachRunningTree(st.root, [&](ProcessTree& t) {
      signalled += t.Members().size();
      t.Warn(signo);
    });
  }
  bool diagnose = false;
  for (const engine::Scope* seq : st.running_sequences) {
    diagnose |= seq->definition && !seq->definition->diagnose.empty();
  }
  st.Log("step-runner: deadline warning: " +
         (signo ? SignalName(signo) + " sent to " + std::to_string(signalled) + " processes"
                : std::string("no warning signal")) +
         (diagnose ? "; starting diagnose steps" : ""));
  engine::StartDiagnose(st);
  if (st.observer) st.observer->Warned();
}

}  // namespace sr
