// Progress on a terminal (contract section 5): a line on stderr when each step starts and ends
// (with its duration and status), steps skipped after a failure, and a last line with the total
// time and the result. One format for `run`/`ci` (engine callbacks) and `client run --follow`
// (successive Status snapshots of the job's result tree).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "engine/engine.h"
#include "proto/step.pb.h"
#include "util/time.h"

namespace sr::cli {

/// Prints the lines; all on stderr, or to PrintTo's function.
class ProgressPrinter {
 public:
  /// Where the lines go instead of stderr (`run`: the sink that never blocks the loop).
  void PrintTo(std::function<void(std::string_view)> print) { print_ = std::move(print); }
  void Started(const std::string& name);
  /// With `usage`, the line carries CPU time and peak memory (contract 8.2).
  void Finished(const std::string& name, proto::StepResult::Status status,
                std::optional<Duration> took, const proto::ResourceUsage* usage = nullptr);
  void Skipped(const std::string& name);
  /// The last line: `step-runner: finished: failure after 1.204s` (`outcome` as OutcomeName).
  void Done(const std::string& outcome, Duration total);

 private:
  void Print(const std::string& line);
  std::function<void(std::string_view)> print_;
};

/// Engine observer for `run`/`ci`.
class TerminalProgress : public Observer, public ProgressPrinter {
 public:
  void StepStarted(const std::string& name) override { Started(name); }
  void StepFinished(const std::string& name, proto::StepResult::Status status, Duration took,
                    const proto::StepResult& result) override {
    Finished(name, status, took, &result.usage());
  }
  void StepSkipped(const std::string& name) override { Skipped(name); }
};

/// For `client run --follow`: fed the job's result tree as it changes, prints what is new.
class SnapshotProgress : public ProgressPrinter {
 public:
  void Update(const proto::StepResult& root, bool final);

 private:
  void Walk(const proto::StepResult& r, const std::string& path);
  std::set<std::string> started_;  // by path of names, e.g. "/build/compile"
  std::set<std::string> finished_;
};

/// How a run's outcome is shown in the last line: success, failure, cancelled or "timed out"
/// (a timeout's state is failure, and its steps were cancelled: neither word says it).
std::string OutcomeName(const std::optional<Error>& error);
/// The same for a job's final Status.
std::string OutcomeName(const proto::Status& job);

}  // namespace sr::cli
