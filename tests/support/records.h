// Reading termination records (step-results.json, Status as JSON) in tests.
#pragma once

#include <nlohmann/json.hpp>

namespace sr::test {

/// The record of `pid` among a termination's `processes`, or nullptr.
inline const nlohmann::json* FindPid(const nlohmann::json& processes, int pid) {
  for (const auto& p : processes) {
    if (p.value("pid", 0) == pid) return &p;
  }
  return nullptr;
}

}  // namespace sr::test
