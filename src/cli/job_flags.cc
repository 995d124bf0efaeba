// The job's timing and limit flags, declared once for `run`, `ci` and `client run`.
#include "cli/cli.h"
#include "stepfile/stepfile.h"
#include "util/signals.h"

namespace sr::cli {

void AddJobFlags(CLI::App* cmd, JobFlags& f) {
  cmd->add_option("--timeout", f.timeout, "job timeout, e.g. 10m (default: none)");
  cmd->add_option("--grace", f.grace, "grace between the cancel signal and SIGKILL (default 30s)");
  cmd->add_option("--warn-before", f.warn_before, "with --timeout: warn this long before the deadline");
  cmd->add_option("--warn-signal", f.warn_signal, "signal sent at the warning, e.g. SIGUSR1");
  cmd->add_option("--memory", f.memory, "job-wide memory limit, e.g. 2Gi, 512M or bytes");
  cmd->add_option("--pids", f.pids, "job-wide limit on the number of processes");
  cmd->add_option("--cpus", f.cpus, "job-wide CPU limit as a number of CPUs, e.g. 1.5");
}

namespace {

Result<Duration> DurationFlag(const std::string& text, const char* flag) {
  auto d = ParseDuration(text);
  if (!d.ok()) return d.error().Wrap(flag);
  return *d;
}

}  // namespace

Result<JobTiming> TimingFromFlags(const JobFlags& f) {
  JobTiming t;
  if (!f.grace.empty()) {
    SR_ASSIGN_OR_RETURN(t.grace, DurationFlag(f.grace, "--grace"));
  }
  if (!f.timeout.empty()) {
    SR_ASSIGN_OR_RETURN(t.timeout, DurationFlag(f.timeout, "--timeout"));
  }
  if (!f.warn_before.empty()) {
    SR_ASSIGN_OR_RETURN(t.warn_before, DurationFlag(f.warn_before, "--warn-before"));
    if (t.timeout.count() == 0) return InvalidError("--warn-before needs --timeout");
    if (t.warn_before >= t.timeout) {
      return InvalidError("--warn-before must be shorter than --timeout");
    }
  }
  if (!f.warn_signal.empty()) {
    auto s = ParseWarningSignal(f.warn_signal, "--timeout");
    if (!s.ok()) return s.error().Wrap("--warn-signal");
    t.warn_signal = *s;
  }
  return t;
}

Result<ResourceLimits> LimitsFromFlags(const JobFlags& f) {
  ResourceLimits l;
  if (!f.memory.empty()) {
    auto v = stepfile::ParseMemory(f.memory);
    if (!v.ok()) return v.error().Wrap("--memory");
    l.memory_bytes = *v;
  }
  if (!f.pids.empty()) {
    auto v = stepfile::ParsePids(f.pids);
    if (!v.ok()) return v.error().Wrap("--pids");
    l.pids = *v;
  }
  if (!f.cpus.empty()) {
    auto v = stepfile::ParseCpus(f.cpus);
    if (!v.ok()) return v.error().Wrap("--cpus");
    l.cpus = *v;
  }
  return l;
}

}  // namespace sr::cli
