// Expression expander: ExpandString / Expand / Evaluate with a small fixed view.
//
// Input: the first byte picks a mode, the rest is the text.
//   mode & 1 == 0: the text is a string to expand. Invariants:
//     * ExpandString(t) and Expand("t") succeed or fail together, and Render(Expand) ==
//       ExpandString (typed and text expansion agree);
//     * a text without an unescaped `${{` expands to itself with every `$${{` turned into `${{`;
//     * errors are invalid-input errors.
//   mode & 1 == 1: the text is parsed as JSON (when it is JSON) and Expand walks it: a success
//     keeps the shape (same type, same number of items at the top) and object keys.
#include <cstddef>
#include <cstdint>
#include <string>

#include "expr/expr.h"
#include "fuzz_check.h"

using sr::Error;
using sr::expr::Value;
using sr::fuzz::Show;

namespace {

const Value& View() {
  static const Value view = Value::parse(R"({
    "inputs": {"who": "world", "n": 3, "f": 2.5, "big": 1e300, "tiny": 1e-7, "flag": true,
               "nothing": null, "empty": "", "html": "<b>&amp;</b>",
               "obj": {"a": [1, "x", {"deep": null}], "b": {}}, "list": ["a", 1, true, null],
               "utf8": "h\u00e9llo \u2028", "my key": "spaced"},
    "env": {"HOME": "/root", "PATH": "/bin:/usr/bin", "ODD": "${{ env.HOME }}"},
    "job": {"TOKEN": "s3cr3t-token", "CI_JOB_ID": "42"},
    "steps": {"build": {"outputs": {"v": "1.2.3", "n": 7, "list": [1, 2]}},
              "my-step": {"outputs": {}}},
    "step_dir": "/steps", "work_dir": "/work",
    "output_file": "/tmp/out", "export_file": "/tmp/env",
    "run": {"status": "success", "pids": [1, 2]}
  })");
  return view;
}

// What a text without an expression must expand to: `$${{` → `${{`, left to right.
std::string Unescape(std::string_view t) {
  std::string out;
  for (size_t i = 0; i < t.size();) {
    if (t.substr(i, 4) == "$${{") {
      out += "${{";
      i += 4;
    } else {
      out += t[i++];
    }
  }
  return out;
}

template <class R>
void CheckError(const R& r, std::string_view text) {
  if (r.ok()) return;
  FUZZ_CHECK(r.error().kind == Error::Kind::kInvalid,
             "error kind " + std::to_string(static_cast<int>(r.error().kind)) + " for " + Show(text));
  FUZZ_CHECK(!r.error().message.empty(), "empty error message for " + Show(text));
}

void StringMode(std::string_view text) {
  const Value& view = View();
  auto s = sr::expr::ExpandString(text, view);
  CheckError(s, text);
  auto v = sr::expr::Expand(Value(std::string(text)), view);
  CheckError(v, text);
  FUZZ_CHECK(s.ok() == v.ok(), "ExpandString and Expand disagree on success for " + Show(text));
  if (s.ok()) {
    FUZZ_CHECK(sr::expr::Render(*v) == *s,
               "Render(Expand) " + Show(sr::expr::Render(*v)) + " != ExpandString " + Show(*s) +
                   " for " + Show(text));
  }
  if (!sr::expr::ContainsExpression(text)) {
    FUZZ_CHECK(s.ok(), "a text without an expression failed: " + Show(text));
    FUZZ_CHECK(*s == Unescape(text), "plain text changed: " + Show(text) + " -> " + Show(*s));
  }
  auto e = sr::expr::Evaluate(text, view);
  CheckError(e, text);
  if (e.ok()) (void)sr::expr::Render(*e);
}

void JsonMode(std::string_view text) {
  Value in = Value::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (in.is_discarded()) return;
  auto out = sr::expr::Expand(in, View());
  CheckError(out, text);
  if (!out.ok() || !in.is_structured()) return;
  FUZZ_CHECK(out->type() == in.type() && out->size() == in.size(),
             "Expand changed the shape of " + Show(text));
  if (in.is_object()) {
    auto a = in.cbegin();
    auto b = out->cbegin();
    for (; a != in.cend(); ++a, ++b) FUZZ_CHECK(a.key() == b.key(), "keys changed: " + Show(text));
  }
  (void)sr::expr::Render(*out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) == 0) {
    StringMode(text);
  } else {
    JsonMode(text);
  }
  return 0;
}
