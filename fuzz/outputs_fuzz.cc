// Output/export files: ParseJsonLines, then ValidateOutputs against a fixed spec and ExportsToEnv,
// as the engine does after a step. None may throw or crash; errors are step failures naming
// the line; a valid result only holds declared outputs of their declared types.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/outputs.h"
#include "fuzz_check.h"

using sr::Error;
using sr::fuzz::Show;
using sr::stepfile::ValueType;

namespace {

const sr::stepfile::Spec& TheSpec() {
  static const sr::stepfile::Spec spec = [] {
    sr::stepfile::Spec s;
    s.outputs["s"].type = ValueType::kString;
    s.outputs["n"].type = ValueType::kNumber;
    s.outputs["n"].default_value = 3;
    s.outputs["b"].type = ValueType::kBoolean;
    s.outputs["b"].default_value = false;
    s.outputs["o"].type = ValueType::kStruct;
    s.outputs["o"].default_value = nlohmann::json::object();
    s.outputs["a"].type = ValueType::kArray;
    s.outputs["a"].default_value = nlohmann::json::array();
    return s;
  }();
  return spec;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = sr::engine::ParseJsonLines(text);
  if (!parsed.ok()) {
    FUZZ_CHECK(parsed.error().kind == Error::Kind::kFailed, "error kind for " + Show(text));
    FUZZ_CHECK(parsed.error().message.rfind("failed to unmarshal JSON at line ", 0) == 0,
               "error does not name the line: " + Show(parsed.error().message));
    return 0;
  }
  for (const auto& [name, value] : *parsed) {
    FUZZ_CHECK(!name.empty() && !value.is_null(), "empty name or null value from " + Show(text));
  }

  auto env = sr::engine::ExportsToEnv(*parsed);
  if (env.ok()) {
    FUZZ_CHECK(env->size() == parsed->size(), "ExportsToEnv dropped a variable: " + Show(text));
  } else {
    FUZZ_CHECK(env.error().kind == Error::Kind::kFailed, "ExportsToEnv error kind");
  }

  auto valid = sr::engine::ValidateOutputs(TheSpec(), std::move(*parsed));
  if (!valid.ok()) {
    FUZZ_CHECK(valid.error().kind == Error::Kind::kFailed, "ValidateOutputs error kind");
    return 0;
  }
  for (const auto& [name, decl] : TheSpec().outputs) {
    auto it = valid->find(name);
    FUZZ_CHECK(it != valid->end(), "declared output \"" + name + "\" missing after validation");
    FUZZ_CHECK(sr::stepfile::CheckType(decl.type, it->second).ok(),
               "output \"" + name + "\" has the wrong type after validation: " + Show(text));
  }
  FUZZ_CHECK(valid->size() == TheSpec().outputs.size(), "undeclared output accepted: " + Show(text));
  return 0;
}
