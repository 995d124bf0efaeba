// The gRPC job service (`step-runner serve`): GitLab Runner's interface to step-runner.
//
// Wire contract: proto/step.proto, package `proto`, service `StepRunner` (contract.md section 1);
// job lifecycle: contract.md section 2. In short:
//   Run        registers a job (a second Run with the same id is an OK no-op), answers once the
//              job's directories exist, and runs it in the background.
//   Status     state, message, times, error kind, result tree, cancel time, termination record.
//   Cancel     graceful cancel (or SIGKILL now with force); idempotent; keeps the job's record.
//   Close      cancels if running, waits until every process of the job is gone, then deletes
//              the job's directory and forgets the job. Unknown ids are OK.
//   FollowLogs streams the job log byte-exactly from an offset until the job has ended.
//
// Architecture: one event-loop thread owns every engine, supervisor and cancel source; the gRPC
// server uses the callback API, so no thread is spent per job or per stream. Handlers validate,
// then post work to the loop; unary RPCs finish from the loop when the work is done. Status(id)
// too: the loop brings the job's result tree up to date when asked, not at every step. The
// listing reads per-job summaries the loop publishes at every change of state, under a mutex.
//
// Files of a job: `$TMPDIR/step-runner-output-<id>/` (0700) holds the log `logs`, file variables
// (0600) and the steps' output files. Finished jobs nobody closes are reaped after `retention`.
//
// Shutdown (SIGTERM/SIGINT): new RPCs get UNAVAILABLE, running jobs are cancelled gracefully
// (reason server_shutdown) and awaited, log streams end, the socket file is removed, exit 0.
// A second signal kills every job's processes at once.
#pragma once

#include <chrono>
#include <map>
#include <string>

#include "supervisor/supervisor.h"

#include "util/result.h"
#include "util/time.h"

namespace sr::service {

/// FollowLogs' trailing metadata when a stream ends because its job ended: the job's final
/// Status without its result and termination trees (a serialized proto::Status). A client whose
/// Status(id) comes after another client Closed the job (NOT_FOUND) reads the outcome here.
inline constexpr char kJobEndTrailer[] = "step-runner-job-end-bin";

struct ServeOptions {
  /// Unix socket to listen on. A stale socket file (no listener) is replaced; a live one is an
  /// error. The socket is created with mode 0600.
  std::string socket_path;
  /// Finished jobs that nobody closed are forgotten (and their files removed) after this long.
  /// 0 = never.
  Duration retention = std::chrono::hours(24);
  /// At shutdown, how long log streams may take to deliver their last bytes once every job has
  /// ended; streams still open then are cut off.
  Duration shutdown_deadline = std::chrono::seconds(5);
  /// The server's environment: the base environment of every job's steps.
  std::map<std::string, std::string> env;
  /// Job directories (`<temp_base>/step-runner-output-<id>`) and the git cache go here.
  std::string temp_base = "/tmp";
  /// false: no guardian (STEP_RUNNER_GUARDIAN=off; runner_start.h).
  bool guardian = true;
  Supervisor::Options supervisor;
};

/// Serves until SIGTERM or SIGINT, then shuts down as described above. Must be called on the
/// main thread before any other thread exists (it blocks SIGINT, SIGTERM and SIGCHLD for the
/// whole process). Returns an error if the server could not start.
Status Serve(const ServeOptions& options);

/// Checks a job id: not empty, at most 128 bytes, no '/', NUL or "..". Error kind kInvalid.
Status ValidateJobId(const std::string& id);

}  // namespace sr::service
