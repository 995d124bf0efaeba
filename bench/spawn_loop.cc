// The floor for running N trivial steps one after another (issue 17): a C++ loop of posix_spawn
// + waitpid, nothing else. glibc's posix_spawn clones with CLONE_VM | CLONE_VFORK, as the
// runner does, so the difference to `step-runner run` is the runner's own work per step.
//
//   spawn_loop N PROGRAM [ARG...]            posix_spawn + waitpid, N times
//   spawn_loop --capture N PROGRAM [ARG...]  the same with stdout and stderr through two pipes
//                                            read until EOF (what any supervisor must add)
//   spawn_loop --cgroup DIR ...              each child born in the cgroup v2 directory DIR
//                                            (clone3 CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP,
//                                            as the runner starts a step in its leaf): what
//                                            containing a step's processes adds to the spawn
//   spawn_loop --cgroup - ...                the same clone3 without CLONE_INTO_CGROUP, to
//                                            tell the cgroup's share from the clone's
//
// The child inherits the environment; stdin is /dev/null. Exits 1 if a run did not exit 0.
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "util/clone3.h"

extern char** environ;

namespace {

int Usage() {
  std::fprintf(stderr, "usage: spawn_loop [--capture] [--cgroup DIR] N PROGRAM [ARG...]\n");
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

// What a child born in a cgroup runs: the same file actions as the posix_spawn path, then exec.
struct Child {
  char** argv;
  int dev_null;
  int out;  // -1: inherit stdout and stderr
  int err;
};

int ChildMain(void* arg) {
  const Child& c = *static_cast<const Child*>(arg);
  if (::dup2(c.dev_null, 0) < 0) return 127;
  if (c.out >= 0 && (::dup2(c.out, 1) < 0 || ::dup2(c.err, 2) < 0)) return 127;
  ::execve(c.argv[0], c.argv, environ);
  return 127;
}

// Starts argv in the cgroup `cgroup_fd` (< 0: where we are) with vfork semantics, as posix_spawn
// would.
pid_t SpawnInCgroup(const Child& child, int cgroup_fd) {
#ifdef SR_HAVE_CLONE3
  alignas(16) static char stack[64 * 1024];
  clone_args args{};
  args.flags = CLONE_VM | CLONE_VFORK | (cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0);
  args.exit_signal = SIGCHLD;
  args.stack = reinterpret_cast<uintptr_t>(stack);
  args.stack_size = sizeof stack;
  args.cgroup = cgroup_fd >= 0 ? static_cast<uint64_t>(cgroup_fd) : 0;
  return sr::Clone3(&args, ChildMain, const_cast<Child*>(&child));
#else
  (void)child;
  (void)cgroup_fd;
  errno = ENOSYS;
  return -1;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  int i = 1;
  bool capture = false;
  if (i < argc && std::strcmp(argv[i], "--capture") == 0) {
    capture = true;
    ++i;
  }
  int cgroup_fd = -1;  // -2: clone3 outside any cgroup
  if (i + 1 < argc && std::strcmp(argv[i], "--cgroup") == 0) {
    const bool none = std::strcmp(argv[i + 1], "-") == 0;
    cgroup_fd = none ? -2 : ::open(argv[i + 1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup_fd == -1) {
      std::fprintf(stderr, "spawn_loop: open %s: %s\n", argv[i + 1], std::strerror(errno));
      return 1;
    }
    i += 2;
  }
  const int dev_null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (argc - i < 2) return Usage();
  const long n = std::strtol(argv[i], nullptr, 10);
  if (n <= 0) return Usage();
  char** child_argv = argv + i + 1;

  int failures = 0;
  for (long k = 0; k < n; ++k) {
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    if (capture && (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)) {
      std::perror("pipe2");
      return 1;
    }
    pid_t pid = 0;
    int rc = 0;
    if (cgroup_fd != -1) {
      // The clone3 loop does its file actions in the child: no posix_spawn actions to build.
      const Child child{child_argv, dev_null, capture ? out[1] : -1, capture ? err[1] : -1};
      pid = SpawnInCgroup(child, cgroup_fd);
      rc = pid < 0 ? errno : 0;
    } else {
      posix_spawn_file_actions_t actions;
      posix_spawn_file_actions_init(&actions);
      posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
      if (capture) {
        posix_spawn_file_actions_adddup2(&actions, out[1], 1);
        posix_spawn_file_actions_adddup2(&actions, err[1], 2);
      }
      rc = ::posix_spawn(&pid, child_argv[0], &actions, nullptr, child_argv, environ);
      posix_spawn_file_actions_destroy(&actions);
    }
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
