#include "cli/progress.h"

#include <cstdio>

#include <google/protobuf/util/time_util.h>

namespace sr::cli {
namespace {

std::string Label(const std::string& name) { return name.empty() ? "(step)" : name; }

std::string Millis(Duration d) {
  return FormatDuration(std::chrono::duration_cast<std::chrono::milliseconds>(d));
}

bool Ended(proto::StepResult::Status s) {
  return s == proto::StepResult::success || s == proto::StepResult::failure ||
         s == proto::StepResult::cancelled;
}

}  // namespace

void ProgressPrinter::Print(const std::string& line) {
  if (print_) {
    print_(line);
  } else {
    std::fputs(line.c_str(), stderr);
  }
}

void ProgressPrinter::Started(const std::string& name) {
  Print("step-runner: ▶ " + Label(name) + "\n");
}

void ProgressPrinter::Finished(const std::string& name, proto::StepResult::Status status,
                               std::optional<Duration> took,
                               const proto::ResourceUsage* usage) {
  std::string how = proto::StepResult::Status_Name(status);
  if (took) how += ", " + Millis(*took);
  if (usage) how += UsageSummary(*usage);
  Print(std::string("step-runner: ") + (status == proto::StepResult::success ? "✔" : "✘") + " " +
        Label(name) + " (" + how + ")\n");
}

void ProgressPrinter::Skipped(const std::string& name) {
  Print("step-runner: - " + Label(name) + " (skipped)\n");
}

void ProgressPrinter::Done(const std::string& outcome, Duration total) {
  Print("step-runner: finished: " + outcome + " after " + Millis(total) + "\n");
}

std::string OutcomeName(const std::optional<Error>& error) {
  if (!error) return "success";
  if (error->kind == Error::Kind::kTimedOut) return "timed out";
  return error->kind == Error::Kind::kCancelled ? "cancelled" : "failure";
}

std::string OutcomeName(const proto::Status& job) {
  if (job.error().kind() == proto::StatusError::timed_out) return "timed out";
  return proto::StepResult::Status_Name(job.status());
}

void SnapshotProgress::Update(const proto::StepResult& root, bool final) {
  // A root exec step is a step of its own; a root sequence only holds the steps.
  if (root.specdefinition().definition().type() == proto::DefinitionType::exec) {
    if (root.status() != proto::StepResult::unspecified) Walk(root, "");
    return;
  }
  for (const auto& sub : root.sub_step_results()) Walk(sub, "/" + sub.step().name());
  if (!final) return;
  // Steps of the root's `run:` that never started: skipped after a failure or cancel.
  std::set<std::string> ran;
  for (const auto& sub : root.sub_step_results()) ran.insert(sub.step().name());
  for (const auto& step : root.specdefinition().definition().steps()) {
    if (!ran.count(step.name())) Skipped(step.name());
  }
}

void SnapshotProgress::Walk(const proto::StepResult& r, const std::string& path) {
  const std::string& name = r.step().name();
  if (!started_.count(path)) {
    started_.insert(path);
    Started(name);
  }
  for (const auto& sub : r.sub_step_results()) Walk(sub, path + "/" + sub.step().name());
  if (Ended(r.status()) && !finished_.count(path)) {
    finished_.insert(path);
    std::optional<Duration> took;
    if (r.usage().has_start_time() && r.usage().has_end_time()) {
      took = std::chrono::nanoseconds(google::protobuf::util::TimeUtil::DurationToNanoseconds(
          r.usage().end_time() - r.usage().start_time()));
    }  // else unknown: what a poll sees is not the step's duration
    Finished(name, r.status(), took, &r.usage());
  }
}

}  // namespace sr::cli
