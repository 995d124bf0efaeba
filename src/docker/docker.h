// Containers the job started through Docker stop with the job (contract section 9).
//
// A job that can reach a Docker daemon gets its own endpoint: a unix socket in the job's
// directory, given to its steps as DOCKER_HOST. Every request goes through to the real daemon
// unchanged, except a container create, which gains the labels io.step-runner.job=<job id> and
// io.step-runner.instance=<this runner>. At the job's end, whatever the reason, the guard finds
// the job's containers by those labels and stops them the way `docker stop` does (the
// container's stop signal, SIGKILL when the job's remaining grace runs out), removes them with
// their anonymous volumes and removes the networks the job created — all in parallel, on the
// event loop. A container labelled io.step-runner.keep=true is left running, on purpose and on
// the record. A runner that died leaves its containers and networks to the next one's cleanup,
// which finds them by their instance label.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "loop/loop.h"
#include "proto/step.pb.h"
#include "util/result.h"
#include "util/tempdir.h"
#include "util/time.h"

namespace sr::docker {

inline constexpr char kJobLabel[] = "io.step-runner.job";
inline constexpr char kInstanceLabel[] = "io.step-runner.instance";
inline constexpr char kKeepLabel[] = "io.step-runner.keep";
/// Job variable / `run --docker` value that gives the steps the real DOCKER_HOST.
inline constexpr char kModeVariable[] = "STEP_RUNNER_DOCKER";
inline constexpr char kPassthrough[] = "passthrough";

using ContainerRecord = proto::Termination::ContainerRecord;
using LogLine = std::function<void(std::string_view line)>;

/// The daemon socket a job with environment `env` reaches: DOCKER_HOST=unix://PATH, or
/// /var/run/docker.sock when DOCKER_HOST is unset. Nothing when DOCKER_HOST names another kind
/// of endpoint (tcp://, ssh://: passed through untouched) or no socket is there.
std::optional<std::string> DaemonSocket(const std::map<std::string, std::string>& env);

/// The daemon socket to guard for a job: DaemonSocket(env), unless the job opted out with
/// `mode` "passthrough" (run --docker) or the job variable STEP_RUNNER_DOCKER=passthrough.
std::optional<std::string> DaemonToGuard(const std::map<std::string, std::string>& env,
                                         const std::map<std::string, std::string>& job_vars,
                                         std::string_view mode);

/// This runner process's instance: boot id, pid namespace, pid and the pid's start time, so a
/// reused pid is not mistaken for the runner that labelled a container.
const std::string& InstanceId();
/// Whether the runner `instance` may still be alive. An instance of another boot of this
/// machine, or of the same boot whose pid is gone or has another start time, is dead. One from
/// another pid namespace (a runner in a container sharing the daemon) cannot be judged from
/// here and counts as alive.
bool InstanceAlive(const std::string& instance);

struct GuardOptions {
  std::string daemon_socket;  // the real daemon
  std::string socket_path;    // where the job's endpoint listens (e.g. <job dir>/docker.sock)
  std::string job_id;
  LogLine log;                // the job log, one line per call
};

class DockerGuard {
 public:
  /// Starts the endpoint. Fails if the socket cannot be created (path too long, no space).
  static Result<std::unique_ptr<DockerGuard>> Start(EventLoop& loop, GuardOptions options);
  ~DockerGuard();
  DockerGuard(const DockerGuard&) = delete;
  DockerGuard& operator=(const DockerGuard&) = delete;

  /// The value of DOCKER_HOST for the job's steps: unix://<socket_path>.
  std::string docker_host() const;

  /// At the job's end: closes the endpoint, stops every container of the job (stop signal now,
  /// SIGKILL after `remaining_grace`; SIGKILL at once when `forced`), removes them and the job's
  /// networks, and calls `done` on the loop with a record per container (kept ones included).
  /// Never calls `done` before returning. The guard must outlive the stop.
  void Stop(Duration remaining_grace, bool forced,
            std::function<void(std::vector<ContainerRecord>)> done);
  /// A forced cancel during Stop: SIGKILL to every container still in its grace, now.
  void Force();

  struct StopRun;  // internal

 private:
  DockerGuard(EventLoop& loop, GuardOptions options);
  EventLoop& loop_;
  GuardOptions options_;
  std::shared_ptr<std::vector<std::string>> networks_;
  // Container creates that went through the endpoint: none, and the stop asks the daemon nothing
  // (a job that never used Docker costs no API call at its end).
  std::shared_ptr<size_t> creates_ = std::make_shared<size_t>(0);
  std::unique_ptr<class Proxy> proxy_;
  std::shared_ptr<StopRun> stop_;
  TempDir short_dir_;  // only when the job dir's path is too long for a socket
};

/// What a runner's start removed of dead runner instances (descriptions "<id12> <name>").
struct DeadInstanceCleanup {
  std::vector<std::string> containers, networks;
  bool empty() const;
  /// The one log line: `removed 1 container(s) and 1 network(s) of dead runner instances: …`.
  std::string Line() const;
};

/// A runner's start: removes (force, with anonymous volumes) every container whose instance
/// label names a dead runner instance (see InstanceAlive), then every network so labelled (the
/// proxy labels network creates too), except those labelled keep. Calls `done` on the loop.
void RemoveDeadInstanceLeftovers(EventLoop& loop, const std::string& daemon_socket,
                                 std::function<void(Result<DeadInstanceCleanup>)> done);

/// The log line for one record, e.g. `docker: container 3f2a1b0c9d8e web (image busybox):
/// ended by SIGTERM; removed`.
std::string DescribeRecord(const ContainerRecord& record);

}  // namespace sr::docker
