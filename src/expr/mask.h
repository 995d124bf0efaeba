// Streaming replacement of secret values by `[MASKED]` (contract 4.9): the values of masked job
// variables and sensitive inputs/outputs must not appear in the job log, CLI output, step results
// or Status, even when a process writes a secret in two pieces.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sr::expr {

/// Masks a byte stream fed in arbitrary chunks. Secrets shorter than kMinSecretLength are
/// ignored. Where secrets overlap, the leftmost match wins and, at one position, the longest.
/// Feed() holds back at most (longest secret - 1) trailing bytes that may still become a secret;
/// Flush() releases them at the end of the stream (the masker can then be reused).
class Masker {
 public:
  /// Masking a 1-3 byte value would shred ordinary output (every "1", "yes", "abc") while
  /// protecting nothing: the [MASKED] markers would reveal the value's length and position anyway.
  static constexpr size_t kMinSecretLength = 4;

  explicit Masker(std::vector<std::string> secrets);
  std::string Feed(std::string_view chunk);
  /// Nothing to mask (no secret of kMinSecretLength or more): Feed would return its input, and a
  /// caller can pass the bytes on without the copy.
  bool passthrough() const { return secrets_.empty(); }
  std::string Flush();

 private:
  // One secret with its KMP failure table and matching state, so every byte of the stream is
  // looked at once per secret: O(bytes x secrets), no rescanning.
  struct Secret {
    std::string text;
    std::vector<size_t> fail;  // fail[k]: longest proper border of text[0..k]
    size_t state = 0;          // length of the longest prefix of text ending the stream so far
  };
  std::string Emit(size_t limit);

  std::vector<Secret> secrets_;
  std::string pending_;       // received, not yet emitted (starts at the first undecided byte)
  std::vector<size_t> best_;  // best_[i]: longest secret known to start at pending_[i], or 0
};

/// `secrets` and, for each that JSON escaping changes, its escaped forms: a secret shown inside a
/// JSON object or array never shows its raw bytes (Masker masks these forms too).
std::vector<std::string> WithJsonForms(std::vector<std::string> secrets);

/// Masks a whole text at once.
std::string MaskAll(std::string_view text, const std::vector<std::string>& secrets);

}  // namespace sr::expr
