// Shared by the fuzz targets: an invariant that must hold for every input. A violation prints
// what was expected and aborts, which libFuzzer reports as a crash and saves the input.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace sr::fuzz {

[[noreturn]] inline void Fail(const char* file, int line, const char* cond, const std::string& why) {
  std::fprintf(stderr, "%s:%d: invariant violated: %s\n  %s\n", file, line, cond, why.c_str());
  std::abort();
}

/// A printable, bounded excerpt of some bytes for a failure message.
inline std::string Show(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s.substr(0, 300)) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > 300) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out + "\"";
}

}  // namespace sr::fuzz

#define FUZZ_CHECK(cond, why)                                            \
  do {                                                                   \
    if (!(cond)) ::sr::fuzz::Fail(__FILE__, __LINE__, #cond, (why));     \
  } while (0)
