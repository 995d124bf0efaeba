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

extern char** environ;

namespace sr::cli {
namespace {

class StdioSink : public OutputSink {
 public:
  void Write(OutputStream stream, std::string_view bytes) override {
    (void)WriteAll(stream == OutputStream::kStdout ? 1 : 2, bytes);
  }
};

}  // namespace

std::map<std::string, std::string> ProcessEnv() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

int RunLocally(LocalRunRequest req) {
  if (req.flags.step_results_format != "json" && req.flags.step_results_format != "prototext") {
    return Fail("unsupported format: " + req.flags.step_results_format, 2);
  }
  auto grace = ParseDuration(req.flags.grace);
  if (!grace.ok()) return Fail("--grace: " + grace.error().message, 2);
  std::optional<Duration> timeout;
  if (!req.flags.timeout.empty()) {
    auto t = ParseDuration(req.flags.timeout);
    if (!t.ok()) return Fail("--timeout: " + t.error().message, 2);
    if (t->count() > 0) timeout = *t;
  }
  std::optional<Duration> warn_before;
  int warn_signal = 0;
  if (!req.flags.warn_before.empty()) {
    auto w = ParseDuration(req.flags.warn_before);
    if (!w.ok()) return Fail("--warn-before: " + w.error().message, 2);
    if (!timeout) return Fail("--warn-before needs --timeout", 2);
    if (*w >= *timeout) return Fail("--warn-before must be shorter than --timeout", 2);
    warn_before = *w;
  }
  if (!req.flags.warn_signal.empty()) {
    auto s = ParseSignal(req.flags.warn_signal);
    if (!s.ok()) return Fail("--warn-signal: " + s.error().message, 2);
    warn_signal = *s;
  }

  // Signals are consumed in one place, synchronously, through a signalfd on the loop.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  UniqueFd sigfd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd.valid()) return Fail("signalfd: " + std::string(std::strerror(errno)), 1);

  auto loop = EventLoop::Create();
  if (!loop.ok()) return Fail(loop.error().message, 1);
  auto sup = Supervisor::Create(**loop);
  if (!sup.ok()) return Fail(sup.error().message, 1);
  auto temp = TempDir::Create("step-runner-");
  if (!temp.ok()) return Fail(temp.error().message, 1);

  StdioSink sink;
  TerminalProgress progress;
  JobRun run(**loop, **sup, sink, ::isatty(2) ? &progress : nullptr);

  JobOptions options;
  options.run.work_dir = req.work_dir;
  options.run.root_step_dir = req.root_step_dir;
  options.run.base_env = req.env;
  options.run.job_vars = req.job_vars;
  options.run.secrets = req.secrets;
  options.run.root_inputs = req.root_inputs;
  options.run.grace = *grace;
  options.run.temp_dir = temp->path();
  options.run.merge_stderr = req.merge_stderr;
  options.timeout = timeout.value_or(Duration(0));
  options.warn_before = warn_before.value_or(Duration(0));
  options.warn_signal = warn_signal;

  // The terminal's part of a cancel: the first Ctrl-C cancels, the second forces.
  int signals_seen = 0;
  auto watch = (*loop)->Watch(sigfd.get(), EPOLLIN, [&](uint32_t) {
    signalfd_siginfo info;
    while (::read(sigfd.get(), &info, sizeof info) == sizeof info) {
      const bool force = ++signals_seen > 1;
      // Act first, then say so: a slow terminal must not delay the signals.
      CancelSource::Effect e = run.Cancel(CancelReason::kRequested, force);
      if (!force) {
        std::fprintf(stderr, "step-runner: %s received: cancelling (grace %s); press Ctrl-C again to "
                     "force\n", SignalName(static_cast<int>(info.ssi_signo)).c_str(),
                     FormatDuration(e.grace.value_or(*grace)).c_str());
      } else {
        std::fprintf(stderr, "step-runner: second signal: killing every process now\n");
      }
    }
  });
  if (!watch.ok()) return Fail(watch.error().message, 1);

  std::optional<RunOutcome> outcome;
  const auto run_started = Clock::now();
  run.Start(std::move(req.root), std::move(options), [&](RunOutcome o) { outcome = std::move(o); });
  (*loop)->RunUntil([&] { return outcome.has_value(); });
  (*loop)->Unwatch(*watch);
  (*sup)->KillAll();
  if (::isatty(2)) progress.Done(OutcomeStatus(outcome->error), Clock::now() - run_started);

  const bool text_format = req.flags.step_results_format == "prototext";
  std::string results_file = req.flags.step_results_file;
  if (results_file.empty() && req.flags.write_step_results) {
    results_file = text_format ? "step-results.txtpb" : req.default_results_file;
  }
  if (!results_file.empty()) {
    std::string body;
    if (text_format) {
      google::protobuf::TextFormat::PrintToString(outcome->result, &body);
    } else {
      body = ResultToJson(outcome->result);
    }
    Status w = WriteFile(results_file, body, 0640);
    if (!w.ok()) std::fprintf(stderr, "step-runner: writing step results: %s\n", w.error().message.c_str());
  }
  if (outcome->error) return Fail(outcome->error->message, ExitCodeFor(outcome->error));
  return 0;
}

}  // namespace sr::cli
