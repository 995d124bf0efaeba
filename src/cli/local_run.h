// Runs one step file in this process (the `run` and `ci` commands): event loop, supervisor,
// Ctrl-C handling (first = graceful cancel, second = force), timeout, progress on a terminal,
// and step-results.json.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "stepfile/stepfile.h"

namespace sr::cli {

struct LocalRunRequest {
  stepfile::StepFile root;
  std::string work_dir;
  std::string root_step_dir;
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> job_vars;
  std::vector<std::string> secrets;
  nlohmann::json root_inputs = nlohmann::json::object();
  RunFlags flags;
  bool merge_stderr = false;  // stdout and stderr are the same file (e.g. `2>&1`)
  std::string default_results_file;  // written when flags.write_step_results and no file given
};

/// Runs the request and returns the exit code.
int RunLocally(LocalRunRequest request);

/// The process environment as a map.
std::map<std::string, std::string> ProcessEnv();

}  // namespace sr::cli
