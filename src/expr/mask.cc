// Leftmost-longest masking over a stream. Each secret runs its own KMP matcher over the bytes as
// they arrive and records, for the position where a match starts, the longest secret found there.
// A position is final once no secret can still be matching across it: the earliest start of a
// match in progress is (end - state) for each secret, so everything before the minimum of those
// is emitted, and the rest (shorter than the longest secret) is held for the next Feed().
#include "expr/mask.h"

#include "expr/expr.h"

#include <algorithm>

namespace sr::expr {
namespace {
constexpr std::string_view kMasked = "[MASKED]";
}  // namespace

// A secret shown inside a JSON object or array (`${{ inputs }}`, a struct output echoed) is
// escaped, so its raw bytes never appear there: a newline is `\n`, `"` is `\"`, and Render (as
// Go) writes <, >, & as \u003c, \u003e, \u0026. Each secret that escaping changes is also
// masked in that form, and in the form of JSON writers that leave <, >, & as they are (jq,
// nlohmann): `a&b"` is `a\u0026b\"` and `a&b\"`.
std::vector<std::string> WithJsonForms(std::vector<std::string> secrets) {
  const size_t raw = secrets.size();
  for (size_t i = 0; i < raw; ++i) {
    // A secret too short to mask stays unmasked in every form ("\0" escapes to 6 bytes).
    if (secrets[i].size() < Masker::kMinSecretLength) continue;
    std::string go = JsonStringBody(secrets[i]);
    if (go == secrets[i]) continue;
    std::string plain;  // the same without Go's HTML escapes
    for (size_t k = 0; k < go.size();) {
      const std::string_view rest = std::string_view(go).substr(k);
      if (rest.starts_with(R"(\\)")) {  // an escaped backslash: not the start of an escape
        plain += R"(\\)";
        k += 2;
      } else if (rest.starts_with("\\u003c") || rest.starts_with("\\u003e") || rest.starts_with("\\u0026")) {
        plain += static_cast<char>(std::stoi(std::string(rest.substr(2, 4)), nullptr, 16));
        k += 6;
      } else {
        plain += go[k++];
      }
    }
    if (plain != go) secrets.push_back(std::move(plain));
    secrets.push_back(std::move(go));
  }
  return secrets;
}

Masker::Masker(std::vector<std::string> secrets) {
  secrets = WithJsonForms(std::move(secrets));
  std::sort(secrets.begin(), secrets.end());
  secrets.erase(std::unique(secrets.begin(), secrets.end()), secrets.end());
  for (auto& text : secrets) {
    if (text.size() < kMinSecretLength) continue;
    Secret s;
    s.fail.assign(text.size(), 0);
    for (size_t k = 1, b = 0; k < text.size(); ++k) {
      while (b > 0 && text[k] != text[b]) b = s.fail[b - 1];
      if (text[k] == text[b]) ++b;
      s.fail[k] = b;
    }
    s.text = std::move(text);
    secrets_.push_back(std::move(s));
  }
}

std::string Masker::Feed(std::string_view chunk) {
  if (secrets_.empty()) return std::string(chunk);
  const size_t base = pending_.size();
  pending_.append(chunk);
  best_.resize(pending_.size(), 0);
  for (size_t k = base; k < pending_.size(); ++k) {
    const char c = pending_[k];
    for (Secret& s : secrets_) {
      size_t q = s.state;
      while (q > 0 && s.text[q] != c) q = s.fail[q - 1];
      if (s.text[q] == c) ++q;
      if (q == s.text.size()) {
        // A match starting before pending_ began lay inside an earlier, already masked match.
        if (k + 1 >= q) best_[k + 1 - q] = std::max(best_[k + 1 - q], q);
        q = s.fail[q - 1];
      }
      s.state = q;
    }
  }
  size_t limit = pending_.size();
  for (const Secret& s : secrets_) {
    // After a match, the state may be a border of it that began inside the [MASKED] span already
    // emitted (secret "aaba": state 1 after "aaba", 2 after one more "a", but only 1 byte is
    // pending). Such a partial match can never be masked; the longest one starting inside
    // pending_ is found down the failure links. Without this, `pending_.size() - state` wrapped
    // around, nothing was held back, and a second copy split across writes leaked (fuzz_masker).
    size_t q = s.state;
    while (q > pending_.size()) q = s.fail[q - 1];
    limit = std::min(limit, pending_.size() - q);
  }
  return Emit(limit);
}

std::string Masker::Flush() {
  std::string out = Emit(pending_.size());
  for (Secret& s : secrets_) s.state = 0;
  return out;
}

// Emits the decided positions [0, limit): a match replaces its whole span (which may reach past
// `limit`; that is still final, since a leftmost match is never displaced by later bytes).
std::string Masker::Emit(size_t limit) {
  std::string out;
  size_t i = 0;
  while (i < limit) {
    if (best_[i] != 0) {
      out += kMasked;
      i += best_[i];
      continue;
    }
    size_t j = i;
    while (j < limit && best_[j] == 0) ++j;
    out.append(pending_, i, j - i);
    i = j;
  }
  pending_.erase(0, i);
  best_.erase(best_.begin(), best_.begin() + static_cast<std::ptrdiff_t>(i));
  return out;
}

std::string MaskAll(std::string_view text, const std::vector<std::string>& secrets) {
  Masker masker(secrets);
  std::string out = masker.Feed(text);
  out += masker.Flush();
  return out;
}

}  // namespace sr::expr
