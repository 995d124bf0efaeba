// Resource limits and usage of steps (contract section 8): which group a step runs in, what it
// used, and the message of a step the OOM killer ended.
#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include <csignal>

#include "engine/internal.h"
#include "engine/results.h"
#include "engine/usage.h"

namespace sr::engine {

ResourceLimits ToLimits(const stepfile::Limits& l) { return {l.memory_bytes, l.pids, l.cpus}; }

ResourceLimits Tighter(const ResourceLimits& a, const ResourceLimits& b) {
  auto pick = [](auto x, auto y) { return x <= 0 ? y : y <= 0 ? x : std::min(x, y); };
  return {pick(a.memory_bytes, b.memory_bytes), pick(a.pids, b.pids), pick(a.cpus, b.cpus)};
}

}  // namespace sr::engine

namespace sr {

std::string UsageSummary(const proto::ResourceUsage& u) {
  std::string out;
  const int64_t cpu = u.cpu_user_usec() + u.cpu_system_usec();
  if (u.has_start_time() && (u.cpu_user_usec() || u.cpu_system_usec() || u.memory_peak_bytes())) {
    char buf[32];
    std::snprintf(buf, sizeof buf, ", cpu %.1fs", static_cast<double>(cpu) / 1e6);
    out += buf;
  }
  if (u.memory_peak_bytes()) out += ", peak " + FormatBytes(u.memory_peak_bytes());
  return out;
}

std::string FormatBytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 || v >= 100 ? "%.0f" : "%.1f", v);
  std::string n = buf;
  if (n.size() > 2 && n.compare(n.size() - 2, 2, ".0") == 0) n.resize(n.size() - 2);
  return n + " " + units[u];
}

}  // namespace sr

namespace sr::engine {

std::string DescribeLimits(const ResourceLimits& l) {
  std::string out;
  auto add = [&out](const std::string& s) { out += (out.empty() ? "" : ", ") + s; };
  if (l.memory_bytes > 0) add("memory " + FormatBytes(l.memory_bytes));
  if (l.pids > 0) add("pids " + std::to_string(l.pids));
  if (l.cpus > 0) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "cpus %g", l.cpus);
    add(buf);
  }
  return out;
}

Result<std::shared_ptr<ResourceGroup>> EnterGroup(Engine::State& st, Scope& scope,
                                                  const ResourceLimits& limits,
                                                  const std::string& who) {
  auto group = st.sup.controllers().Create(scope.group, limits);
  if (!group.ok()) {
    // A group with no limit of its own (accounting) names the limits it sits within.
    const std::string own = DescribeLimits(limits);
    const std::string label = !own.empty() ? own : "within " + DescribeLimits(scope.limits);
    Error e = group.error().Wrap((who.empty() ? "" : who + " ") + "resources (" + label + ")");
    // A limit the host cannot enforce is a usage error (exit 2), as it is before the run.
    if (!st.sup.controllers().CanEnforce(limits).ok()) e.kind = Error::Kind::kInvalid;
    return e;
  }
  scope.group = *group;
  scope.limits = Tighter(scope.limits, limits);
  return *group;
}

void SetUsage(const ResourceUsage& u, std::chrono::system_clock::time_point start,
              std::chrono::system_clock::time_point end, proto::ResourceUsage* out) {
  *out->mutable_start_time() = ToTimestamp(start);
  *out->mutable_end_time() = ToTimestamp(end);
  if (u.cpu_user_usec) out->set_cpu_user_usec(*u.cpu_user_usec);
  if (u.cpu_system_usec) out->set_cpu_system_usec(*u.cpu_system_usec);
  if (u.memory_peak_bytes) out->set_memory_peak_bytes(*u.memory_peak_bytes);
  if (u.pids_peak) out->set_pids_peak(*u.pids_peak);
  if (u.io_read_bytes) out->set_io_read_bytes(*u.io_read_bytes);
  if (u.io_write_bytes) out->set_io_write_bytes(*u.io_write_bytes);
  if (u.oom_kills) out->set_oom_kills(*u.oom_kills);
}

void AggregateUsage(std::chrono::system_clock::time_point start,
                    std::chrono::system_clock::time_point end, ResultNode* node) {
  proto::ResourceUsage sum;
  *sum.mutable_start_time() = ToTimestamp(start);
  *sum.mutable_end_time() = ToTimestamp(end);
  for (const auto& c : node->children) {
    if (!c->result.has_usage()) continue;
    const auto& u = c->result.usage();
    sum.set_cpu_user_usec(sum.cpu_user_usec() + u.cpu_user_usec());
    sum.set_cpu_system_usec(sum.cpu_system_usec() + u.cpu_system_usec());
    sum.set_memory_peak_bytes(std::max(sum.memory_peak_bytes(), u.memory_peak_bytes()));
    sum.set_pids_peak(std::max(sum.pids_peak(), u.pids_peak()));
    sum.set_io_read_bytes(sum.io_read_bytes() + u.io_read_bytes());
    sum.set_io_write_bytes(sum.io_write_bytes() + u.io_write_bytes());
    sum.set_oom_kills(sum.oom_kills() + u.oom_kills());
  }
  *node->result.mutable_usage() = sum;
}

Result<StepAccounting> BeginAccounting(Engine::State& st, Scope& scope,
                                       const stepfile::Definition& def) {
  StepAccounting acct;
  const ResourceLimits own = def.resources ? ToLimits(*def.resources) : ResourceLimits{};
  SR_ASSIGN_OR_RETURN(acct.group, EnterGroup(st, scope, own, ""));
  acct.effective = scope.limits;
  if (!acct.group->accounts_memory()) acct.own_oom_before = st.sup.controllers().LastOwnOomKills();
  acct.start = WallNow();
  return acct;
}

std::optional<Error> EndAccounting(Engine::State& st, StepAccounting& acct, const TreeExit& exit,
                                   pid_t main_pid, ResultNode* node) {
  // The group's counters where it has them; wait4's figures (approximate: peak is the largest
  // single process) for what it does not count.
  ResourceUsage u = acct.group->Read();
  if (!u.cpu_user_usec) u.cpu_user_usec = exit.rusage.cpu_user_usec;
  if (!u.cpu_system_usec) u.cpu_system_usec = exit.rusage.cpu_system_usec;
  if (!u.memory_peak_bytes) u.memory_peak_bytes = exit.rusage.memory_peak_bytes;
  if (!u.io_read_bytes) u.io_read_bytes = exit.rusage.io_read_bytes;
  if (!u.io_write_bytes) u.io_write_bytes = exit.rusage.io_write_bytes;
  if (!u.oom_kills && acct.own_oom_before) {
    // No group of its own: the runner's cgroup counter, before and after (approximate when
    // other steps run beside it).
    if (auto after = st.sup.controllers().OwnOomKills()) u.oom_kills = *after - *acct.own_oom_before;
  }
  acct.group.reset();
  SetUsage(u, acct.start, WallNow(), node->result.mutable_usage());
  const bool failed = exit.term_signal != 0 || exit.exit_code != 0;
  if (exit.stop_requested || exit.spawn_error || !failed || u.oom_kills.value_or(0) <= 0) {
    return std::nullopt;
  }
  std::string command;
  for (const auto& a : node->result.exec_result().command()) command += (command.empty() ? "" : " ") + a;
  *node->result.mutable_termination() = OomTermination(exit, main_pid, command);
  st.MaskMessage(node->result.mutable_termination());
  return FailedError(OomMessage(acct.effective, u));
}

std::string OomMessage(const ResourceLimits& effective, const ResourceUsage& u) {
  std::string limit = effective.memory_bytes > 0 ? "memory limit " + FormatBytes(effective.memory_bytes)
                                                 : std::string("host memory");
  std::string peak = u.memory_peak_bytes ? ", peak " + FormatBytes(*u.memory_peak_bytes) : "";
  return "killed by the OOM killer (" + limit + peak + ")";
}

}  // namespace sr::engine

namespace sr {
using engine::ToLimits;
Status CheckResourceLimits(Supervisor& sup, const stepfile::StepFile& root,
                            const ResourceLimits& job) {
  const Controllers& c = sup.controllers();
  if (auto ok = c.CanEnforce(job); !ok.ok()) return InvalidError("job resources: " + ok.error().message);
  const auto& def = root.definition;
  if (def.resources) {
    if (auto ok = c.CanEnforce(ToLimits(*def.resources)); !ok.ok()) {
      return InvalidError(def.mark.ToString() + ": step resources: " + ok.error().message);
    }
  }
  for (const auto* list : {&def.run, &def.finally, &def.diagnose}) {
    for (const auto& inv : *list) {
      if (!inv.resources) continue;
      if (auto ok = c.CanEnforce(ToLimits(*inv.resources)); !ok.ok()) {
        return InvalidError(inv.mark.ToString() + ": step \"" + inv.name + "\": " + ok.error().message);
      }
    }
  }
  return Ok();
}

}  // namespace sr
