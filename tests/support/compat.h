// What the compatibility tests (tests/compat*_test.cc) share: the built binary run in a test's
// directory.
#pragma once

#include <string>
#include <vector>

#include "support/harness.h"

namespace sr::test {

inline Output RunIn(const TestDir& dir, const std::vector<std::string>& args, Options o = {}) {
  o.cwd = dir.path();
  return RunStepRunner(args, o);
}

}  // namespace sr::test
