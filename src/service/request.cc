// RunRequest → JobRequest: everything Run can check before touching the disk.
#include <cstdint>
#include <cstdio>
#include <string>

#include "service/job.h"
#include "service/service.h"
#include "util/signals.h"
#include "util/tempdir.h"
#include "util/time.h"
#include "util/utf8.h"

namespace sr::service {
namespace {

// protobuf's rules for a Duration: nanos within ±999,999,999 and of the sign of seconds. A value
// outside them is no duration at all ({seconds: 0, nanos: 2000000000} was taken as 2 s), so it is
// refused, not normalised; the other fields of the request are held to their rules too.
Status CheckValidProto(const google::protobuf::Duration& d, const std::string& field) {
  constexpr int32_t kMaxNanos = 999999999;
  if (d.nanos() < -kMaxNanos || d.nanos() > kMaxNanos) {
    return InvalidError(field + ": invalid duration: nanos " + std::to_string(d.nanos()) +
                        " out of range [-999999999, 999999999]");
  }
  if ((d.seconds() > 0 && d.nanos() < 0) || (d.seconds() < 0 && d.nanos() > 0)) {
    return InvalidError(field + ": invalid duration: seconds (" + std::to_string(d.seconds()) +
                        ") and nanos (" + std::to_string(d.nanos()) + ") differ in sign");
  }
  return Ok();
}

// A proto Duration as nanoseconds; invalid and negative values are errors naming the field.
Result<Duration> FromProto(const google::protobuf::Duration& d, const char* field) {
  SR_RETURN_IF_ERROR(CheckValidProto(d, field));
  if (d.seconds() < 0 || d.nanos() < 0) {
    return InvalidError(std::string(field) + ": negative duration (" + std::to_string(d.seconds()) +
                        "s " + std::to_string(d.nanos()) + "ns)");
  }
  // Seconds are compared before converting: near int64's limit they overflow in nanoseconds.
  const bool too_large =
      d.seconds() > std::chrono::duration_cast<std::chrono::seconds>(kMaxDuration).count() ||
      std::chrono::seconds(d.seconds()) + std::chrono::nanoseconds(d.nanos()) > kMaxDuration;
  if (too_large) {
    return InvalidError(std::string(field) + ": duration too large (the limit is " +
                        FormatDuration(kMaxDuration) + ")");
  }
  return Duration(std::chrono::seconds(d.seconds()) + std::chrono::nanoseconds(d.nanos()));
}

// File variables become files in the job dir named after the key: the key must be a plain name
// that cannot escape the directory or shadow the log and the steps' temp dir.
Status ValidateFileKey(const std::string& key) {
  if (key.empty()) return InvalidError("file variable with an empty key");
  if (key.find('/') != std::string::npos || key.find('\0') != std::string::npos ||
      key[0] == '.' || key == "logs") {
    return InvalidError("file variable \"" + key + "\": invalid name for a file");
  }
  return Ok();
}

// A NUL would silently cut the value (or key) at the exec boundary, and `=` would move the
// boundary between key and value: both are refused, never cut. The key is quoted with NUL as
// \0 so the message stays one line.
Status ValidateVariable(const char* what, const std::string& key, const std::string& value) {
  const std::string shown = ShowNul(key, 128);
  if (key.empty()) return InvalidError(std::string(what) + " with an empty key");
  if (key.find('\0') != std::string::npos) {
    return InvalidError(std::string(what) + " \"" + shown + "\": the key contains NUL");
  }
  if (key.find('=') != std::string::npos) {
    return InvalidError(std::string(what) + " \"" + shown + "\": the key contains '='");
  }
  if (value.find('\0') != std::string::npos) {
    return InvalidError(std::string(what) + " \"" + shown + "\": the value contains NUL");
  }
  return Ok();
}

}  // namespace

std::string JobDir(const std::string& temp_base, const std::string& id) {
  return temp_base + "/step-runner-output-" + id;
}

Result<JobRequest> ParseRunRequest(const proto::RunRequest& request,
                                   const std::map<std::string, std::string>& server_env) {
  JobRequest job;
  SR_RETURN_IF_ERROR(ValidateJobId(request.id()));
  job.id = request.id();

  auto root = stepfile::ParseStepFile(request.steps(), std::string(stepfile::kRequestSource));
  if (!root.ok()) {
    Error e = root.error().Wrap("loading step");
    e.kind = Error::Kind::kInvalid;
    return e;
  }
  job.root = std::move(*root);

  if (request.has_graceful_exit_timeout()) {
    SR_ASSIGN_OR_RETURN(job.grace, FromProto(request.graceful_exit_timeout(), "graceful_exit_timeout"));
  }
  if (request.has_timeout()) {
    SR_ASSIGN_OR_RETURN(job.timeout, FromProto(request.timeout(), "timeout"));
  }
  if (request.has_warn_before()) {
    SR_ASSIGN_OR_RETURN(job.warn_before, FromProto(request.warn_before(), "warn_before"));
    if (job.timeout.count() == 0) return InvalidError("warn_before needs a timeout");
    if (job.warn_before >= job.timeout) {
      return InvalidError("warn_before (" + FormatDuration(job.warn_before) +
                          ") must be shorter than timeout (" + FormatDuration(job.timeout) + ")");
    }
  }
  if (request.has_resources()) {
    const auto& r = request.resources();
    if (r.memory_bytes() < 0 || r.pids() < 0 || !(r.cpus() >= 0) || r.cpus() > 1e6) {
      return InvalidError("resources: memory_bytes, pids and cpus must be 0 (no limit) or positive");
    }
    if (r.memory_bytes() > 0 && r.memory_bytes() < stepfile::kMinMemoryBytes) {
      return InvalidError("resources: memory_bytes " + std::to_string(r.memory_bytes()) +
                          " is below the smallest memory limit, 1048576 (1Mi)");
    }
    if (r.cpus() > 0 && r.cpus() < stepfile::kMinCpus) {
      char cpus[32];
      std::snprintf(cpus, sizeof cpus, "%g", r.cpus());
      return InvalidError(std::string("resources: cpus ") + cpus + " is below the smallest CPU limit, 0.01");
    }
    job.resources = {r.memory_bytes(), r.pids(), r.cpus()};
  }
  if (!request.warn_signal().empty()) {
    auto sig = ParseWarningSignal(request.warn_signal(), "timeout");
    if (!sig.ok()) return InvalidError("warn_signal: " + sig.error().message);
    job.warn_signal = *sig;
  }

  // Work dir: job.build_dir, else work_dir, else the server's cwd. Relative references of the
  // root resolve against the requested dir (the cwd fallback means the process cwd).
  job.work_dir = !request.job().build_dir().empty() ? request.job().build_dir() : request.work_dir();
  if (job.work_dir.find('\0') != std::string::npos) return InvalidError("work dir contains NUL");
  job.root_step_dir = job.work_dir;

  job.env = server_env;
  for (const auto& [k, v] : request.env()) {
    SR_RETURN_IF_ERROR(ValidateVariable("env variable", k, v));
    job.env[k] = v;
  }

  for (const auto& var : request.job().variables()) {
    SR_RETURN_IF_ERROR(ValidateVariable("job variable", var.key(), var.value()));
    if (var.file()) {
      SR_RETURN_IF_ERROR(ValidateFileKey(var.key()));
      job.file_vars.emplace_back(var.key(), var.value());
    } else {
      job.job_vars[var.key()] = var.value();
    }
    if (var.masked() && !var.value().empty()) job.secrets.push_back(var.value());
  }
  // As the Go service: the job variable first, then the environment (server's, then request's).
  auto level = NormalizeLogLevel(job.job_vars, job.env);
  if (!level.ok()) return level.error();
  job.env["CI_STEPS_LOG_LEVEL"] = *level;
  // The service has no way to pass root inputs: each must have a default.
  SR_RETURN_IF_ERROR(CheckRequiredInputs(job.root.spec, nlohmann::json::object()));
  return job;
}

}  // namespace sr::service
