#include "engine/outputs.h"

#include <algorithm>

#include "expr/expr.h"

namespace sr::engine {
namespace {

using json = nlohmann::json;

std::string LineError(size_t line, const std::string& what) {
  return "failed to unmarshal JSON at line " + std::to_string(line) + ": " + what;
}

// Go prints export numbers in plain decimal, without an exponent (reference.md 3.6).
std::string PlainNumber(const json& v) {
  if (v.is_number_integer()) return v.dump();
  return expr::PlainDecimal(v.get<double>());
}

// Deepest nesting of [ and { outside strings. Only a bound: the line may still be invalid JSON.
int NestingDepth(std::string_view line) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

Result<std::map<std::string, json>> ParseJsonLines(std::string_view text, bool quote_line) {
  std::map<std::string, json> out;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (line.empty() || line == "\r") continue;
    auto fail = [&](const std::string& what) {
      std::string message = LineError(line_no, what);
      // At most 1 KiB of it: a bad line may be megabytes.
      if (quote_line) message += ", line: " + std::string(line.substr(0, 1024)) + (line.size() > 1024 ? "..." : "");
      return FailedError(std::move(message));
    };
    if (NestingDepth(line) > kMaxOutputDepth) {
      return fail("nested deeper than " + std::to_string(kMaxOutputDepth) + " levels");
    }
    json obj = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (obj.is_discarded()) return fail("invalid JSON");
    if (!obj.is_object()) return fail("not a JSON object");
    auto name = obj.find("name");
    if (name == obj.end()) return fail("\"name\" field is missing");
    if (name->is_null()) return fail("\"name\" value is null");
    if (!name->is_string()) return fail("\"name\" must be a string");
    if (name->get<std::string>().empty()) return fail("\"name\" value is empty");
    auto value = obj.find("value");
    if (value == obj.end()) return fail("\"value\" field is missing");
    if (value->is_null()) return fail("\"value\" value is null");
    out[name->get<std::string>()] = *value;
  }
  return out;
}

Result<std::map<std::string, json>> ValidateOutputs(const stepfile::Spec& spec,
                                                    std::map<std::string, json> written) {
  for (auto& [name, value] : written) {
    auto it = spec.outputs.find(name);
    if (it == spec.outputs.end()) {
      return FailedError("key \"" + name +
                         "\": unexpected output, remove from step outputs or define in step "
                         "specification");
    }
    std::string got = stepfile::JsonTypeName(value);
    std::string want = stepfile::ValueTypeName(it->second.type);
    if (got != want) {
      return FailedError("key \"" + name + "\": mismatched types, declared as \"" + want +
                         "\" in step specification and received from step as type \"" + got +
                         "\"");
    }
  }
  for (auto& [name, decl] : spec.outputs) {
    if (written.count(name)) continue;
    if (!decl.default_value) {
      return FailedError("key \"" + name +
                         "\": missing output, add to step outputs or remove from step "
                         "specification");
    }
    written[name] = *decl.default_value;
  }
  return written;
}

Result<std::map<std::string, std::string>> ExportsToEnv(const std::map<std::string, json>& exports) {
  std::map<std::string, std::string> env;
  for (auto& [name, value] : exports) {
    if (value.is_string()) {
      env[name] = value.get<std::string>();
    } else if (value.is_number()) {
      env[name] = PlainNumber(value);
    } else if (value.is_boolean()) {
      env[name] = value.get<bool>() ? "true" : "false";
    } else {
      return FailedError("read env file: key \"" + name + "\": cannot convert value type \"" +
                         stepfile::JsonTypeName(value) + "\" to string");
    }
  }
  return env;
}

}  // namespace sr::engine
