#include "util/time.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>

namespace sr {
namespace {

struct Unit {
  std::string_view name;
  int64_t nanos;
};
// Longest names first so "ms" is not read as "m" + "s".
constexpr Unit kUnits[] = {{"ns", 1},           {"us", 1000},         {"µs", 1000},
                           {"ms", 1000000},     {"s", 1000000000},    {"m", 60000000000},
                           {"h", 3600000000000}};

}  // namespace

Result<Duration> ParseDuration(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return InvalidError("invalid duration \"" + std::string(text) + "\": " + why);
  };
  if (text.empty()) return bad("empty");
  if (text == "0") return Duration(0);
  if (text[0] == '-') return bad("negative durations are not allowed");
  if (text[0] == '+') text.remove_prefix(1);
  long double total = 0;
  std::string_view rest = text;
  if (rest.empty()) return bad("no number");
  while (!rest.empty()) {
    size_t i = 0;
    while (i < rest.size() && ((rest[i] >= '0' && rest[i] <= '9') || rest[i] == '.')) ++i;
    if (i == 0) return bad("expected a number at \"" + std::string(rest) + "\"");
    std::string number(rest.substr(0, i));
    if (number == "." || number.find('.') != number.rfind('.')) return bad("malformed number");
    rest.remove_prefix(i);
    const Unit* unit = nullptr;
    for (const Unit& u : kUnits) {
      if (rest.substr(0, u.name.size()) == u.name) {
        unit = &u;
        break;
      }
    }
    if (unit == nullptr) return bad("missing or unknown unit (use ns, us, ms, s, m, h)");
    rest.remove_prefix(unit->name.size());
    total += std::strtold(number.c_str(), nullptr) * unit->nanos;  // stold throws on ERANGE
    if (total > static_cast<long double>(kMaxDuration.count())) {
      return bad("too large (the limit is " + FormatDuration(kMaxDuration) + ")");
    }
  }
  return Duration(static_cast<int64_t>(std::llround(total)));
}

std::string FormatDuration(Duration d) {
  int64_t ns = d.count();
  if (ns == 0) return "0s";
  std::string sign = ns < 0 ? "-" : "";
  if (ns < 0) ns = -ns;
  auto fixed = [](double v) {
    std::string s = std::to_string(v);
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  };
  if (ns < 1000) return sign + std::to_string(ns) + "ns";
  if (ns < 1000000) return sign + fixed(ns / 1e3) + "µs";
  if (ns < 1000000000) return sign + fixed(ns / 1e6) + "ms";
  int64_t hours = ns / 3600000000000;
  ns %= 3600000000000;
  int64_t minutes = ns / 60000000000;
  ns %= 60000000000;
  std::string out = sign;
  if (hours) out += std::to_string(hours) + "h";
  if (hours || minutes) out += std::to_string(minutes) + "m";
  out += fixed(ns / 1e9) + "s";
  return out;
}

std::chrono::system_clock::time_point WallNow() { return std::chrono::system_clock::now(); }

}  // namespace sr
