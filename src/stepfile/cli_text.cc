// Values typed on the command line (`run --inputs k=v,...`): split as Go's flag package does
// (one CSV record), and typed by the input's declared type rather than guessed.
#include "stepfile/stepfile.h"

namespace sr::stepfile {

Result<std::vector<std::string>> SplitCsvRecord(std::string_view text) {
  std::vector<std::string> fields;
  size_t i = 0;
  while (true) {
    std::string field;
    if (i < text.size() && text[i] == '"') {
      // A quoted field runs to the next lone quote; "" inside is one quote.
      ++i;
      bool closed = false;
      while (i < text.size()) {
        if (text[i] == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          closed = true;
          ++i;
          break;
        }
        field += text[i++];
      }
      if (!closed) return InvalidError("extraneous or missing \" in quoted-field");
      if (i < text.size() && text[i] != ',') {
        return InvalidError("extraneous or missing \" in quoted-field");
      }
    } else {
      while (i < text.size() && text[i] != ',') {
        if (text[i] == '"') return InvalidError("bare \" in non-quoted-field");
        field += text[i++];
      }
    }
    fields.push_back(std::move(field));
    if (i >= text.size()) break;
    ++i;  // the comma
  }
  return fields;
}

Value GuessScalar(const std::string& text) {
  if (text == "true") return true;
  if (text == "false") return false;
  if (text == "null" || text == "~") return nullptr;
  // Go pasted the text into YAML: a number is what yaml.v3 reads as one. (strtoll/strtod
  // clamped 9223372036854775808 to int64's maximum and read inf, nan and 1e999 as non-finite
  // doubles, which render as null.)
  if (auto number = YamlNumber(text)) return *number;
  return text;
}

Result<Value> ValueFromText(ValueType type, const std::string& text) {
  switch (type) {
    case ValueType::kString:
      return Value(text);
    case ValueType::kNumber: {
      bool out_of_range = false;
      if (auto number = YamlNumber(text, &out_of_range)) return *number;
      if (out_of_range) {
        return InvalidError("declared number, got \"" + text + "\" (out of the range of a 64-bit float)");
      }
      break;
    }
    case ValueType::kBoolean:
      if (text == "true" || text == "True" || text == "TRUE") return Value(true);
      if (text == "false" || text == "False" || text == "FALSE") return Value(false);
      break;
    case ValueType::kStruct:
    case ValueType::kArray: {
      Value v = Value::parse(text, nullptr, /*allow_exceptions=*/false);
      if (!v.is_discarded() && CheckType(type, v).ok()) return v;
      break;
    }
  }
  return InvalidError(std::string("declared ") + ValueTypeName(type) + ", got \"" + text +
                      "\" (" + (type == ValueType::kStruct || type == ValueType::kArray
                                    ? "write it as JSON"
                                    : "not a " + std::string(ValueTypeName(type))) +
                      ")");
}

}  // namespace sr::stepfile
