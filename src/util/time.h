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

/// The longest duration anything accepts: 10 years (87600h). Go's ParseDuration goes up to
/// 2^63-1 ns (~292 years), but `now + d` on the steady clock then overflows int64 (undefined
/// behaviour; in practice a deadline in the past: `--timeout 2562047h` timed out at once and
/// `--grace 2562047h` killed at once). 10 years leaves centuries of headroom for every sum of
/// durations the runner forms; the service holds RunRequest durations to the same limit.
inline constexpr Duration kMaxDuration = std::chrono::hours(10 * 365 * 24);

/// Parses "1m30s"-style text. Negative values, values above kMaxDuration and unknown units are
/// errors naming the text.
Result<Duration> ParseDuration(std::string_view text);
/// Formats like Go: "1m30s", "500ms", "0s".
std::string FormatDuration(Duration d);
/// Wall-clock now, for timestamps shown to users.
std::chrono::system_clock::time_point WallNow();

}  // namespace sr
