// What the resource tests (tests/resources*_test.cc) share: their fixture, and a figure of a
// step's usage as step-results.json has it.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "support/harness.h"

namespace sr::test {

inline int64_t Num(const nlohmann::json& v, const char* key) {
  if (!v.contains(key)) return 0;
  const nlohmann::json& x = v[key];
  return x.is_string() ? std::stoll(x.get<std::string>()) : x.get<int64_t>();
}

class Resources : public TreeTest {};

}  // namespace sr::test
