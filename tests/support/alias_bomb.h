// The classic "billion laughs" as one YAML flow value, for the unit tests of the step-file parser
// (src/stepfile/hostile_test.cc) and the end-to-end hostile-input tests alike: 9 levels of 9
// aliases each, which expand to 9^9 strings.
#pragma once

#include <string>

namespace sr::test {

inline std::string AliasBomb() {
  std::string s = "[&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]";
  for (char c = 'b'; c <= 'i'; ++c) {
    std::string prev(1, static_cast<char>(c - 1));
    s += std::string(", &") + c + " [";
    for (int i = 0; i < 9; ++i) s += (i ? ", *" : "*") + prev;
    s += "]";
  }
  return s + "]";
}

}  // namespace sr::test
