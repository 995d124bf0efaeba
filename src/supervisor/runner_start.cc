#include "supervisor/runner_start.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstdio>

#include "supervisor/guardian.h"
#include "supervisor/leftovers.h"
#include "util/tempdir.h"

namespace sr {
namespace {
rlimit g_original_files{};
bool g_raised = false;
}  // namespace

const rlimit* OriginalFileLimit() { return g_raised ? &g_original_files : nullptr; }

Status PrepareRunner(const std::string& temp_base, bool guardian) {
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    g_original_files = files;
    g_raised = true;
    files.rlim_cur = files.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &files) != 0) return ErrnoError("raising the open files limit", errno);
  }
  if (guardian) SR_RETURN_IF_ERROR(StartGuardian());
  LeftoverReport removed = RemoveDeadLeftovers(temp_base);
  if (!removed.empty()) std::fprintf(stderr, "step-runner: %s\n", removed.Line(temp_base).c_str());
  return Ok();
}

}  // namespace sr
