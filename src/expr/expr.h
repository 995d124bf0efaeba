// The expression language of step files: `${{ path.to.value }}` inside strings.
//
// A *view* is a JSON object whose top-level keys are the contexts (`inputs`, `env`, `job`,
// `steps`, `step_dir`, `work_dir`, `output_file`, `export_file`, `run`, ...). An expression body
// is trimmed and split on '.'; the first segment selects a context, the following ones index into
// objects. There are no operators, literals or indexing brackets.
//
// Scanning (reference.md 2.1, with contract 4.2): `${{` opens, `}}` closes, nesting is tracked
// and the outermost span is evaluated as one expression. `$${{` is an escape for a literal `${{`.
// A `}}` outside any expression is plain text (so `{{.Name}}` works). An unclosed `${{` is an
// error.
//
// Typing (reference.md 2.3): a string that is exactly one expression keeps the value's type;
// anything else is rendered to text and concatenated (strings verbatim, other values as compact
// JSON with sorted keys; integral numbers without ".0"; e.g. `{"color":"red","size":3}`).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/result.h"

namespace sr::expr {

using Value = nlohmann::json;

/// True if `text` contains an expression opener `${{` that is not escaped as `$${{`.
bool ContainsExpression(std::string_view text);

/// Typed expansion: strings are expanded keeping the type of a single whole-string expression;
/// objects and arrays are walked and every string leaf expanded (keys are not); numbers, bools
/// and null pass through unchanged.
Result<Value> Expand(const Value& value, const Value& view);
/// No single expansion produces more than this (and the engine caps a job's total at the same
/// figure, contract section 7 item 4): `${{ x }}${{ x }}…` with a large x fails instead of
/// exhausting memory.
inline constexpr size_t kMaxExpandedBytes = size_t{16} << 20;

/// String expansion: the result is always rendered to text.
Result<std::string> ExpandString(std::string_view text, const Value& view);

/// The same two, producing at most `max_bytes` (instead of kMaxExpandedBytes): a caller with a
/// budget of its own (the engine's per-job total) stops the work where the budget ends.
Result<Value> Expand(const Value& value, const Value& view, size_t max_bytes);
Result<std::string> ExpandString(std::string_view text, const Value& view, size_t max_bytes);

/// What a value costs: its strings plus 16 bytes per node (keys included), counted until the
/// sum passes `stop_at`. Iterative.
size_t ValueSize(const Value& value, size_t stop_at = SIZE_MAX);
/// A cheap look before an expansion: the literal text plus ValueSize() of every value the
/// expressions of `text` (or of every string leaf of `value`) refer to, counted until the sum
/// passes `stop_at`; nothing is rendered or copied. Expressions that do not resolve count 0 (the
/// expansion itself reports them). About what the expansion will produce, so a caller can refuse
/// it, or make it off the event loop, before it is made.
size_t EstimateExpansion(std::string_view text, const Value& view, size_t stop_at);
size_t EstimateValueExpansion(const Value& value, const Value& view, size_t stop_at);

/// Renders a value the way interpolation does: strings verbatim, everything else compact JSON.
std::string Render(const Value& value);

/// Render(), appending to `out` (saves a copy when concatenating many pieces).
void RenderTo(const Value& value, std::string& out);

/// `d` in plain decimal with the shortest digits that read back as `d`, never an exponent:
/// 1e-7 is "0.0000001", 1e21 "1000000000000000000000" (Go's FormatFloat(d, 'f', -1, 64)).
std::string PlainDecimal(double d);

/// The text of `s` inside a JSON string, without the quotes, as Render writes a string held in an
/// object or array (Go's escaping: `"` `\` and control characters, and <, >, & as \u003c...).
std::string JsonStringBody(std::string_view s);

/// Evaluates one expression body such as "steps.build.outputs.version" against the view.
/// Errors (Go's wording): `<expr>: the "<key>" was not found`, and for digging into a non-object
/// `<expr>: "<key>" is not map to get <key> key`-style messages.
Result<Value> Evaluate(std::string_view body, const Value& view);

}  // namespace sr::expr
