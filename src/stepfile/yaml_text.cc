// The text-level checks of yaml_text.h, and TextPosition (stepfile.h).
#include "stepfile/yaml_text.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "stepfile/stepfile.h"
#include "util/utf8.h"

namespace sr::stepfile::internal {

std::string Position(const std::string& source, int line, int column) {
  if (line <= 0) return source;
  return source + ":" + std::to_string(line) + ":" + std::to_string(column);
}

// yaml-cpp silently replaces invalid UTF-8 and guesses UTF-16/32 from NUL bytes, so a binary
// blob could be read as some other text. Go's yaml.v3 rejects both; so do we, before parsing.
// Allowed: UTF-8 of YAML's printable set (tab, CR, LF, no other C0/C1 controls, no DEL,
// no U+FFFE/U+FFFF). Returns the byte offset and the problem, if any.
std::optional<std::pair<size_t, std::string>> CheckText(std::string_view t) {
  char hex[16];
  size_t i = 0;
  while (i < t.size()) {
    auto c = static_cast<unsigned char>(t[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) {
        std::snprintf(hex, sizeof hex, "U+%04X", c);
        return std::pair{i, std::string("control character ") + hex + " is not allowed"};
      }
      ++i;
      continue;
    }
    uint32_t cp = 0;
    const size_t len = DecodeUtf8(t, i, cp);
    if (len == 0) {
      return std::pair{i, "invalid UTF-8 (byte " + ByteName(c) + "): step text must be UTF-8"};
    }
    if ((cp >= 0x80 && cp <= 0x9F && cp != 0x85) || cp == 0xFFFE || cp == 0xFFFF) {
      std::snprintf(hex, sizeof hex, "U+%04X", cp);
      return std::pair{i, std::string("control character ") + hex + " is not allowed"};
    }
    i += len;
  }
  return std::nullopt;
}

// yaml-cpp ends a quoted scalar that is never closed at the end of the text and takes the rest
// of the file as its value (`script: "echo` then more items ran as one script). YAML, and Go's
// parser, make it an error: true when the scalar quoted at `pos` has its closing quote.
bool QuoteClosed(std::string_view text, size_t pos) {
  // The node's mark is at its properties when it has any: skip `!tag` and `&anchor` first.
  while (pos < text.size() && (text[pos] == '!' || text[pos] == '&')) {
    while (pos < text.size() && text[pos] != ' ' && text[pos] != '\t' && text[pos] != '\n') ++pos;
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\n' ||
                                 text[pos] == '\r')) {
      ++pos;
    }
  }
  if (pos >= text.size()) return true;
  const char quote = text[pos];
  if (quote != '"' && quote != '\'') return true;  // plain or block scalar
  for (size_t i = pos + 1; i < text.size(); ++i) {
    if (quote == '"' && text[i] == '\\') {
      ++i;  // an escape: the next character is not the end
    } else if (text[i] == quote) {
      if (quote == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
        ++i;  // '' is a quote inside a single-quoted scalar
      } else {
        return true;
      }
    }
  }
  return false;
}

// yaml-cpp decodes the escapes \N (U+0085) and \_ (U+00A0) of a double-quoted scalar to the
// single bytes 0x85 and 0xA0, which are not UTF-8; every other escape comes out as UTF-8.
// LoadYaml checks the whole text is UTF-8 (CheckText) before yaml-cpp sees it, so a byte of a
// decoded scalar that is not part of valid UTF-8 can only be one of these two: it is replaced by
// the character's UTF-8 (C2 85, C2 A0), as Go's yaml.v3 has it. Returns false if anything else
// is left that is not UTF-8 (it cannot be, but a scalar must never leave here that way).
bool RepairEscapes(std::string& value) {
  size_t bad = FirstInvalidUtf8(value);
  if (bad == value.size()) return true;
  std::string out = value.substr(0, bad);
  out.reserve(value.size() + 8);
  while (bad < value.size()) {
    const auto byte = static_cast<unsigned char>(value[bad]);
    if (byte != 0x85 && byte != 0xA0) return false;
    out += '\xC2';
    out += value[bad];
    const size_t rest = bad + 1;
    const size_t next = rest + FirstInvalidUtf8(std::string_view(value).substr(rest));
    out.append(value, rest, next - rest);
    bad = next;
  }
  value = std::move(out);
  return true;
}

}  // namespace sr::stepfile::internal

namespace sr::stepfile {

std::string TextPosition(std::string_view text, size_t offset, const std::string& source) {
  const std::string_view before = text.substr(0, offset);
  const int line = 1 + static_cast<int>(std::count(before.begin(), before.end(), '\n'));
  const size_t nl = before.rfind('\n');
  const int column = static_cast<int>(offset - (nl == std::string_view::npos ? 0 : nl + 1)) + 1;
  return internal::Position(source, line, column);
}

}  // namespace sr::stepfile
