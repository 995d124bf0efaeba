// Signal names <-> numbers, for step files ("SIGINT"), flags (--warn-signal) and messages.
#pragma once

#include <csignal>
#include <initializer_list>
#include <string>
#include <string_view>

#include "util/fd.h"
#include "util/result.h"

namespace sr {

/// Accepts "SIGTERM", "TERM", "sigterm" or "15". Unknown names are an error naming the text.
Result<int> ParseSignal(std::string_view name);
/// "SIGTERM" for 15; "signal 42" when there is no name.
std::string SignalName(int signo);

/// Blocks `signals` in the calling thread, and so in every thread it starts afterwards, and
/// returns them as a set: a process that takes its signals in one place (sigtimedwait or a
/// signalfd) blocks them before any other thread exists, or one of those threads gets them.
sigset_t BlockSignals(std::initializer_list<int> signals);

/// Blocks `signals` (as BlockSignals) and returns a non-blocking, close-on-exec signalfd that
/// reads them, for the event loop.
Result<UniqueFd> BlockedSignalFd(std::initializer_list<int> signals);

}  // namespace sr
