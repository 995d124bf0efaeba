// Rendering of values to text, matching what the Go tool printed (reference.md 2.3): strings
// verbatim, everything else as compact JSON the way Go's encoding/json writes it. We do not use
// nlohmann's dump(): it prints 3.0 as "3.0" and 1.2e20 as "1.2e+20" where Go prints "3" and
// "120000000000000000000", it does not HTML-escape, it throws on invalid UTF-8, and it recurses
// once per nesting level (a hostile, deeply nested value would overflow the stack).
#include <charconv>
#include <cmath>
#include <cstdint>
#include <vector>

#include "expr/expr.h"
#include "util/utf8.h"

namespace sr::expr {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void AppendUnicodeEscape(uint32_t code, std::string& out) {
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(code >> shift) & 0xF];
}

// Printable ASCII other than the characters Go escapes.
bool NeedsNoEscape(unsigned char c) {
  return c >= 0x20 && c < 0x80 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&';
}

// A JSON string literal as Go's encoding/json writes it with HTML escaping on (the default):
// <, >, & and U+2028/U+2029 as \uXXXX, invalid UTF-8 bytes each replaced by \ufffd.
void AppendJsonString(std::string_view s, std::string& out) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    // A run of bytes written as they are, appended at once (byte by byte, rendering a large
    // value was the bulk of an alias bomb's cost).
    size_t plain = i;
    while (plain < s.size() && NeedsNoEscape(static_cast<unsigned char>(s[plain]))) ++plain;
    if (plain > i) {
      out.append(s, i, plain - i);
      i = plain;
      continue;
    }
    const char c = s[i];
    const auto uc = static_cast<unsigned char>(c);
    if (uc >= 0x80) {
      uint32_t code = 0;
      const size_t len = DecodeUtf8(s, i, code);
      if (len == 0) {
        out += "\\ufffd";
        ++i;
      } else if (code == 0x2028 || code == 0x2029) {
        AppendUnicodeEscape(code, out);
        i += len;
      } else {
        out.append(s, i, len);
        i += len;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '<':
      case '>':
      case '&': AppendUnicodeEscape(uc, out); break;
      default:
        if (uc < 0x20) {
          AppendUnicodeEscape(uc, out);
        } else {
          out += c;
        }
    }
    ++i;
  }
  out += '"';
}

// Go's float64 JSON form: shortest round-trip digits, plain notation unless |x| < 1e-6 or
// |x| >= 1e21, and exponents without a leading zero ("1e-7", not "1e-07"). Plain notation is
// built from the shortest scientific digits because to_chars(fixed) prints large integral values
// exactly (1.2345678901234568e20 -> ...683968) where Go pads the shortest digits with zeros.
// `exponent` false: always plain notation, Go's strconv.FormatFloat(d, 'f', -1, 64).
void AppendDouble(double d, std::string& out, bool exponent = true) {
  // Go refuses to encode NaN/Inf; a rendering cannot fail here, so we print what nlohmann's
  // dump() prints for them: null.
  if (!std::isfinite(d)) {
    out += "null";
    return;
  }
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  const std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));  // -?D(.DDD)?e[+-]XX
  const size_t e = sci.find('e');
  const bool negative = sci[0] == '-';
  std::string digits;
  for (char c : sci.substr(negative ? 1 : 0, e - (negative ? 1 : 0))) {
    if (c != '.') digits += c;
  }
  int exp = 0;
  std::from_chars(sci.data() + e + 2, sci.data() + sci.size(), exp);
  if (sci[e + 1] == '-') exp = -exp;
  const double abs = std::fabs(d);
  if (exponent && abs != 0 && (abs < 1e-6 || abs >= 1e21)) {
    out.append(sci.substr(0, e + 2));
    out += std::to_string(exp < 0 ? -exp : exp);
    return;
  }
  if (negative) out += '-';
  const int point = exp + 1;  // digits before the decimal point
  if (point <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-point), '0');
    out += digits;
  } else if (static_cast<size_t>(point) >= digits.size()) {
    out += digits;
    out.append(static_cast<size_t>(point) - digits.size(), '0');
  } else {
    out.append(digits, 0, static_cast<size_t>(point));
    out += '.';
    out.append(digits, static_cast<size_t>(point));
  }
}

// Scalars inside JSON (strings quoted) — the containers are handled by AppendJson's stack.
void AppendJsonScalar(const Value& v, std::string& out) {
  switch (v.type()) {
    case Value::value_t::string: AppendJsonString(v.get_ref<const std::string&>(), out); break;
    case Value::value_t::boolean: out += v.get<bool>() ? "true" : "false"; break;
    case Value::value_t::number_integer: out += std::to_string(v.get<int64_t>()); break;
    case Value::value_t::number_unsigned: out += std::to_string(v.get<uint64_t>()); break;
    case Value::value_t::number_float: AppendDouble(v.get<double>(), out); break;
    default: out += "null"; break;  // null, and binary/discarded which our values never hold
  }
}

// Compact JSON with an explicit stack instead of recursion, so depth is bounded only by memory.
// Object keys come out sorted because nlohmann::json keeps objects in a std::map (byte order, the
// same order Go's encoder sorts map keys in).
void AppendJson(const Value& root, std::string& out) {
  struct Frame {
    const Value* node;
    Value::const_iterator it;
  };
  std::vector<Frame> stack;
  auto open = [&](const Value& v) {
    if (v.is_object() || v.is_array()) {
      out += v.is_object() ? '{' : '[';
      stack.push_back({&v, v.cbegin()});
    } else {
      AppendJsonScalar(v, out);
    }
  };
  open(root);
  while (!stack.empty()) {
    Frame& f = stack.back();
    if (f.it == f.node->cend()) {
      out += f.node->is_object() ? '}' : ']';
      stack.pop_back();
      continue;
    }
    if (f.it != f.node->cbegin()) out += ',';
    if (f.node->is_object()) {
      AppendJsonString(f.it.key(), out);
      out += ':';
    }
    const Value& child = f.it.value();
    ++f.it;       // before open(): pushing may reallocate the stack and invalidate `f`
    open(child);
  }
}

}  // namespace

void RenderTo(const Value& value, std::string& out) {
  if (value.is_string()) {
    out += value.get_ref<const std::string&>();  // a top-level string is never JSON-encoded
  } else {
    AppendJson(value, out);
  }
}

std::string PlainDecimal(double d) {
  std::string out;
  AppendDouble(d, out, /*exponent=*/false);
  return out;
}

std::string JsonStringBody(std::string_view s) {
  std::string out;
  AppendJsonString(s, out);
  return out.substr(1, out.size() - 2);
}

std::string Render(const Value& value) {
  std::string out;
  RenderTo(value, out);
  return out;
}

}  // namespace sr::expr
