// The command line: one function per command, each returning the process exit code.
// Exit codes (contract section 5): 0 success, 1 a step failed, 2 usage or step-file error,
// 124 timed out, 130 cancelled. Errors are one line `step-runner: <message>` on stderr.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "supervisor/controllers.h"
#include "util/result.h"
#include "util/time.h"

namespace sr::cli {

/// Registers every command on `app`; `exit_code` receives the chosen command's result.
void RegisterCommands(CLI::App& app, int& exit_code);

/// The message for a command line CLI11 refused: an unknown word where a command was expected is
/// named with the commands there are (`unknown client command "bogus" (commands: run, …)`);
/// anything else keeps CLI11's words.
std::string UsageErrorMessage(const CLI::App& app, const CLI::ParseError& error);

/// Prints `step-runner: <message>` to stderr and returns `code`.
int Fail(const std::string& message, int code);

/// The value of environment variable `key`, for `--masked-job KEY`; an error naming `flag` and
/// the key when it is not set.
Result<std::string> ValueFromEnv(const std::string& key, const std::string& flag);

/// The default socket: `<DefaultSocketDir()>/step-runner.sock`. The directory is
/// `$XDG_RUNTIME_DIR` if set, else `/run/step-runner` for root, else `$TMPDIR/step-runner-<uid>`.
std::string DefaultSocketDir();
std::string DefaultSocketPath();
/// Creates `dir` (0700) if missing; an error if it is not a directory owned by this user.
Status PrivateSocketDir(const std::string& dir);
/// An error naming the owner if the socket at `path` belongs to neither root nor this user.
Status CheckSocketOwner(const std::string& path);

/// The job's timing and limits, as `run`, `ci` and `client run` take them (text, parsed later so
/// that errors name the flag).
struct JobFlags {
  std::string timeout;      // "" = none
  std::string grace;        // "" = the default (30s)
  std::string warn_before;  // "" = none
  std::string warn_signal;
  std::string memory, pids, cpus;  // job-wide limits (contract 8.1); "" = none
};

/// Declares --timeout, --grace, --warn-before, --warn-signal, --memory, --pids and --cpus.
void AddJobFlags(CLI::App* cmd, JobFlags& flags);

/// --memory, --pids and --cpus parsed; an error naming the flag.
Result<ResourceLimits> LimitsFromFlags(const JobFlags& flags);

/// The job's timing from the flags, checked as the service checks RunRequest's fields so that
/// `client run` says which flag is wrong before anything is sent (the service's words name the
/// proto fields, which the user never typed).
struct JobTiming {
  std::optional<Duration> grace;  // unset: --grace not given (the service's default)
  Duration timeout{0};            // 0 = none
  Duration warn_before{0};        // 0 = no warning
  int warn_signal = 0;            // 0 = none
};

/// --timeout, --grace, --warn-before and --warn-signal parsed and checked together; an error
/// naming the flag.
Result<JobTiming> TimingFromFlags(const JobFlags& flags);

/// Options shared by `run` and `ci`.
struct RunFlags : JobFlags {
  RunFlags() { grace = "30s"; }
  std::string step_results_file;
  bool write_step_results = false;
  std::string step_results_format = "json";  // or "prototext"
  std::string docker = "guard";  // or "passthrough": the steps get the real DOCKER_HOST (section 9)
};

}  // namespace sr::cli
