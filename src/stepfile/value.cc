// YAML scalars and collections → JSON values, and the small type helpers of stepfile.h.
//
// Scalars are resolved the way Go's yaml.v3 resolves them into interface{} (its resolve.go), so
// a step file means the same thing to both runners:
//   * quoted and block scalars are strings; `!!str` forces a string;
//   * plain true/True/TRUE/false/False/FALSE are booleans (not yes/no/on/off: that is YAML 1.1);
//   * plain null/Null/NULL/~ and empty values are null;
//   * text starting with a digit, '+', '-' or '.' is tried, after removing '_', as Go's
//     strconv.ParseInt(s, 0, 64) (so 0x1F, 0o17, 0b101 and C-style octal 017 are integers), then
//     ParseUint, then as a decimal float (`1.5`, `1e3`, `.5`); integers stay integers (3 is not
//     3.0); anything else (dates, versions such as 1.2.3) stays a string.
// Difference, on purpose: .inf/.nan are errors (JSON and our outputs cannot carry them).
// Merge keys (`<<`) never get here: yaml_tree.cc has applied them, as yaml.v3 does.
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <limits>
#include <unordered_map>

#include "stepfile/walk.h"

namespace sr::stepfile {

std::string Mark::ToString() const {
  if (line <= 0) return source;
  std::string out = source + ":" + std::to_string(line);
  if (column > 0) out += ":" + std::to_string(column);
  return out;
}

const char* ValueTypeName(ValueType t) {
  switch (t) {
    case ValueType::kString:
      return "string";
    case ValueType::kNumber:
      return "number";
    case ValueType::kBoolean:
      return "boolean";
    case ValueType::kStruct:
      return "struct";
    case ValueType::kArray:
      return "array";
  }
  return "unknown";
}

std::string JsonTypeName(const Value& v) {
  if (v.is_null()) return "null";
  if (v.is_string()) return "string";
  if (v.is_number()) return "number";
  if (v.is_boolean()) return "boolean";
  if (v.is_object()) return "struct";
  if (v.is_array()) return "array";
  return "unknown";
}

Status CheckType(ValueType type, const Value& value) {
  bool ok = false;
  switch (type) {
    case ValueType::kString:
      ok = value.is_string();
      break;
    case ValueType::kNumber:
      ok = value.is_number();
      break;
    case ValueType::kBoolean:
      ok = value.is_boolean();
      break;
    case ValueType::kStruct:
      ok = value.is_object();
      break;
    case ValueType::kArray:
      ok = value.is_array();
      break;
  }
  if (ok) return Ok();
  return InvalidError(std::string("declared ") + ValueTypeName(type) + ", got " +
                      JsonTypeName(value));
}

namespace internal {
namespace {

constexpr std::string_view kTagPrefix = "tag:yaml.org,2002:";

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// strconv.ParseInt / ParseUint with base 0: optional sign (ParseInt only), then 0x / 0o / 0b
// prefixes or a leading 0 for octal. Returns false on syntax errors and on overflow of uint64.
bool ParseGoInteger(std::string_view s, bool allow_sign, bool& negative, uint64_t& magnitude) {
  negative = false;
  if (allow_sign && !s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  unsigned base = 10;
  if (s.size() >= 2 && s[0] == '0') {
    char p = static_cast<char>(s[1] | 0x20);
    base = p == 'x' ? 16 : p == 'b' ? 2 : 8;
    s.remove_prefix(p == 'x' || p == 'b' || p == 'o' ? 2 : 1);
  }
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    char l = static_cast<char>(c | 0x20);
    unsigned d = IsDigit(c)               ? unsigned(c - '0')
                 : (l >= 'a' && l <= 'f') ? unsigned(l - 'a' + 10)
                                          : 99;
    if (d >= base) return false;
    if (v > (std::numeric_limits<uint64_t>::max() - d) / base) return false;
    v = v * base + d;
  }
  magnitude = v;
  return true;
}

// yaml.v3's yamlStyleFloat: ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
// (hand-written: std::regex recurses per character and can overflow the stack on long text).
bool IsYamlFloat(std::string_view s) {
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < s.size() && IsDigit(s[i])) ++i;
    return i > start;
  };
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digits()) return false;
  } else {
    if (!digits()) return false;
    if (i < s.size() && s[i] == '.') {
      ++i;
      digits();
    }
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == s.size();
}

// A plain (untagged, unquoted) scalar. nullopt = not a number/bool: a string.
Result<std::optional<Value>> ResolvePlain(const Ctx& ctx, const Node& n) {
  const std::string& in = n.text;
  if (in == "true" || in == "True" || in == "TRUE") return std::optional<Value>(true);
  if (in == "false" || in == "False" || in == "FALSE") return std::optional<Value>(false);
  if (in.empty() || in == "~" || in == "null" || in == "Null" || in == "NULL") {
    return std::optional<Value>(nullptr);
  }
  for (const char* special : {".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf",
                              "+.INF", "-.inf", "-.Inf", "-.INF"}) {
    if (in == special) {
      return Err(ctx, n, "\"" + in + "\" is not a finite number (quote it to use it as a string)");
    }
  }
  return YamlNumber(in);
}

// How many nodes `n` expands to, aliases included, capped at limit + 1. Shared (aliased)
// collections are counted once and remembered, so measuring a "billion laughs" costs time in
// proportion to its text, not to its expansion. -1 = deeper than kMaxDepth (conversion reports
// that with the right position).
struct Expanded {
  long nodes = 0, bytes = 0;
};

Expanded ExpandedSize(const Node& n, const Expanded& limit, std::unordered_map<const Node*, Expanded>& memo,
                      int depth) {
  if (n.kind == Node::Kind::kNull || n.kind == Node::Kind::kScalar) {
    return {1, kNodeBytes + static_cast<long>(n.text.size())};
  }
  if (depth > kMaxDepth) return {-1, 0};
  if (auto it = memo.find(&n); it != memo.end()) return it->second;
  Expanded total{1, kNodeBytes};
  for (const Node* item : n.items) {
    Expanded size = ExpandedSize(*item, limit, memo, depth + 1);
    if (size.nodes < 0) return size;
    total.nodes += size.nodes;
    total.bytes = std::min(total.bytes + size.bytes, limit.bytes + 1);  // saturates
    // Only the node count stops the walk (the memo keeps it proportional to the text), so a
    // bomb of tiny scalars is reported by its nodes, one of large scalars by its bytes.
    if (total.nodes > limit.nodes) {
      total.nodes = limit.nodes + 1;
      break;
    }
  }
  memo[&n] = total;
  return total;
}

Error TooManyBytes(const Ctx& ctx, const Node& n) {
  return Err(ctx, n, "value too large: more than " + std::to_string(kMaxValueBytes) +
                         " bytes after expanding aliases");
}

}  // namespace

std::string NodeTypeName(const Node& node) {
  switch (node.kind) {
    case Node::Kind::kNull:
      return "null";
    case Node::Kind::kSequence:
      return "array";
    case Node::Kind::kMapping:
      return "struct";
    case Node::Kind::kScalar:
      break;
  }
  Ctx ctx;
  auto v = ResolveScalar(ctx, node);
  return v.ok() ? JsonTypeName(*v) : "string";
}

Result<Value> ResolveScalar(const Ctx& ctx, const Node& n) {
  if (n.kind == Node::Kind::kNull) return Value(nullptr);
  if (n.kind != Node::Kind::kScalar)
    return Err(ctx, n, "expected a scalar, got " + NodeTypeName(n));
  if (n.quoted) return Value(n.text);
  if (n.tag.empty()) {
    SR_ASSIGN_OR_RETURN(auto v, ResolvePlain(ctx, n));
    return v ? *v : Value(n.text);
  }
  std::string_view tag = n.tag;
  if (tag == std::string(kTagPrefix) + "str") return Value(n.text);
  auto bad = [&](const char* want) {
    return Err(ctx, n, "cannot read \"" + n.text + "\" as " + want);
  };
  if (tag.substr(0, kTagPrefix.size()) == kTagPrefix) {
    tag.remove_prefix(kTagPrefix.size());
    SR_ASSIGN_OR_RETURN(auto v, ResolvePlain(ctx, n));
    Value value = v ? *v : Value(n.text);
    if (tag == "null") {
      if (!value.is_null()) return bad("!!null");
      return value;
    }
    if (tag == "bool") {
      if (!value.is_boolean()) return bad("!!bool");
      return value;
    }
    if (tag == "int") {
      if (!value.is_number_integer()) return bad("!!int");
      return value;
    }
    if (tag == "float") {
      if (!value.is_number()) return bad("!!float");
      return Value(value.get<double>());
    }
  }
  return Err(ctx, n, "unsupported tag \"" + n.tag + "\"");
}

Result<Value> ToValue(Ctx& ctx, const Node& n, int depth) {
  if (depth == 0 && (n.kind == Node::Kind::kSequence || n.kind == Node::Kind::kMapping)) {
    // Measure before building, so an alias bomb fails at once instead of after a million nodes.
    std::unordered_map<const Node*, Expanded> memo;
    Expanded size = ExpandedSize(n, {ctx.budget, ctx.bytes}, memo, 0);
    if (size.nodes > ctx.budget) {
      return Err(ctx, n,
                 "value too large: more than " + std::to_string(kMaxNodes) +
                     " nodes after expanding aliases");
    }
    if (size.bytes > ctx.bytes) return TooManyBytes(ctx, n);
  }
  SR_RETURN_IF_ERROR(Charge(ctx, n));
  ctx.bytes -= kNodeBytes + static_cast<long>(n.text.size());
  if (ctx.bytes < 0) return TooManyBytes(ctx, n);
  if (n.kind == Node::Kind::kNull || n.kind == Node::Kind::kScalar) return ResolveScalar(ctx, n);
  if (depth >= kMaxDepth) {
    return Err(ctx, n, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
  }
  bool sequence = n.kind == Node::Kind::kSequence;
  if (!n.tag.empty() && n.tag != std::string(kTagPrefix) + (sequence ? "seq" : "map")) {
    return Err(ctx, n, "unsupported tag \"" + n.tag + "\"");
  }
  if (sequence) {
    Value out = Value::array();
    for (const Node* item : n.items) {
      SR_ASSIGN_OR_RETURN(Value v, ToValue(ctx, *item, depth + 1));
      out.push_back(std::move(v));
    }
    return out;
  }
  Value out = Value::object();
  for (size_t i = 0; i + 1 < n.items.size(); i += 2) {
    const Node& key = *n.items[i];
    if (key.kind != Node::Kind::kScalar) {
      return Err(ctx, key, "mapping keys must be strings, got " + NodeTypeName(key));
    }
    if (out.contains(key.text)) {
      int first = 0;  // rare: look the first one up only now
      for (size_t j = 0; j < i && first == 0; j += 2) {
        if (n.items[j]->text == key.text) first = n.items[j]->line;
      }
      return Err(
          ctx, key,
          "duplicate key \"" + key.text + "\" (first at line " + std::to_string(first) + ")");
    }
    SR_ASSIGN_OR_RETURN(Value v, ToValue(ctx, *n.items[i + 1], depth + 1));
    out[key.text] = std::move(v);
  }
  return out;
}

}  // namespace internal

std::optional<Value> YamlNumber(std::string_view in, bool* out_of_range) {
  using internal::IsDigit;
  if (out_of_range) *out_of_range = false;
  if (in.empty()) return std::nullopt;
  const char first = in[0];
  if (!IsDigit(first) && first != '+' && first != '-' && first != '.') return std::nullopt;
  std::string plain;
  if (first == '.') {
    plain = in;  // yaml.v3 hands these to ParseFloat unchanged: no '_' removal, no sign
  } else {
    for (char c : in) {
      if (c != '_') plain += c;
    }
    bool negative = false;
    uint64_t m = 0;
    if (internal::ParseGoInteger(plain, true, negative, m)) {
      constexpr uint64_t kMaxInt = std::numeric_limits<int64_t>::max();
      if (!negative && m <= kMaxInt) return Value(static_cast<int64_t>(m));
      if (negative && m <= kMaxInt + 1) {
        return Value(m == kMaxInt + 1 ? std::numeric_limits<int64_t>::min() : -static_cast<int64_t>(m));
      }
    }
    if (internal::ParseGoInteger(plain, false, negative, m)) return Value(m);
  }
  if (!internal::IsYamlFloat(plain)) return std::nullopt;
  errno = 0;
  double d = std::strtod(plain.c_str(), nullptr);
  // Go's ParseFloat fails on overflow and yaml.v3 then keeps the text as a string.
  if (errno == ERANGE && (d > 1 || d < -1)) {
    if (out_of_range) *out_of_range = true;
    return std::nullopt;
  }
  return Value(d);
}

}  // namespace sr::stepfile
