// Streaming masker: feeding a text to Masker in arbitrary chunks and then Flush() must give
// exactly MaskAll() of the whole text, which must equal a naive leftmost-longest reference
// (at each position the longest secret of at least kMinSecretLength bytes that starts there is
// replaced by [MASKED]; otherwise the byte is kept). A Masker is reusable after Flush().
//
// Input format: secrets separated by NUL bytes, then two NUL bytes, then the text. Every 0x01
// byte in the text is a chunk boundary (and removed). If the first byte of the input is 'A'..'D'
// the secrets and the text are mapped onto the alphabet "abcd" (byte % 4), so overlapping and
// self-overlapping secrets are common.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "expr/mask.h"
#include "fuzz_check.h"

using sr::expr::Masker;
using sr::fuzz::Show;

namespace {

std::string Naive(std::string_view text, const std::vector<std::string>& secrets) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t best = 0;
    for (const auto& s : secrets) {
      if (s.size() >= Masker::kMinSecretLength && s.size() > best &&
          text.substr(i, s.size()) == s) {
        best = s.size();
      }
    }
    if (best > 0) {
      out += "[MASKED]";
      i += best;
    } else {
      out += text[i++];
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  const bool small_alphabet = !in.empty() && in[0] >= 'A' && in[0] <= 'D';
  if (small_alphabet) in.erase(0, 1);
  size_t end = in.find(std::string_view("\0\0", 2));
  if (end == std::string::npos) return 0;
  std::vector<std::string> secrets;
  for (size_t start = 0; start <= end;) {
    size_t nul = in.find('\0', start);
    if (nul > end) nul = end;
    secrets.push_back(in.substr(start, nul - start));
    start = nul + 1;
  }
  if (secrets.size() > 8) secrets.resize(8);
  std::vector<std::string> chunks(1);
  for (char c : std::string_view(in).substr(end + 2)) {
    if (c == '\x01') {
      chunks.emplace_back();
    } else {
      chunks.back() += small_alphabet ? static_cast<char>('a' + static_cast<unsigned char>(c) % 4) : c;
    }
  }
  if (small_alphabet) {
    for (auto& s : secrets) {
      for (char& c : s) c = static_cast<char>('a' + static_cast<unsigned char>(c) % 4);
    }
  }
  std::string whole;
  for (const auto& c : chunks) whole += c;

  const std::string all = sr::expr::MaskAll(whole, secrets);
  // The masker also masks each secret's JSON-escaped forms (mask.h): so does the oracle.
  const std::string expected = Naive(whole, sr::expr::WithJsonForms(secrets));
  FUZZ_CHECK(all == expected, "MaskAll " + Show(all) + " != leftmost-longest " + Show(expected) +
                                  " for text " + Show(whole));

  Masker masker(secrets);
  bool maskable = false;
  for (const auto& s : secrets) maskable = maskable || s.size() >= Masker::kMinSecretLength;
  for (int round = 0; round < 2; ++round) {  // the second round checks reuse after Flush()
    std::string streamed;
    for (const auto& c : chunks) {
      std::string piece = masker.Feed(c);
      FUZZ_CHECK(maskable || piece == c, "a masker with nothing to mask held bytes back");
      streamed += piece;
    }
    streamed += masker.Flush();
    FUZZ_CHECK(streamed == all, "streamed " + Show(streamed) + " != MaskAll " + Show(all) +
                                    " (round " + std::to_string(round) + ", " +
                                    std::to_string(chunks.size()) + " chunks) for text " +
                                    Show(whole));
  }
  return 0;
}
