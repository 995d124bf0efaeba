// Short step references (`./dir`, `dir/x.yml`, `url@rev`, `dist://name`, `${{ ... }}`):
// ParseShortReference never crashes, errors are invalid-input errors, and what parses is sane:
// a file name, no empty path parts, a git reference has a URL and a revision.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_check.h"
#include "stepfile/stepfile.h"

using sr::fuzz::Show;
using Protocol = sr::stepfile::Reference::Protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto ref = sr::stepfile::ParseShortReference(text);
  if (!ref.ok()) {
    FUZZ_CHECK(ref.error().kind == sr::Error::Kind::kInvalid, "error kind for " + Show(text));
    return 0;
  }
  FUZZ_CHECK(!ref->filename.empty(), "empty file name from " + Show(text));
  FUZZ_CHECK(ref->filename.find('/') == std::string::npos, "'/' in file name from " + Show(text));
  for (const auto& part : ref->path) {
    FUZZ_CHECK(!part.empty(), "empty path part from " + Show(text));
    FUZZ_CHECK(part == "/" || part.find('/') == std::string::npos,
               "'/' inside a path part from " + Show(text));
  }
  switch (ref->protocol) {
    case Protocol::kGit:
      FUZZ_CHECK(!ref->url.empty() && !ref->version.empty(), "git without url/rev: " + Show(text));
      FUZZ_CHECK(ref->version.find('@') == std::string::npos, "'@' in the revision: " + Show(text));
      FUZZ_CHECK(ref->url[0] != '-', "option-like git URL: " + Show(text));
      break;
    case Protocol::kDist:
      FUZZ_CHECK(!ref->path.empty(), "dist without a name: " + Show(text));
      break;
    case Protocol::kDynamic:
      FUZZ_CHECK(ref->url == text, "dynamic reference text changed: " + Show(text));
      break;
    case Protocol::kLocal:
    case Protocol::kOci:
      break;
  }
  return 0;
}
