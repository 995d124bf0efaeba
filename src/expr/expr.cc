// Scanner and evaluator of `${{ ... }}` expressions (reference.md 2.1-2.3, contract 4.2).
//
// Resource bounds: step files and job variables are untrusted, so nothing here recurses in
// proportion to the input. The scanner is a single left-to-right loop with a depth counter, and
// values are walked/copied with explicit stacks (nlohmann's own copy constructor recurses once
// per nesting level). Scanning is linear in the text; a value produced by an expression is never
// re-scanned.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "expr/expr.h"

namespace sr::expr {
namespace {

constexpr std::string_view kOpen = "${{";
constexpr std::string_view kEscape = "$${{";
constexpr std::string_view kClose = "}}";

std::string_view Trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\r\v\f";
  const size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kSpace) - b + 1);
}

std::string Quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

// Copies `in`, replacing every string leaf (not object keys) by leaf(string); with a null leaf it
// is a plain deep copy. Iterative: a frame per open container, children of arrays written into a
// pre-sized vector and children of objects into std::map nodes, so the `out` pointers held by the
// frames stay valid while deeper frames are filled.
template <class Leaf>
Result<Value> Walk(const Value& in, const Leaf& leaf) {
  auto scalar = [&](const Value& v) -> Result<Value> {
    if constexpr (!std::is_same_v<Leaf, std::nullptr_t>) {
      if (v.is_string()) return leaf(v.get_ref<const std::string&>());
    }
    return Value(v);
  };
  auto shell = [](const Value& v) {  // an empty container of v's kind and size
    Value out = v.is_object() ? Value::object() : Value::array();
    if (v.is_array()) out.get_ref<Value::array_t&>().resize(v.size());
    return out;
  };
  if (!in.is_structured()) return scalar(in);

  struct Frame {
    const Value* in;
    Value* out;
    Value::const_iterator it;
    size_t index;
  };
  Value root = shell(in);
  std::vector<Frame> stack{{&in, &root, in.cbegin(), 0}};
  while (!stack.empty()) {
    Frame& f = stack.back();
    if (f.it == f.in->cend()) {
      stack.pop_back();
      continue;
    }
    const Value& child = f.it.value();
    Value& slot = f.in->is_object() ? (*f.out)[f.it.key()] : (*f.out)[f.index];
    ++f.it;
    ++f.index;
    if (child.is_structured()) {
      slot = shell(child);
      stack.push_back({&child, &slot, child.cbegin(), 0});  // invalidates `f`, not `slot`
    } else {
      auto r = scalar(child);
      if (!r.ok()) return r.error();
      slot = std::move(r).value();
    }
  }
  return root;
}

Value Copy(const Value& v) { return std::move(Walk(v, nullptr)).value(); }

// Resolves a dotted path to the value inside `view` (no copy).
Result<const Value*> Lookup(std::string_view body, const Value& view) {
  const std::string_view expr = Trim(body);
  // Go reports `: the "" was not found`; a message that shows the braces is clearer.
  if (expr.empty()) return InvalidError("${{ }}: the expression is empty");
  // Decision: unlike Go (which rejects every whole-map result), a path ending on an object is
  // allowed and renders as JSON (`${{ inputs.labels }}` -> {"tier":"web"}, which Go also allows
  // for protobuf structs). Only the whole `env` and `job` contexts are refused: they hold the
  // entire process environment and every job variable (masked secrets included), and dumping
  // them into a command line or log is never what a step author means.
  if (expr == "env" || expr == "job") {
    return InvalidError(std::string(expr) + ": cannot use a whole context as a value");
  }
  const Value* cur = &view;
  std::string_view prev;
  size_t pos = 0;
  while (true) {
    const size_t dot = expr.find('.', pos);
    const std::string_view key =
        expr.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos);
    if (!cur->is_object()) {
      // Go says `"string" is not supported` when digging into a plain string and "... is not
      // map ..." for protobuf values; one wording for both is close enough.
      if (pos == 0) return InvalidError(std::string(expr) + ": the " + Quote(key) + " was not found");
      return InvalidError(std::string(expr) + ": " + Quote(prev) + " is not map to get " +
                          std::string(key) + " key");
    }
    const auto it = cur->find(key);
    if (it == cur->end()) {
      return InvalidError(std::string(expr) + ": the " + Quote(key) + " was not found");
    }
    cur = &*it;
    if (dot == std::string_view::npos) return cur;
    prev = key;
    pos = dot + 1;
  }
}

// Result of scanning one string: either exactly one expression and nothing else (`single`,
// pointing into the view, so the caller decides whether to keep its type or render it), or text.
struct Scanned {
  const Value* single = nullptr;
  std::string text;
};

// Collects pieces. The first expression value is held unrendered until something else arrives.
class Pieces {
 public:
  void Literal(std::string_view s) {
    if (s.empty()) return;
    started_ = true;
    Release();
    out_.append(s);
  }
  void Expression(const Value& v) {
    if (!started_) {
      started_ = true;
      held_ = &v;
      return;
    }
    Release();
    RenderTo(v, out_);
  }
  explicit Pieces(size_t max_bytes) : max_bytes_(max_bytes) {}
  bool too_large() const { return out_.size() > max_bytes_; }
  size_t max_bytes() const { return max_bytes_; }
  Scanned Finish() && { return {held_, std::move(out_)}; }

 private:
  void Release() {
    if (held_ == nullptr) return;
    RenderTo(*held_, out_);
    held_ = nullptr;
  }
  size_t max_bytes_;
  bool started_ = false;
  const Value* held_ = nullptr;
  std::string out_;
};

Result<Scanned> Scan(std::string_view text, const Value& view, size_t max_bytes) {
  Pieces pieces(max_bytes);
  size_t depth = 0;  // size_t: 10 000 nested openers are just a count, never a stack
  size_t open = 0;   // where the outermost expression's body starts
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    // Everything up to the next '$' or '}' is plain text (or body text, when depth > 0).
    size_t j = text.find_first_of("$}", i);
    if (j == std::string_view::npos) j = n;
    if (depth == 0) pieces.Literal(text.substr(i, j - i));
    i = j;
    if (i == n) break;
    const std::string_view rest = text.substr(i);
    if (depth == 0 && rest.starts_with(kEscape)) {
      // The escape is literal-text syntax, so it only exists at depth 0; inside an expression
      // the raw body is kept as written (and `${{` in it still counts as nesting).
      pieces.Literal(kOpen);
      i += kEscape.size();
    } else if (rest.starts_with(kOpen)) {
      if (depth++ == 0) open = i + kOpen.size();
      i += kOpen.size();
    } else if (rest.starts_with(kClose)) {
      if (depth == 0) {
        pieces.Literal(kClose);  // contract 4.2: a stray `}}` is text (Go: an error)
      } else if (--depth == 0) {
        auto value = Lookup(text.substr(open, i - open), view);
        if (!value.ok()) return value.error();
        pieces.Expression(**value);
        if (pieces.too_large()) {
          return InvalidError("expanded value larger than " + std::to_string(pieces.max_bytes()) +
                              " bytes");
        }
      }
      i += kClose.size();
    } else {
      if (depth == 0) pieces.Literal(text.substr(i, 1));
      ++i;
    }
  }
  if (depth > 0) {
    return InvalidError("the " + Quote(text.substr(open)) + " is not closed: ${{ ... }}");
  }
  return std::move(pieces).Finish();
}

Result<Value> ExpandTyped(const std::string& text, const Value& view, size_t max_bytes) {
  auto scanned = Scan(text, view, max_bytes);
  if (!scanned.ok()) return scanned.error();
  if (scanned->single != nullptr) return Copy(*scanned->single);
  return Value(std::move(scanned->text));
}

}  // namespace

bool ContainsExpression(std::string_view text) {
  size_t i = 0;
  while ((i = text.find('$', i)) != std::string_view::npos) {
    const std::string_view rest = text.substr(i);
    if (rest.starts_with(kEscape)) {
      i += kEscape.size();
    } else if (rest.starts_with(kOpen)) {
      return true;
    } else {
      ++i;
    }
  }
  return false;
}

Result<Value> Expand(const Value& value, const Value& view) {
  return Expand(value, view, kMaxExpandedBytes);
}

Result<Value> Expand(const Value& value, const Value& view, size_t max_bytes) {
  return Walk(value, [&view, max_bytes](const std::string& s) { return ExpandTyped(s, view, max_bytes); });
}

Result<std::string> ExpandString(std::string_view text, const Value& view) {
  return ExpandString(text, view, kMaxExpandedBytes);
}

Result<std::string> ExpandString(std::string_view text, const Value& view, size_t max_bytes) {
  auto scanned = Scan(text, view, max_bytes);
  if (!scanned.ok()) return scanned.error();
  if (scanned->single != nullptr) {
    std::string text = Render(*scanned->single);
    if (text.size() > max_bytes) {
      return InvalidError("expanded value larger than " + std::to_string(max_bytes) + " bytes");
    }
    return text;
  }
  return std::move(scanned->text);
}

size_t ValueSize(const Value& value, size_t stop_at) {
  size_t total = 0;
  std::vector<const Value*> stack{&value};
  while (!stack.empty() && total <= stop_at) {
    const Value* v = stack.back();
    stack.pop_back();
    total += 16;
    if (v->is_string()) total += v->get_ref<const std::string&>().size();
    if (v->is_object()) {
      for (const auto& [k, item] : v->items()) {
        total += k.size();
        stack.push_back(&item);
      }
    } else if (v->is_array()) {
      for (const auto& item : *v) stack.push_back(&item);
    }
  }
  return total;
}

size_t EstimateExpansion(std::string_view text, const Value& view, size_t stop_at) {
  size_t total = text.size();
  size_t depth = 0, open = 0, i = 0;
  while (i < text.size() && total <= stop_at) {
    const size_t j = text.find_first_of("$}", i);
    if (j == std::string_view::npos) break;
    const std::string_view rest = text.substr(j);
    if (depth == 0 && rest.starts_with(kEscape)) {
      i = j + kEscape.size();
    } else if (rest.starts_with(kOpen)) {
      if (depth++ == 0) open = j + kOpen.size();
      i = j + kOpen.size();
    } else if (rest.starts_with(kClose) && depth > 0) {
      if (--depth == 0) {
        if (auto v = Lookup(text.substr(open, j - open), view); v.ok()) {
          total += ValueSize(**v, stop_at - std::min(stop_at, total));
        }
      }
      i = j + kClose.size();
    } else {
      i = j + 1;
    }
  }
  return total;
}

size_t EstimateValueExpansion(const Value& value, const Value& view, size_t stop_at) {
  size_t total = 0;
  std::vector<const Value*> stack{&value};
  while (!stack.empty() && total <= stop_at) {
    const Value* v = stack.back();
    stack.pop_back();
    if (v->is_string()) {
      total += EstimateExpansion(std::string_view(v->get_ref<const std::string&>()), view, stop_at - std::min(stop_at, total));
    } else if (v->is_structured()) {
      for (const auto& item : *v) stack.push_back(&item);
    } else {
      total += 16;
    }
  }
  return total;
}

Result<Value> Evaluate(std::string_view body, const Value& view) {
  auto value = Lookup(body, view);
  if (!value.ok()) return value.error();
  return Copy(**value);
}

}  // namespace sr::expr
