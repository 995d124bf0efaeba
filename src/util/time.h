// Durations and clocks. A duration on the command line or in a step file is written like Go's
// time.ParseDuration: "30s", "1m30s", "500ms", "1h", "250us", "0".
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "util/result.h"

namespace sr {

using Clock = std::chrono::steady_clock;
using Duration = std::chrono::nanoseconds;

/// Parses "1m30s"-style text. Negative values and unknown units are errors naming the text.
Result<Duration> ParseDuration(std::string_view text);
/// Formats like Go: "1m30s", "500ms", "0s".
std::string FormatDuration(Duration d);
/// Wall-clock now, for timestamps shown to users.
std::chrono::system_clock::time_point WallNow();

}  // namespace sr
