// Resource limits and usage of steps (contract section 8). Internal to the engine.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "engine/internal.h"

namespace sr::engine {

ResourceLimits ToLimits(const stepfile::Limits& l);
/// The smaller of each limit that is set (0 = unset).
ResourceLimits Tighter(const ResourceLimits& a, const ResourceLimits& b);
/// "memory 64 MiB, pids 20".
std::string DescribeLimits(const ResourceLimits& l);
/// A new group below scope.group with `limits`; scope.group and scope.limits move to it.
/// `who` names the step in the error.
Result<std::shared_ptr<ResourceGroup>> EnterGroup(Engine::State& st, Scope& scope,
                                                  const ResourceLimits& limits,
                                                  const std::string& who);
void SetUsage(const ResourceUsage& u, std::chrono::system_clock::time_point start,
              std::chrono::system_clock::time_point end, proto::ResourceUsage* out);
/// A sequence's usage: its children's sums (peaks: the largest) and its own start and end.
void AggregateUsage(std::chrono::system_clock::time_point start,
                    std::chrono::system_clock::time_point end, ResultNode* node);
/// One exec step's accounting, from before its spawn to after its end.
struct StepAccounting {
  std::shared_ptr<ResourceGroup> group;  // the step's own group (limits + counters)
  ResourceLimits effective;              // the tightest limits around it
  std::optional<int64_t> own_oom_before;  // the runner's own cgroup counter (no per-step group)
  std::chrono::system_clock::time_point start;
};
/// Creates the exec step's group inside `scope`'s, with the definition's own limits.
Result<StepAccounting> BeginAccounting(Engine::State& st, Scope& scope,
                                       const stepfile::Definition& def);
/// Reads what the step used into node's usage (before the group goes away) and, when the OOM
/// killer ended it, returns the failure and sets node's termination record (reason oom_killed).
std::optional<Error> EndAccounting(Engine::State& st, StepAccounting& acct, const TreeExit& exit,
                                   pid_t main_pid, ResultNode* node);
/// "killed by the OOM killer (memory limit 64 MiB, peak 64 MiB)".
std::string OomMessage(const ResourceLimits& effective, const ResourceUsage& u);

}  // namespace sr::engine
