// Durations ("1m30s", flags and step files) and signal names ("SIGTERM", "term", "15").
//
// ParseDuration: never throws or crashes; a success is never negative nor above kMaxDuration
// (10 years), and formatting it and parsing the text again gives the same duration to within
// FormatDuration's precision (1 µs).
// ParseSignal: a success is a signal number 1..64 and SignalName of it parses back to it.
//
// Long texts are expensive to reach by mutation, so an input starting with a NUL byte is
// run-length decoded first: each following (count, byte) pair stands for `byte` repeated
// count * 37 + 1 times (up to 9 436), e.g. a number with thousands of digits.
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <chrono>
#include <string>

#include "fuzz_check.h"
#include "util/signals.h"
#include "util/time.h"

using sr::fuzz::Show;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string decoded;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (size > 0 && data[0] == 0) {
    for (size_t i = 1; i + 1 < size && decoded.size() < 100000; i += 2) {
      decoded.append(size_t{data[i]} * 37 + 1, static_cast<char>(data[i + 1]));
    }
    text = decoded;
  }

  auto d = sr::ParseDuration(text);
  if (d.ok()) {
    FUZZ_CHECK(d->count() >= 0, "negative duration from " + Show(text));
    FUZZ_CHECK(*d <= sr::kMaxDuration, "duration above kMaxDuration from " + Show(text));
    std::string formatted = sr::FormatDuration(*d);
    auto again = sr::ParseDuration(formatted);
    // Formatting rounds to the microsecond; at the limit that may round past it.
    bool near_max = *d > sr::kMaxDuration - std::chrono::microseconds(1);
    FUZZ_CHECK(again.ok() || near_max,
               "FormatDuration " + Show(formatted) + " does not parse back, from " + Show(text));
    if (again.ok()) {
      int64_t diff = again->count() - d->count();
      FUZZ_CHECK(diff <= 1000 && diff >= -1000,
                 "round trip " + Show(text) + " -> " + Show(formatted) + " is off by " +
                     std::to_string(diff) + "ns");
    }
  } else {
    FUZZ_CHECK(d.error().kind == sr::Error::Kind::kInvalid, "duration error kind");
    FUZZ_CHECK(d.error().message.rfind("invalid duration \"", 0) == 0,
               "duration error does not name the text: " + Show(d.error().message));
  }

  auto sig = sr::ParseSignal(text);
  if (sig.ok()) {
    FUZZ_CHECK(*sig > 0 && *sig < NSIG, "signal out of range from " + Show(text));
    std::string name = sr::SignalName(*sig);
    if (name.rfind("SIG", 0) == 0) {
      auto back = sr::ParseSignal(name);
      FUZZ_CHECK(back.ok() && *back == *sig, "SignalName does not parse back: " + Show(name));
    }
  } else {
    FUZZ_CHECK(sig.error().kind == sr::Error::Kind::kInvalid, "signal error kind");
  }
  return 0;
}
