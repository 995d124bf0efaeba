// The floor for running N trivial steps one after another (issue 17): a C++ loop of posix_spawn
// + waitpid, nothing else. glibc's posix_spawn clones with CLONE_VM | CLONE_VFORK, as the
// runner does, so the difference to `step-runner run` is the runner's own work per step.
//
//   spawn_loop N PROGRAM [ARG...]            posix_spawn + waitpid, N times
//   spawn_loop --capture N PROGRAM [ARG...]  the same with stdout and stderr through two pipes
//                                            read until EOF (what any supervisor must add)
//
// The child inherits the environment; stdin is /dev/null. Exits 1 if a run did not exit 0.
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

extern char** environ;

namespace {

int Usage() {
  std::fprintf(stderr, "usage: spawn_loop [--capture] N PROGRAM [ARG...]\n");
  return 2;
}

// Reads both pipes until both are at EOF, discarding the bytes.
void Drain(int out, int err) {
  pollfd fds[2] = {{out, POLLIN, 0}, {err, POLLIN, 0}};
  int open = 2;
  char buf[65536];
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (auto& p : fds) {
      if (p.fd < 0 || p.revents == 0) continue;
      if (::read(p.fd, buf, sizeof buf) <= 0) {
        p.fd = -1;
        --open;
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  int i = 1;
  bool capture = false;
  if (i < argc && std::strcmp(argv[i], "--capture") == 0) {
    capture = true;
    ++i;
  }
  if (argc - i < 2) return Usage();
  const long n = std::strtol(argv[i], nullptr, 10);
  if (n <= 0) return Usage();
  char** child_argv = argv + i + 1;

  int failures = 0;
  for (long k = 0; k < n; ++k) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    if (capture) {
      if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
        std::perror("pipe2");
        return 1;
      }
      posix_spawn_file_actions_adddup2(&actions, out[1], 1);
      posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    }
    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, child_argv[0], &actions, nullptr, child_argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      std::fprintf(stderr, "spawn_loop: posix_spawn %s: %s\n", child_argv[0], std::strerror(rc));
      return 1;
    }
    if (capture) {
      ::close(out[1]);
      ::close(err[1]);
      Drain(out[0], err[0]);
      ::close(out[0]);
      ::close(err[0]);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
  }
  return failures == 0 ? 0 : 1;
}
