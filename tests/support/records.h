// Reading termination records (step-results.json, Status as JSON) in tests.
#pragma once

#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include <nlohmann/json.hpp>

namespace sr::test {

/// The record of `pid` among a termination's `processes`, or nullptr.
inline const nlohmann::json* FindPid(const nlohmann::json& processes, int pid) {
  for (const auto& p : processes) {
    if (p.value("pid", 0) == pid) return &p;
  }
  return nullptr;
}

/// A message (Status, a termination record) as the JSON step-results.json has.
inline nlohmann::json ToJson(const google::protobuf::Message& m) {
  std::string text;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(m, &text).ok());
  return nlohmann::json::parse(text);
}

/// Every object key anywhere in `v`.
inline void Keys(const nlohmann::json& v, std::set<std::string>* out) {
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      out->insert(it.key());
      Keys(it.value(), out);
    }
  } else if (v.is_array()) {
    for (const auto& e : v) Keys(e, out);
  }
}

}  // namespace sr::test
