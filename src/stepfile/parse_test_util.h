// What the step-file tests share: parse a text as `s.yml`, a definition under an empty spec, and
// the message of an error that must be a step-file error (kInvalid). Tests only.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "stepfile/stepfile.h"

namespace sr::stepfile::test {

inline Result<StepFile> Parse(const std::string& text) { return ParseStepFile(text, "s.yml"); }
// An empty spec (2 lines), so the definition starts on line 3.
inline Result<StepFile> Def(const std::string& definition) { return Parse("spec:\n---\n" + definition); }

inline std::string ErrorOf(const Result<StepFile>& r) {
  if (r.ok()) return "<ok>";
  EXPECT_EQ(r.error().kind, Error::Kind::kInvalid);
  return r.error().message;
}

}  // namespace sr::stepfile::test
