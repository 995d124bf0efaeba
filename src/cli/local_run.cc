#include "cli/local_run.h"
#include "cli/progress.h"

#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cinttypes>
#include <csignal>
#include <cstdio>

#include <google/protobuf/text_format.h>

#include "engine/job_run.h"
#include "loop/loop.h"
#include "supervisor/supervisor.h"
#include "util/fd.h"
#include "util/signals.h"
#include "util/tempdir.h"

namespace sr::cli {
namespace {

class StdioSink : public OutputSink {
 public:
  void Write(OutputStream stream, std::string_view bytes) override {
    (void)WriteAll(stream == OutputStream::kStdout ? 1 : 2, bytes);
  }
};

// The job's timing from the flags; errors name the flag (exit 2).
Result<JobOptions> TimingFromFlags(const RunFlags& flags) {
  JobOptions o;
  auto grace = ParseDuration(flags.grace);
  if (!grace.ok()) return grace.error().Wrap("--grace");
  o.run.grace = *grace;
  if (!flags.timeout.empty()) {
    auto t = ParseDuration(flags.timeout);
    if (!t.ok()) return t.error().Wrap("--timeout");
    o.timeout = *t;
  }
  if (!flags.warn_before.empty()) {
    auto w = ParseDuration(flags.warn_before);
    if (!w.ok()) return w.error().Wrap("--warn-before");
    if (o.timeout.count() == 0) return InvalidError("--warn-before needs --timeout");
    if (*w >= o.timeout) return InvalidError("--warn-before must be shorter than --timeout");
    o.warn_before = *w;
  }
  if (!flags.warn_signal.empty()) {
    auto s = ParseSignal(flags.warn_signal);
    if (!s.ok()) return s.error().Wrap("--warn-signal");
    o.warn_signal = *s;
  }
  return o;
}

// SIGINT and SIGTERM are consumed in one place, synchronously, through a signalfd on the loop.
UniqueFd BlockTerminalSignals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  return UniqueFd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
}

// The terminal's part of a cancel: the first Ctrl-C cancels, the second forces.
void OnTerminalSignals(int sigfd, JobRun& run, int& seen) {
  signalfd_siginfo info;
  while (::read(sigfd, &info, sizeof info) == sizeof info) {
    const bool force = ++seen > 1;
    // Act first, then say so: a slow terminal must not delay the signals.
    CancelSource::Effect e = run.Cancel(CancelReason::kRequested, force);
    if (force) {
      std::fprintf(stderr, "step-runner: second signal: killing every process now\n");
    } else {
      const Duration grace = e.grace.value_or(run.cancel_request() ? run.cancel_request()->grace()
                                                                   : Duration(0));
      std::fprintf(stderr,
                   "step-runner: %s received: cancelling (grace %s); press Ctrl-C again to force\n",
                   SignalName(static_cast<int>(info.ssi_signo)).c_str(),
                   FormatDuration(grace).c_str());
    }
  }
}

// step-results.json (or .txtpb), when asked for.
void WriteResults(const LocalRunRequest& req, const proto::StepResult& result) {
  const bool text_format = req.flags.step_results_format == "prototext";
  std::string results_file = req.flags.step_results_file;
  if (results_file.empty() && req.flags.write_step_results) {
    results_file = text_format ? "step-results.txtpb" : req.default_results_file;
  }
  if (results_file.empty()) return;
  std::string body;
  if (text_format) {
    google::protobuf::TextFormat::PrintToString(result, &body);
  } else {
    body = ResultToJson(result);
  }
  Status w = WriteFile(results_file, body, 0640);
  if (!w.ok()) std::fprintf(stderr, "step-runner: writing step results: %s\n", w.error().message.c_str());
}

}  // namespace

int RunLocally(LocalRunRequest req) {
  if (req.flags.step_results_format != "json" && req.flags.step_results_format != "prototext") {
    return Fail("unsupported format: " + req.flags.step_results_format, 2);
  }
  auto timing = TimingFromFlags(req.flags);
  if (!timing.ok()) return Fail(timing.error().message, 2);
  JobOptions options = std::move(*timing);

  UniqueFd sigfd = BlockTerminalSignals();
  if (!sigfd.valid()) return Fail("signalfd: " + std::string(std::strerror(errno)), 1);
  auto loop = EventLoop::Create();
  if (!loop.ok()) return Fail(loop.error().message, 1);
  const Switches switches = ReadSwitches(ProcessEnv());
  auto sup = Supervisor::Create(**loop, SupervisorOptionsFor(switches));
  if (!sup.ok()) return Fail(sup.error().message, 1);
  auto temp = TempDir::Create("step-runner-", switches.temp_base);
  if (!temp.ok()) return Fail(temp.error().message, 1);

  StdioSink sink;
  TerminalProgress progress;
  JobRun run(**loop, **sup, sink, ::isatty(2) ? &progress : nullptr);
  options.run.work_dir = req.work_dir;
  options.run.root_step_dir = req.root_step_dir;
  options.run.base_env = req.env;
  options.run.job_vars = req.job_vars;
  options.run.secrets = req.secrets;
  options.run.root_inputs = req.root_inputs;
  options.run.temp_dir = temp->path();
  options.run.cache_dir = switches.temp_base + "/step-runner-cache";
  options.run.merge_stderr = req.merge_stderr;

  int signals_seen = 0;
  auto watch = (*loop)->Watch(sigfd.get(), EPOLLIN,
                              [&](uint32_t) { OnTerminalSignals(sigfd.get(), run, signals_seen); });
  if (!watch.ok()) return Fail(watch.error().message, 1);
  std::optional<RunOutcome> outcome;
  const auto run_started = Clock::now();
  run.Start(std::move(req.root), std::move(options), [&](RunOutcome o) { outcome = std::move(o); });
  (*loop)->RunUntil([&] { return outcome.has_value(); });
  (*loop)->Unwatch(*watch);
  (*sup)->KillAll();
  if (::isatty(2)) progress.Done(OutcomeStatus(outcome->error), Clock::now() - run_started);

  WriteResults(req, outcome->result);
  if (outcome->error) return Fail(outcome->error->message, ExitCodeFor(outcome->error));
  return 0;
}

}  // namespace sr::cli
