// `resources: {memory, pids, cpus}` (contract 8.1) and the value syntax the command line shares.
#include <cmath>
#include <cstdlib>
#include <limits>

#include "stepfile/walk.h"

namespace sr::stepfile {
namespace {

constexpr const char* kMemorySyntax = "bytes, or a number with K M G Ki Mi Gi";

// The number at the front of `text` and where it stopped; strtod alone accepts "inf", "0x1p3"
// and leading spaces, none of which is a size anyone means.
bool SplitNumber(std::string_view text, double& value, std::string_view& suffix) {
  size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
  if (i == 0 || text.substr(0, i) == ".") return false;
  std::string digits(text.substr(0, i));
  char* end = nullptr;
  value = std::strtod(digits.c_str(), &end);
  if (end != digits.c_str() + digits.size()) return false;
  suffix = text.substr(i);
  return true;
}

}  // namespace

Result<int64_t> ParseMemory(std::string_view text) {
  double value = 0;
  std::string_view suffix;
  const std::string quoted = "\"" + std::string(text) + "\"";
  if (!SplitNumber(text, value, suffix)) {
    return InvalidError(quoted + " is not a size (" + kMemorySyntax + ")");
  }
  double unit = 0;
  if (suffix.empty()) unit = 1;
  else if (suffix == "K") unit = 1e3;
  else if (suffix == "M") unit = 1e6;
  else if (suffix == "G") unit = 1e9;
  else if (suffix == "Ki") unit = 1024.0;
  else if (suffix == "Mi") unit = 1024.0 * 1024;
  else if (suffix == "Gi") unit = 1024.0 * 1024 * 1024;
  if (unit == 0) {
    return InvalidError(quoted + " has an unknown unit \"" + std::string(suffix) + "\" (" +
                        kMemorySyntax + ")");
  }
  const double bytes = std::floor(value * unit);
  // Below 1 MiB the kernel cannot even make the step's group (mkdir: Cannot allocate memory),
  // let alone start a process in it.
  if (bytes < kMinMemoryBytes) return InvalidError(quoted + " is below the smallest memory limit, 1Mi");
  if (bytes > 1e18) return InvalidError(quoted + " is too large");
  return static_cast<int64_t>(bytes);
}

Result<double> ParseCpus(std::string_view text) {
  double value = 0;
  std::string_view suffix;
  if (!SplitNumber(text, value, suffix) || !suffix.empty() || !(value > 0) || value > 1e6) {
    return InvalidError("\"" + std::string(text) + "\" is not a positive number of CPUs");
  }
  // The kernel's CFS quota is at least 1 ms per 100 ms period: a smaller limit was raised to it
  // without a word.
  if (value < kMinCpus) {
    return InvalidError("\"" + std::string(text) + "\" is below the smallest CPU limit, 0.01");
  }
  return value;
}

Result<int64_t> ParsePids(std::string_view text) {
  int64_t value = 0;
  bool digits = !text.empty();
  for (char c : text) {
    if (c < '0' || c > '9' || value > std::numeric_limits<int32_t>::max()) {
      digits = false;
      break;
    }
    value = value * 10 + (c - '0');
  }
  if (!digits || value < 1) {
    return InvalidError("\"" + std::string(text) + "\" is not a positive whole number of processes");
  }
  return value;
}

namespace internal {

Result<Limits> ReadResources(Ctx& ctx, const Node& node, const std::string& where) {
  SR_ASSIGN_OR_RETURN(Fields f, ReadFields(ctx, node, where, {"memory", "pids", "cpus"}));
  Limits limits;
  for (const Field& field : f) {
    const std::string what = where + " " + field.key;
    SR_ASSIGN_OR_RETURN(std::string text, ReadString(ctx, *field.value, what));
    Status ok = Ok();
    if (field.key == "memory") {
      auto v = ParseMemory(text);
      if (v.ok()) limits.memory_bytes = *v; else ok = v.error();
    } else if (field.key == "pids") {
      auto v = ParsePids(text);
      if (v.ok()) limits.pids = *v; else ok = v.error();
    } else {
      auto v = ParseCpus(text);
      if (v.ok()) limits.cpus = *v; else ok = v.error();
    }
    if (!ok.ok()) return Err(ctx, *field.value, what + ": " + ok.error().message);
  }
  return limits;
}

}  // namespace internal
}  // namespace sr::stepfile
