#include "engine/outputs.h"

#include <algorithm>
#include <optional>

#include "expr/expr.h"
#include "util/utf8.h"

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

// The value of the four hex digits at line[i], or -1 if they are not four hex digits.
int Hex4(std::string_view line, size_t i) {
  if (i + 4 > line.size()) return -1;
  int v = 0;
  for (size_t k = i; k < i + 4; ++k) {
    const char c = line[k];
    const int d = c >= '0' && c <= '9'   ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                         : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

// Go's encoding/json, which read these files in the Go runner, decodes a string's lone surrogate
// escape (`"\ud800"`, a high one not followed by a low one, or a low one alone) and each byte of
// it that does not start valid UTF-8 to U+FFFD; nlohmann refuses the whole line. So such a line
// is rewritten the way Go reads it before nlohmann parses it: a lone surrogate escape becomes
// `\ufffd`, a bad byte the three bytes of U+FFFD (one per byte, as Go's utf8.DecodeRune goes).
// Outside strings nothing changes: a bad byte there is invalid JSON to Go too, and so is a
// malformed escape, left for nlohmann to refuse. nullopt when nothing needs rewriting.
std::optional<std::string> AsGoReadsIt(std::string_view line) {
  std::string out;
  size_t copied = 0;  // line[0, copied) is in `out`
  auto replace = [&](size_t at, size_t length, std::string_view with) {
    out.append(line, copied, at - copied);
    out.append(with);
    copied = at + length;
  };
  bool in_string = false;
  size_t i = 0;
  while (i < line.size()) {
    const auto c = static_cast<unsigned char>(line[i]);
    if (!in_string) {
      in_string = c == '"';
      ++i;
    } else if (c == '"') {
      in_string = false;
      ++i;
    } else if (c == '\\') {
      const int unit = i + 1 < line.size() && line[i + 1] == 'u' ? Hex4(line, i + 2) : -1;
      if (unit >= 0xD800 && unit <= 0xDBFF && i + 7 < line.size() && line[i + 6] == '\\' &&
          line[i + 7] == 'u' && Hex4(line, i + 8) >= 0xDC00 && Hex4(line, i + 8) <= 0xDFFF) {
        i += 12;  // a pair: nlohmann decodes it
      } else if (unit >= 0xD800 && unit <= 0xDFFF) {
        replace(i, 6, "\\ufffd");
        i += 6;
      } else {
        i += 2;  // any other escape (a bad one stays bad)
      }
    } else if (c < 0x80) {
      ++i;
    } else {
      uint32_t code = 0;
      const size_t length = DecodeUtf8(line, i, code);
      if (length == 0) {
        replace(i, 1, "\xEF\xBF\xBD");
        ++i;
      } else {
        i += length;
      }
    }
  }
  if (copied == 0) return std::nullopt;
  out.append(line, copied);
  return out;
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
    const std::optional<std::string> as_go = AsGoReadsIt(line);
    const std::string_view parsed = as_go ? std::string_view(*as_go) : line;
    json obj = json::parse(parsed.begin(), parsed.end(), nullptr, /*allow_exceptions=*/false);
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
    // An export becomes `NAME=value` in the environment of every later exec step: a NUL would
    // cut it there, an `=` would move the rest of the name into the value. Refused here, where
    // the step that wrote it fails, not the next exec step (contract 7.5).
    const std::string key =
        "read env file: key \"" + ShowNul(name, 200) + "\": ";
    if (name.find('\0') != std::string::npos) {
      return FailedError(key + "the name contains a NUL byte, which a process cannot receive");
    }
    if (name.find('=') != std::string::npos) {
      return FailedError(key + "the name contains \"=\", which cannot be in an environment variable's name");
    }
    if (value.is_string()) {
      if (value.get_ref<const std::string&>().find('\0') != std::string::npos) {
        return FailedError(key + "the value contains a NUL byte, which a process cannot receive");
      }
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
