// Git-referenced steps: a bare clone per repository under the cache directory, and one extracted
// tree per commit (reused). Everything runs `git` under the supervisor, so a cancel stops it.
#pragma once

#include <functional>
#include <string>

#include "loop/task.h"
#include "engine/cancel.h"
#include "supervisor/supervisor.h"
#include "util/result.h"

namespace sr::engine {

class GitCache {
 public:
  /// What a cancel did to a git process: its tree's exit, records included, for the job's
  /// termination record.
  using StoppedFn = std::function<void(const TreeExit&, const CancelSource&)>;

  /// `dir` "" = $TMPDIR/step-runner-cache. `env` is the environment git runs with.
  GitCache(Supervisor& sup, std::string dir, std::vector<std::string> env, StoppedFn on_stopped);

  /// Returns the directory of a checkout of `url` at `rev` (a tag, branch, or commit hash
  /// prefix of at least 8 characters). Errors start with "fetching git step: ".
  Task<Result<std::string>> Checkout(std::string url, std::string rev, CancelSource* cancel);

 private:
  Task<Result<std::string>> Git(std::vector<std::string> args, CancelSource* cancel,
                                std::string extra_env = "");
  Supervisor& sup_;
  std::string dir_;
  std::vector<std::string> env_;
  StoppedFn on_stopped_;
};

}  // namespace sr::engine
