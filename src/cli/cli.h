// The command line: one function per command, each returning the process exit code.
// Exit codes (contract section 5): 0 success, 1 a step failed, 2 usage or step-file error,
// 124 timed out, 130 cancelled. Errors are one line `step-runner: <message>` on stderr.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace sr::cli {

/// Registers every command on `app`; `exit_code` receives the chosen command's result.
void RegisterCommands(CLI::App& app, int& exit_code);

/// Prints `step-runner: <message>` to stderr and returns `code`.
int Fail(const std::string& message, int code);

/// Options shared by `run` and `ci` (and the client's `run`).
struct RunFlags {
  std::string timeout;      // "" = none
  std::string grace = "30s";
  std::string warn_before;  // "" = none
  std::string warn_signal;
  std::string step_results_file;
  bool write_step_results = false;
  std::string step_results_format = "json";  // or "prototext"
  std::string memory, pids, cpus;  // job-wide limits (contract 8.1); "" = none
};

}  // namespace sr::cli
