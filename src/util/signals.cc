#include "util/signals.h"

#include <sys/signalfd.h>

#include <cerrno>
#include <algorithm>
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

}  // namespace

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
