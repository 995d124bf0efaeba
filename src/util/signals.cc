#include "util/signals.h"

#include <sys/signalfd.h>

#include <cerrno>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <csignal>

namespace sr {
namespace {

struct Named {
  const char* name;
  int signo;
};
constexpr Named kSignals[] = {
    {"SIGHUP", SIGHUP},     {"SIGINT", SIGINT},       {"SIGQUIT", SIGQUIT},
    {"SIGILL", SIGILL},     {"SIGTRAP", SIGTRAP},     {"SIGABRT", SIGABRT},
    {"SIGBUS", SIGBUS},     {"SIGFPE", SIGFPE},       {"SIGKILL", SIGKILL},
    {"SIGUSR1", SIGUSR1},   {"SIGSEGV", SIGSEGV},     {"SIGUSR2", SIGUSR2},
    {"SIGPIPE", SIGPIPE},   {"SIGALRM", SIGALRM},     {"SIGTERM", SIGTERM},
    {"SIGCHLD", SIGCHLD},   {"SIGCONT", SIGCONT},     {"SIGSTOP", SIGSTOP},
    {"SIGTSTP", SIGTSTP},   {"SIGTTIN", SIGTTIN},     {"SIGTTOU", SIGTTOU},
    {"SIGURG", SIGURG},     {"SIGXCPU", SIGXCPU},     {"SIGXFSZ", SIGXFSZ},
    {"SIGVTALRM", SIGVTALRM}, {"SIGPROF", SIGPROF},   {"SIGWINCH", SIGWINCH},
    {"SIGIO", SIGIO},       {"SIGPWR", SIGPWR},       {"SIGSYS", SIGSYS},
};

constexpr uint64_t Bit(int signo) { return uint64_t{1} << (signo - 1); }

// Signals set away from SIG_DFL through SetSignalDisposition (and, once seeded, every one that
// was not at SIG_DFL then).
std::atomic<uint64_t> g_not_default{Bit(SIGPIPE) | Bit(SIGALRM)};

}  // namespace

void SetSignalDisposition(int signo, void (*handler)(int)) {
  // Marked before the change: a spawn on another thread may see a bit too many, never too few.
  if (handler != SIG_DFL && signo > 0 && signo <= 64) g_not_default.fetch_or(Bit(signo));
  struct sigaction sa {};
  sa.sa_handler = handler;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(signo, &sa, nullptr);
}

uint64_t SignalsToReset() {
  // Once per process: what was set before anything could go through SetSignalDisposition
  // (inherited SIG_IGN: `nohup`, a shell's background job; a library's start-up).
  static const bool seeded = [] {
    uint64_t found = 0;
    for (int sig = 1; sig < NSIG && sig <= 64; ++sig) {
      struct sigaction old {};
      // The C library refuses its internal signals (EINVAL); their handlers are its own.
      if (::sigaction(sig, nullptr, &old) != 0) continue;
      const bool dfl = (old.sa_flags & SA_SIGINFO) == 0 && old.sa_handler == SIG_DFL;
      if (!dfl) found |= Bit(sig);
    }
    g_not_default.fetch_or(found);
    return true;
  }();
  (void)seeded;
  return g_not_default.load() & ~(Bit(SIGKILL) | Bit(SIGSTOP));
}

Result<int> ParseSignal(std::string_view name) {
  std::string upper(name);
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  if (!upper.empty() && std::all_of(upper.begin(), upper.end(), ::isdigit) && upper.size() < 3) {
    int n = std::stoi(upper);
    if (n > 0 && n < NSIG) return n;
  }
  if (upper.rfind("SIG", 0) != 0) upper = "SIG" + upper;
  for (const Named& s : kSignals) {
    if (upper == s.name) return s.signo;
  }
  return InvalidError("unknown signal \"" + std::string(name) + "\"");
}

Result<int> ParseWarningSignal(std::string_view name, std::string_view timeout) {
  SR_ASSIGN_OR_RETURN(int signo, ParseSignal(name));
  if (signo == SIGKILL) {
    return InvalidError("SIGKILL cannot be a warning: it ends the process (use " +
                        std::string(timeout) + ")");
  }
  if (signo == SIGSTOP) {
    return InvalidError("SIGSTOP cannot be a warning: it freezes the process, which then cannot "
                        "report anything");
  }
  return signo;
}

Result<int> ParseCancelSignal(std::string_view name) {
  SR_ASSIGN_OR_RETURN(int signo, ParseSignal(name));
  if (signo == SIGSTOP) {
    return InvalidError("SIGSTOP cannot be a cancel signal: it freezes the processes, which then "
                        "clean up nothing and are killed when the grace ends");
  }
  return signo;
}

std::string SignalName(int signo) {
  for (const Named& s : kSignals) {
    if (s.signo == signo) return s.name;
  }
  return "signal " + std::to_string(signo);
}

sigset_t BlockSignals(std::initializer_list<int> signals) {
  sigset_t set;
  ::sigemptyset(&set);
  for (int sig : signals) ::sigaddset(&set, sig);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

Result<UniqueFd> BlockedSignalFd(std::initializer_list<int> signals) {
  const sigset_t set = BlockSignals(signals);
  UniqueFd fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd.valid()) return ErrnoError("signalfd", errno);
  return fd;
}

}  // namespace sr
