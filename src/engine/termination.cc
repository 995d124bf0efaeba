// The termination record (contract section 2): built here, once, from the supervisor's facts.
// Status, step-results.json, the log lines and `${{ run.termination }}` are renderings of it.
#include <algorithm>

#include <google/protobuf/util/json_util.h>

#include "engine/internal.h"
#include "engine/results.h"
#include "util/signals.h"
#include "util/utf8.h"

namespace sr::engine {
namespace {

using Ending = proto::Termination::ProcessRecord;

void SetDuration(Duration d, google::protobuf::Duration* out) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

void SetReason(CancelReason reason, proto::Termination* out) {
  switch (reason) {
    case CancelReason::kRequested: out->set_reason(proto::Termination::cancel_requested); break;
    case CancelReason::kTimedOut: out->set_reason(proto::Termination::timed_out); break;
    case CancelReason::kServerShutdown: out->set_reason(proto::Termination::server_shutdown); break;
    case CancelReason::kClosed: out->set_reason(proto::Termination::closed); break;
    case CancelReason::kInternalError: out->set_reason(proto::Termination::internal_error); break;
    case CancelReason::kStepTimedOut: out->set_reason(proto::Termination::step_timed_out); break;
    case CancelReason::kJobEnded: out->set_reason(proto::Termination::job_ended); break;
  }
}

// A record of a stop that is part of an ending that went as planned: the leftovers of a step
// whose main process ended (step_ended), diagnose steps outliving the job's steps (job_ended).
// Such a record stays its step's own, out of the job's.
bool PlannedStop(const proto::Termination& t) {
  return t.reason() == proto::Termination::step_ended || t.reason() == proto::Termination::job_ended;
}

// The processes of every step the job's cancel reached (not the leftovers of steps that had
// ended before it, nor diagnose steps killed at the job's end: PlannedStop).
void CollectProcesses(const ResultNode& node, proto::Termination* out) {
  const auto& t = node.result.termination();
  if (node.result.has_termination() && !PlannedStop(t)) {
    for (const auto& p : t.processes()) *out->add_processes() = p;
  } else if (!node.result.has_termination() && node.tree && node.cancel && node.cancel->requested()) {
    // Still inside its grace: what the cancel has done to the step so far (still_running for
    // those not seen to end yet), so a Status read while cancelling shows it.
    AddProcessRecords(node.tree->StopRecords(), out);
  }
  for (const auto& c : node.children) CollectProcesses(*c, out);
}

Duration FromProto(const google::protobuf::Duration& d) {
  return std::chrono::seconds(d.seconds()) + std::chrono::nanoseconds(d.nanos());
}

std::string ProcessName(const proto::Termination::ProcessRecord& p) {
  return "pid " + std::to_string(p.pid()) + " (" + p.command() + ")";
}

// The warning the step's processes got, on its record (the job's record has it too, but a
// step's record is read alone: step-results.json). True if a process died of it.
bool AddWarning(const TreeExit& exit, proto::Termination* t) {
  bool died = false;
  for (const ProcessRecord& r : exit.records) {
    if (!r.warning_signal) continue;
    if (!t->has_warning_time()) {
      *t->mutable_warning_time() = ToTimestamp(r.warning_time);
      t->set_warning_signal(SignalName(r.warning_signal));
    }
    died |= r.ending == ProcessRecord::Ending::kEndedBySignal && r.end_signal == r.warning_signal;
  }
  return died;
}

}  // namespace

proto::Termination StepTermination(const TreeExit& exit, const CancelSource& cancel) {
  proto::Termination t;
  const StopFacts& stop = *exit.stop;
  const auto& request = cancel.current();
  const bool warning_killed = AddWarning(exit, &t);
  if (stop.leftovers || !request) {
    // Processes left when the main process ended. If the warning killed one (the main process,
    // usually), the warning is why the step ended: the leftovers' stop followed from it.
    t.set_reason(warning_killed ? proto::Termination::deadline_warning
                                : proto::Termination::step_ended);
    *t.mutable_requested_time() = ToTimestamp(stop.started);
  } else {
    SetReason(request->reason, &t);
    *t.mutable_requested_time() = ToTimestamp(request->requested_wall);
  }
  t.set_forced(stop.forced);
  SetDuration(stop.grace, t.mutable_grace());
  AddProcessRecords(exit.records, &t);
  return t;
}

std::optional<proto::Termination> WarningTermination(const TreeExit& exit) {
  proto::Termination t;
  if (!AddWarning(exit, &t)) return std::nullopt;
  t.set_reason(proto::Termination::deadline_warning);
  // Only the warned processes: the others got no signal from the runner.
  std::vector<ProcessRecord> warned;
  for (const ProcessRecord& r : exit.records) {
    if (r.warning_signal) warned.push_back(r);
  }
  AddProcessRecords(warned, &t);
  return t;
}

std::string WarningEndNote(const TreeExit& exit, pid_t main_pid) {
  for (const ProcessRecord& r : exit.records) {
    if (!r.warning_signal || r.ending != ProcessRecord::Ending::kEndedBySignal ||
        r.end_signal != r.warning_signal) {
      continue;
    }
    if (r.pid == main_pid && exit.term_signal == r.warning_signal) {
      return " (the runner's deadline warning signal)";
    }
    if (r.pid != main_pid && exit.term_signal == 0 && exit.exit_code == 128 + r.warning_signal) {
      // Only the pid: the log's warning line names the process with its (masked) command.
      return " (128 + " + SignalName(r.warning_signal) +
             ": the runner's deadline warning signal ended pid " + std::to_string(r.pid) + ")";
    }
  }
  return "";
}

proto::Termination OomTermination(const TreeExit& exit, pid_t main_pid, const std::string& command) {
  proto::Termination t;
  t.set_reason(proto::Termination::oom_killed);
  auto* main = t.add_processes();
  main->set_pid(main_pid);
  main->set_command(EscapeInvalidUtf8(command.substr(0, 256)));
  *main->mutable_end_time() = ToTimestamp(WallNow());
  if (exit.term_signal == SIGKILL) {
    main->set_ending(Ending::killed_by_oom);
    main->set_end_signal("SIGKILL");
  } else {
    // A shell reports its killed child as exit status 137; the child itself is not ours to name.
    main->set_ending(exit.term_signal ? Ending::ended_by_signal : Ending::exited);
    main->set_exit_code(exit.exit_code);
  }
  // Other members the runner reaped that died of a SIGKILL the runner never sent.
  AddProcessRecords(exit.records, &t);
  for (auto& p : *t.mutable_processes()) {
    if (p.pid() != main_pid && p.signal().empty() && p.end_signal() == "SIGKILL") {
      p.set_ending(Ending::killed_by_oom);
    }
  }
  return t;
}

std::optional<proto::Termination> JobTermination(const Engine::State& st) {
  const auto& request = st.job_cancel.current();
  if (!request && !st.warned_at) return std::nullopt;
  proto::Termination t;
  // Warned, never cancelled (the job ended before its deadline): the warning is what happened.
  if (!request) t.set_reason(proto::Termination::deadline_warning);
  if (request) {
    SetReason(request->reason, &t);
    t.set_forced(request->forced());
    *t.mutable_requested_time() = ToTimestamp(request->requested_wall);
    // The grace the processes got; the request's own when no process was reached.
    SetDuration(st.cancel_effect.grace.value_or(request->grace()), t.mutable_grace());
  }
  if (st.warned_at) {
    *t.mutable_warning_time() = ToTimestamp(*st.warned_at);
    if (st.warning_signal) t.set_warning_signal(SignalName(st.warning_signal));
  }
  CollectProcesses(st.root, &t);
  for (const auto& helper : st.helper_stops) {
    for (const auto& p : helper.processes()) *t.add_processes() = p;
  }
  st.MaskMessage(&t);
  return t;
}

proto::Termination SubtreeTermination(const Engine::State& st, const ResultNode& node) {
  proto::Termination t;
  CollectProcesses(node, &t);
  st.MaskMessage(&t);
  return t;
}

namespace {

// The first record under `node` of a step that did not end by itself: a step timeout's, an
// OOM kill's or the deadline warning's (not a PlannedStop).
const proto::Termination* StoppedStepRecord(const ResultNode& node) {
  const auto& t = node.result.termination();
  if (node.result.has_termination() && !PlannedStop(t)) return &t;
  for (const auto& c : node.children) {
    if (const auto* found = StoppedStepRecord(*c)) return found;
  }
  return nullptr;
}

}  // namespace

json TerminationValue(const Engine::State& st, const ResultNode& scope) {
  std::optional<proto::Termination> t = JobTermination(st);
  // No job-wide cancel: a step of this sequence may still have been stopped, by its own
  // timeout or the OOM killer, and the cleanup reads that record (it read {}).
  if (!t) {
    if (const auto* step = StoppedStepRecord(scope)) {
      t = *step;
      st.MaskMessage(&*t);
    }
  }
  if (!t) return json::object();
  std::string text;
  (void)google::protobuf::util::MessageToJsonString(*t, &text);
  json v = json::parse(text, nullptr, false);
  return v.is_discarded() ? json::object() : v;
}

std::optional<std::string> LeftoversLine(const std::string& step, const proto::Termination& t) {
  std::string line = "step-runner: step \"" + step + "\" left processes behind, stopped (grace " +
                     FormatDuration(FromProto(t.grace())) + "):";
  bool any = false;
  for (const auto& p : t.processes()) {
    if (p.signal().empty()) continue;  // the main process, ended by itself
    line += " " + ProcessName(p) + " " + p.signal() + " -> " + Ending::Ending_Name(p.ending()) + ";";
    any = true;
  }
  // None signalled: the last one ended between the check that found it and the stop.
  if (!any) return std::nullopt;
  line.pop_back();
  return line;
}

std::optional<std::string> WarningLine(const std::string& step, const proto::Termination& t) {
  std::string line = "step-runner: step \"" + step + "\": the deadline warning signal " +
                     t.warning_signal() + " ended";
  bool any = false;
  for (const auto& p : t.processes()) {
    // A process the runner signalled again afterwards (a leftover stopped with the same signal)
    // is not credited to the warning: the leftovers' line names it.
    if (p.warning_signal().empty() || !p.signal().empty() || p.ending() != Ending::ended_by_signal ||
        p.end_signal() != p.warning_signal()) {
      continue;
    }
    line += " " + ProcessName(p) + ",";
    any = true;
  }
  if (!any) return std::nullopt;
  line.pop_back();
  return line;
}

std::string CancelFinishedLine(const proto::Termination& t, const std::string& step) {
  // Deaths by signal are counted per signal: after a deadline warning, a process may have died
  // of the warning signal, and "ended on the signal" would credit the cancel with it. A member
  // whose own parent reaped it has no known end signal; it is counted under the one we sent.
  std::vector<std::pair<std::string, int>> by_signal;
  int exited = 0;
  std::string killed;
  for (const auto& p : t.processes()) {
    if (p.ending() == Ending::ended_by_signal) {
      const std::string& sig = !p.end_signal().empty() ? p.end_signal() : p.signal();
      const std::string name = sig.empty() ? "a signal" : sig;
      auto it = std::find_if(by_signal.begin(), by_signal.end(),
                             [&](const auto& e) { return e.first == name; });
      if (it == by_signal.end()) by_signal.emplace_back(name, 1); else ++it->second;
    }
    if (p.ending() == Ending::exited) ++exited;
    if (p.ending() == Ending::killed_after_grace || p.ending() == Ending::killed_forced) {
      killed += (killed.empty() ? "" : ", ") + ProcessName(p);
    }
  }
  std::string on_signal = by_signal.empty() ? "0 ended on a signal" : "";
  for (const auto& [name, n] : by_signal) {
    on_signal += (on_signal.empty() ? std::to_string(n) + " ended on " : ", " + std::to_string(n) +
                                                                           " on ") + name;
  }
  const std::string whose = step.empty() ? "" : "step \"" + step + "\": ";
  return "step-runner: " + whose + "cancel finished: " + std::to_string(t.processes_size()) +
         " processes; " + on_signal + ", " + std::to_string(exited) + " exited; " +
         (killed.empty() ? "none needed SIGKILL" : "needed SIGKILL: " + killed);
}

}  // namespace sr::engine
