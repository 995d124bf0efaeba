// Test support for the hostile-input and permission tests (issue 9): a sandbox whose working
// directory and $TMPDIR start empty, so that whatever a run leaves behind can be listed, and the
// error contract of the command line.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "support/alias_bomb.h"
#include "support/harness.h"

// Sanitizers cannot run under an address-space limit (prlimit --as), which some tests need.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SR_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SR_SANITIZED 1
#endif
// The TSan tree undefines __SANITIZE_THREAD__ for the libraries' headers (scripts/test) and
// says so with _GLIBCXX_TSAN instead.
#if defined(_GLIBCXX_TSAN) && _GLIBCXX_TSAN
#define SR_SANITIZED 1
#endif

namespace sr::test {

/// A test directory with an empty working directory (`cwd`) and an empty $TMPDIR (`tmp`) for
/// the runner. Step files are written next to them, not inside.
class Sandbox {
 public:
  Sandbox();
  const TestDir& dir() const { return dir_; }
  std::string cwd() const { return dir_ / "cwd"; }
  std::string tmp() const { return dir_ / "tmp"; }
  std::string Write(const std::string& rel, const std::string& content) const {
    return dir_.Write(rel, content);
  }
  /// Runs the binary in `cwd` with TMPDIR=`tmp`.
  Output Run(const std::vector<std::string>& args, std::chrono::seconds timeout = std::chrono::seconds(120),
             std::map<std::string, std::string> env = {}) const;
  /// The same under an address-space limit (`prlimit --as=limit`), so a bug that eats memory
  /// ends in std::bad_alloc instead of exhausting the machine. Under sanitizers (which cannot run
  /// with such a limit) the same as Run().
  Output RunLimited(const std::string& limit, const std::vector<std::string>& args) const;
  /// Everything in the working directory and $TMPDIR, except the git cache (kept on purpose).
  std::vector<std::string> Leftovers() const;

 private:
  TestDir dir_;
};

/// The step-file error contract: exit 2, one line `step-runner: <message>` on stderr, which
/// contains `what`.
void ExpectStepFileError(const Output& o, const std::string& what);

/// Every path under `root` (recursively, symlinks not followed) with its mode, "path mode".
std::vector<std::string> ListTree(const std::string& root);

}  // namespace sr::test
