// When SIGKILL comes, and the one escalation rule of the project: a later instruction may force
// the kill or bring it closer, never relax it. A job's cancel request, a step's stop order and a
// tree's stop in progress all tighten through Tighten(), so "the grace only shortens" is written
// once.
#pragma once

#include "util/time.h"

namespace sr {

struct KillDeadline {
  /// SIGKILL when this point passes. Clock::time_point::max() = no deadline yet.
  Clock::time_point at = Clock::time_point::max();
  /// SIGKILL now, whatever `at` says.
  bool forced = false;

  /// A deadline `grace` after `from`; a zero grace is a deadline that has already come.
  static KillDeadline After(Clock::time_point from, Duration grace) {
    return KillDeadline{from + std::max(grace, Duration(0)), false};
  }
  static KillDeadline Now() { return KillDeadline{Clock::now(), true}; }

  /// Applies a later instruction: forced stays forced, `at` only moves earlier. Returns whether
  /// anything changed.
  bool Tighten(const KillDeadline& later) {
    bool changed = false;
    if (later.forced && !forced) forced = changed = true;
    if (later.at < at) {
      at = later.at;
      changed = true;
    }
    return changed;
  }
  /// The time left from `from` until SIGKILL (0 when forced or passed).
  Duration Left(Clock::time_point from) const {
    if (forced || at <= from) return Duration(0);
    return std::chrono::duration_cast<Duration>(at - from);
  }
};

}  // namespace sr
