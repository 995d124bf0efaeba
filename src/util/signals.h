// Signal names <-> numbers, for step files ("SIGINT"), flags (--warn-signal) and messages.
#pragma once

#include <string>
#include <string_view>

#include "util/result.h"

namespace sr {

/// Accepts "SIGTERM", "TERM", "sigterm" or "15". Unknown names are an error naming the text.
Result<int> ParseSignal(std::string_view name);
/// "SIGTERM" for 15; "signal 42" when there is no name.
std::string SignalName(int signo);

}  // namespace sr
