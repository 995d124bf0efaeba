// The classic "billion laughs" as one YAML flow value, for the unit tests of the step-file parser
// (src/stepfile/hostile_test.cc) and the end-to-end hostile-input and fault tests alike: 9 levels of 9
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

/// A bomb that passes the per-job cap rather than the per-text one: 2 x 10^4 copies of 150 bytes
/// through aliases (~3 MB of values, within the 4 MiB per text) as an input's default, expanded
/// by `env_count` environment variables of one step (20 of them pass the 16 MiB per job).
inline std::string AliasBombSteps(int env_count) {
  std::string bomb = "[&a0 \"" + std::string(150, 'x') + "\"";
  for (int i = 1; i < 5; ++i) {
    bomb += ", &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) bomb += (k ? ",*a" : "*a") + std::to_string(i - 1);
    bomb += "]";
  }
  bomb += ", *a4]";
  std::string steps = "spec:\n  inputs:\n    v: {type: array, default: " + bomb + "}\n---\nrun:\n"
                      "  - name: bomb\n    script: echo hi\n    env:\n";
  for (int i = 0; i < env_count; ++i) steps += "      E" + std::to_string(i) + ": ${{ inputs.v }}\n";
  return steps;
}

}  // namespace sr::test
