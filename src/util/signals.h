// Signal names <-> numbers, for step files ("SIGINT"), flags (--warn-signal) and messages.
#pragma once

#include <csignal>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "util/fd.h"
#include "util/result.h"

namespace sr {

/// Accepts "SIGTERM", "TERM", "sigterm" or "15". Unknown names are an error naming the text.
Result<int> ParseSignal(std::string_view name);
/// ParseSignal for the signal sent as a warning before the deadline, which exists so that a stuck
/// job can be diagnosed before it dies: the process must live on to answer it. SIGKILL (it ends
/// the process) and SIGSTOP (it freezes it until the deadline) are errors; `timeout` names the
/// setting that does end the job (`--timeout`, `timeout`), for the hint.
Result<int> ParseWarningSignal(std::string_view name, std::string_view timeout);
/// ParseSignal for a step's cancel signal (`cancel: {signal: ...}`). SIGSTOP is an error: the
/// processes would be frozen for the whole grace, clean up nothing and then be killed. SIGKILL is
/// allowed: it asks for what it says, a kill without grace.
Result<int> ParseCancelSignal(std::string_view name);
/// "SIGTERM" for 15; "signal 42" when there is no name.
std::string SignalName(int signo);

/// Sets `signo`'s disposition for the whole process: SIG_IGN, SIG_DFL or a handler. Every change
/// of a disposition in the runner goes through here, so that a spawn knows which signals its
/// child must set back to SIG_DFL (SignalsToReset) without asking the kernel about all 64.
void SetSignalDisposition(int signo, void (*handler)(int));

/// The signals, as bit (signo - 1), that a child must set back to SIG_DFL before it execs so that
/// it starts with every disposition at its default and no runner handler can run in it: every
/// signal that was not at SIG_DFL when this was first called (inherited SIG_IGN, anything set
/// before: the kernel is asked once per process), every one set through SetSignalDisposition
/// since, and the two a library loaded on demand may change later (libcurl ignores SIGPIPE
/// around its sends; its resolver without threads catches SIGALRM). Never SIGKILL, SIGSTOP or the
/// C library's internal signals. The first call is not async-signal-safe; later ones are.
uint64_t SignalsToReset();

/// Blocks `signals` in the calling thread, and so in every thread it starts afterwards, and
/// returns them as a set: a process that takes its signals in one place (sigtimedwait or a
/// signalfd) blocks them before any other thread exists, or one of those threads gets them.
sigset_t BlockSignals(std::initializer_list<int> signals);

/// Blocks `signals` (as BlockSignals) and returns a non-blocking, close-on-exec signalfd that
/// reads them, for the event loop.
Result<UniqueFd> BlockedSignalFd(std::initializer_list<int> signals);

}  // namespace sr
