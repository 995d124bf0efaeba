// Reading a field of JSON that came from outside (a registry's manifest or index, a token reply,
// an error body, a docker auth config, step inputs). nlohmann's value() and get<>() throw when a
// key holds another type, and an exception escaping one of our coroutines ends the whole runner;
// this reads a field only when it has the expected type and otherwise says which document and
// which key were wrong, as an error value.
#pragma once

#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "util/result.h"

namespace sr {

/// `doc[key]` as a T (std::string or nlohmann::json); `fallback` when `doc` has no such key or
/// it is null. A nlohmann::json fallback that is an object or an array asks for that type (any
/// type for a null fallback). `what` names the document: the errors read
/// `manifest sha256:…: "digest" is a number, want a string` and
/// `manifest sha256:…: is an array, want a JSON object`.
template <class T>
Result<T> JsonField(const nlohmann::json& doc, const std::string& key, const std::string& what,
                    T fallback = T{}) {
  static_assert(std::is_same_v<T, std::string> || std::is_same_v<T, nlohmann::json>);
  if (!doc.is_object()) {
    return FailedError(what + ": is " + (doc.is_array() || doc.is_object() ? "an " : "a ") +
                       doc.type_name() + ", want a JSON object");
  }
  auto it = doc.find(key);
  if (it == doc.end() || it->is_null()) return fallback;
  const char* want = nullptr;
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) want = "a string";
  } else {
    if (fallback.is_object() && !it->is_object()) want = "an object";
    if (fallback.is_array() && !it->is_array()) want = "an array";
  }
  if (want != nullptr) {
    const std::string article = it->is_array() || it->is_object() ? "an " : "a ";
    return FailedError(what + ": \"" + key + "\" is " + article + it->type_name() + ", want " + want);
  }
  if constexpr (std::is_same_v<T, std::string>) {
    return it->template get<std::string>();
  } else {
    return *it;
  }
}

}  // namespace sr
