#include "cli/local_run.h"
#include "cli/progress.h"
#include "cli/stdio_sink.h"

#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <functional>
#include <csignal>
#include <cstdio>

#include <google/protobuf/text_format.h>

#include "docker/docker.h"
#include "engine/job_run.h"
#include "loop/loop.h"
#include "supervisor/runner_start.h"
#include "supervisor/supervisor.h"
#include "util/fd.h"
#include "util/owner.h"
#include "util/signals.h"
#include "util/tempdir.h"

namespace sr::cli {
namespace {

// The job's options from the flags' timing; errors name the flag (exit 2).
Result<JobOptions> OptionsFromFlags(const RunFlags& flags) {
  SR_ASSIGN_OR_RETURN(JobTiming t, TimingFromFlags(flags));
  JobOptions o;
  if (t.grace) o.run.grace = *t.grace;
  o.timeout = t.timeout;
  o.warn_before = t.warn_before;
  o.warn_signal = t.warn_signal;
  return o;
}

// Ctrl-Z: the steps run in process groups (and cgroups) of their own, which the terminal does
// not stop with the runner's. So the runner stops them itself, then stops, and on `fg` (SIGCONT)
// lets them go on. A deadline keeps counting meanwhile (a timeout that passed fires at once).
void StopWithTheSteps(JobRun& run, StdioSink& sink) {
  const size_t stopped = run.SignalRunning(SIGSTOP);
  sink.Note("step-runner: stopped, with the " + std::to_string(stopped) +
            " processes of the running steps; `fg` lets them go on\n");
  ::raise(SIGSTOP);  // returns once continued
  run.SignalRunning(SIGCONT);
  sink.Note("step-runner: continued\n");
}

// The terminal's part of a cancel: the first Ctrl-C cancels, the second forces. What it says
// goes through the sink: a paused terminal must not hold up the loop.
void OnTerminalSignals(int sigfd, JobRun& run, int& seen, StdioSink& sink) {
  signalfd_siginfo info;
  while (::read(sigfd, &info, sizeof info) == sizeof info) {
    if (info.ssi_signo == SIGTSTP) {
      StopWithTheSteps(run, sink);
      continue;
    }
    const bool force = ++seen > 1;
    // Act first, then say so: a slow terminal must not delay the signals.
    CancelSource::Effect e = run.Cancel(CancelReason::kRequested, force);
    if (force) {
      sink.Note("step-runner: second signal: killing every process now\n");
    } else {
      const Duration grace = e.grace.value_or(run.cancel_request() ? run.cancel_request()->grace()
                                                                   : Duration(0));
      sink.Note("step-runner: " + SignalName(static_cast<int>(info.ssi_signo)) +
                " received: cancelling (grace " + FormatDuration(grace) +
                "); press Ctrl-C again to force\n");
    }
  }
}

// Where step-results.json (or .txtpb) goes; "" when it was not asked for.
std::string ResultsFile(const LocalRunRequest& req) {
  const bool text_format = req.flags.step_results_format == "prototext";
  std::string results_file = req.flags.step_results_file;
  if (results_file.empty() && req.flags.write_step_results) {
    results_file = text_format ? "step-results.txtpb" : req.default_results_file;
  }
  return results_file;
}

// A results file that could not be written would be found out only after the job has run, and
// its results lost: its directory is checked before anything runs.
Status CheckResultsFileDir(const std::string& results_file) {
  if (results_file.empty()) return Ok();
  const size_t slash = results_file.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : results_file.substr(0, slash);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return InvalidError(results_file + ": " + dir + ": " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) return InvalidError(results_file + ": " + dir + ": not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return InvalidError(results_file + ": " + dir + ": " + std::strerror(errno));
  }
  if (::stat(results_file.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return InvalidError(results_file + ": is a directory");
  }
  return Ok();
}

// step-results.json (or .txtpb), when asked for.
Status WriteResults(const LocalRunRequest& req, proto::StepResult result) {
  const bool text_format = req.flags.step_results_format == "prototext";
  const std::string results_file = ResultsFile(req);
  if (results_file.empty()) return Ok();
  MakeValidUtf8(&result);
  std::string body;
  if (text_format) {
    google::protobuf::TextFormat::PrintToString(result, &body);
  } else {
    body = ResultToJson(result);
  }
  // A results file that cannot be written is lost output: the run failed (kind internal).
  Status w = WriteFile(results_file, body, 0640);
  if (!w.ok()) return w.error().Wrap("writing step results");
  return Ok();
}

}  // namespace

int RunLocally(LocalRunRequest req) {
  if (req.flags.step_results_format != "json" && req.flags.step_results_format != "prototext") {
    return Fail("unsupported format: " + req.flags.step_results_format, 2);
  }
  if (Status dir = CheckResultsFileDir(ResultsFile(req)); !dir.ok()) {
    return Fail("step results file " + dir.error().message + " (nothing was run)", 2);
  }
  auto limits = LimitsFromFlags(req.flags);
  if (!limits.ok()) return Fail(limits.error().message, 2);
  auto timing = OptionsFromFlags(req.flags);
  if (!timing.ok()) return Fail(timing.error().message, 2);
  JobOptions options = std::move(*timing);

  // SIGINT and SIGTERM are consumed in one place, synchronously, through a signalfd on the loop.
  // A closed terminal (SIGHUP) and SIGQUIT cancel like Ctrl-C and SIGTERM; Ctrl-Z (SIGTSTP)
  // stops the steps with the runner.
  auto signals = BlockedSignalFd({SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP});
  if (!signals.ok()) return Fail(signals.error().message, 1);
  const UniqueFd sigfd = std::move(*signals);
  auto loop = EventLoop::Create();
  if (!loop.ok()) return Fail(loop.error().message, 1);
  const Switches switches = ReadSwitches(ProcessEnv());
  if (Status usable = CheckTempBase(switches); !usable.ok()) return Fail(usable.error().message, 2);
  if (Status ready = PrepareRunner(switches.temp_base, !switches.guardian_off); !ready.ok()) return Fail(ready.error().message, 1);
  auto sup = Supervisor::Create(**loop, SupervisorOptionsFor(switches));
  if (!sup.ok()) return Fail(sup.error().message, 1);
  auto temp = TempDir::CreateOwned("step-runner-", switches.temp_base);
  if (!temp.ok()) return Fail(temp.error().message, 1);
  if (Status ok = CheckResourceLimits(**sup, req.root, *limits); !ok.ok()) {
    return Fail(ok.error().message, 2);
  }

  StdioSink sink(**loop);
  TerminalProgress progress;
  progress.PrintTo([&sink](std::string_view line) { sink.Note(line); });
  JobRun run(**loop, **sup, sink, ::isatty(2) ? &progress : nullptr);
  sink.on_error = [&run](Error e) { run.FailInternal(std::move(e)); };
  options.run.work_dir = req.work_dir;
  options.run.root_step_dir = req.root_step_dir;
  options.run.base_env = req.env;
  options.run.job_vars = req.job_vars;
  options.run.secrets = req.secrets;
  options.run.root_inputs = req.root_inputs;
  options.run.temp_dir = temp->path();
  options.run.cache_dir = switches.temp_base + "/step-runner-cache";
  options.run.merge_stderr = req.merge_stderr;
  options.run.resources = *limits;
  options.run.final_result = !ResultsFile(req).empty();  // nothing else reads it

  // Containers the job starts through Docker stop with it (contract section 9), and those a
  // killed runner left behind go now (7.1), while the job runs.
  const auto runner_env = ProcessEnv();
  if (auto debug = runner_env.find("CI_STEPS_DEBUG"); debug != runner_env.end()) {
    options.run.steps_debug = debug->second == "true";
  }
  const std::optional<std::string> daemon = docker::DaemonSocket(runner_env);
  bool cleanup_done = !daemon.has_value();
  if (daemon) {
    docker::RemoveDeadInstanceLeftovers(**loop, *daemon, [&](auto removed) {
      cleanup_done = true;
      if (removed.ok() && !removed->empty()) {
        sink.Note("step-runner: " + removed->Line() + "\n");
      }
    });
  }
  if (auto guarded = docker::DaemonToGuard(runner_env, req.job_vars, req.flags.docker)) {
    options.docker = DockerOptions{*guarded, temp->path() + "/docker.sock", "run-" + docker::InstanceId()};
  }

  int signals_seen = 0;
  auto watch = (*loop)->Watch(sigfd.get(), EPOLLIN,
                              [&](uint32_t) { OnTerminalSignals(sigfd.get(), run, signals_seen, sink); });
  if (!watch.ok()) return Fail(watch.error().message, 1);
  std::optional<RunOutcome> outcome;
  const auto run_started = Clock::now();
  run.Start(std::move(req.root), std::move(options), [&](RunOutcome o) { outcome = std::move(o); });
  (*loop)->RunUntil([&] { return outcome.has_value(); });
  if (!cleanup_done) {
    // A daemon that does not answer must not hold the exit: give the cleanup a few seconds.
    bool waited = false;
    auto give_up = (*loop)->After(std::chrono::seconds(5), [&] { waited = true; });
    (*loop)->RunUntil([&] { return cleanup_done || waited; });
    (*loop)->CancelTimer(give_up);
  }
  (*loop)->Unwatch(*watch);
  (*sup)->KillAll();
  if (::isatty(2)) progress.Done(OutcomeName(outcome->error), Clock::now() - run_started);

  int code = 0;
  if (Status w = WriteResults(req, std::move(outcome->result)); !w.ok()) {
    sink.Note("step-runner: " + w.error().message + "\n");
    code = 1;
  } else if (outcome->error) {
    sink.Note("step-runner: " + outcome->error->message + "\n");
    code = ExitCodeFor(outcome->error);
  }
  // Everything else is done (processes, files, results): only our own output may still wait for
  // its reader, as long as it takes, or until a signal says to give up on it.
  sink.on_error = nullptr;  // the job is over: a reader gone now changes nothing
  sink.Drain(sigfd.get());
  return code;
}

}  // namespace sr::cli
