// The per-step output and export files: JSON Lines, one {"name": ..., "value": ...} per line
// (reference.md 3.6, 3.7).
#pragma once

#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "stepfile/stepfile.h"
#include "util/result.h"

namespace sr::engine {

/// Parses JSON Lines into name → value (duplicate names: last wins). Errors name the line:
/// `failed to unmarshal JSON at line 3: "name" field is missing`; with `quote_line` (Go's
/// CI_STEPS_DEBUG=true) the line itself follows: `…, line: <raw line>`.
Result<std::map<std::string, nlohmann::json>> ParseJsonLines(std::string_view text, bool quote_line = false);

/// Checks outputs against the spec (declared names, exact types, defaults for missing ones).
Result<std::map<std::string, nlohmann::json>> ValidateOutputs(
    const stepfile::Spec& spec, std::map<std::string, nlohmann::json> written);

/// Converts export values to strings (numbers plain, bools true/false; structs are errors).
Result<std::map<std::string, std::string>> ExportsToEnv(
    const std::map<std::string, nlohmann::json>& exports);

/// Largest output/export file read (bytes); a bigger file is an error, not a hang.
constexpr size_t kMaxOutputFileBytes = 64 << 20;
/// Deepest nesting of arrays and objects in one line of an output/export file, as for step text.
/// nlohmann parses any depth without recursion, but copying a value and converting it to a
/// protobuf Value recurse: a value nested a million levels deep (a 2 MB line) overflowed the
/// stack. Checked before parsing, so a deep line costs one scan.
constexpr int kMaxOutputDepth = 64;

}  // namespace sr::engine
