// A Docker daemon of the test binary's own: dockerd with its own data root, exec root and
// socket under a temp dir (no iptables, no bridge, vfs storage), started once for the binary
// and stopped (SIGTERM, wait, remove) at its end, plus a tiny image imported from a rootfs
// holding busybox-static. Tests use `--network none`.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace sr::test {

class DockerDaemon {
 public:
  /// The daemon of this test binary, or null when dockerd is not installed (`why` says so).
  static DockerDaemon* Get(std::string* why);

  const std::string& socket() const { return socket_; }
  std::string host() const { return "unix://" + socket_; }
  const std::string& dir() const { return dir_; }
  /// The imported busybox image, also tagged `busybox` (the README's example uses that name).
  static constexpr const char* kImage = "sr-busybox";

  struct Result {
    int exit_code = -1;
    std::string out;  // stdout and stderr
  };
  /// Runs `docker ARGS` against `host` (default: this daemon directly). Shell words.
  Result Docker(const std::string& args, const std::string& host = "") const;
  /// The trimmed stdout of `docker ARGS` against the daemon directly.
  std::string Out(const std::string& args) const;
  /// Ids of every container (running or not) carrying `label` (k or k=v).
  std::vector<std::string> ContainersWithLabel(const std::string& label) const;

  void Start();
  void Stop();

 private:
  std::string dir_, socket_, log_;
  pid_t pid_ = -1;
};

/// Runs `command` with sh, capturing stdout and stderr together.
DockerDaemon::Result Shell(const std::string& command);

}  // namespace sr::test
