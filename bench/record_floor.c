/* record_floor: the floor of bench/cancel_latency for a runner that keeps an exact record.
 *
 *   record_floor cgroup:DIR GRACE_MS CMD...    the tree runs in a new leaf DIR/floor-<pid>
 *   record_floor walk GRACE_MS CMD...          the tree is found by walking children files
 *
 * Runs CMD in its own process group as a subreaper and waits for SIGINT or SIGTERM. Then it does
 * what the contract's termination record needs before a signal, and nothing else: it lists the
 * tree's members (the leaf's cgroup.procs; or a walk from the main process through the children
 * files plus its own children, where a setsid daemon lands), pins each with a pidfd and reads
 * its process group and name (a member that dies of the signal may be reaped by its own parent at
 * once, and the record must still name it), signals the members outside the main process's group
 * through their pidfds and the group with one kill(-pgid). Only then does it read their command
 * lines. Once GRACE_MS have passed it kills whatever is left (cgroup.kill; or the group, the pins
 * and a second walk), reaps everything and exits. No event loop, no log, no threads, no RPC:
 * what step-runner costs beyond this is its own overhead; what this costs beyond `timeout`
 * (which names nobody) is the price of the record.
 *
 * Built by scripts/bench with `cc -O2`; used by bench/cancel_latency (runner "record floor").
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_MEMBERS 512

struct member {
  pid_t pid;
  int pidfd;
  pid_t pgrp;
  char comm[32];
  char cmdline[256];
};

static char g_leaf[4096];
static pid_t g_main;
static struct member g_members[MAX_MEMBERS];
static int g_count;

static int read_file(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = 0;
  return (int)n;
}

static int write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n < 0 ? -1 : 0;
}

static int known(pid_t pid) {
  for (int i = 0; i < g_count; i++)
    if (g_members[i].pid == pid) return 1;
  return 0;
}

/* Pins `pid` and reads its group and name; 0 when it is gone already. */
static int pin(pid_t pid, int from_stat) {
  if (g_count == MAX_MEMBERS || known(pid)) return 0;
  struct member *m = &g_members[g_count];
  m->pid = pid;
  m->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (m->pidfd < 0) return 0;
  char path[64], buf[512];
  if (from_stat) {
    /* "pid (comm) state ppid pgrp ...": one read gives the name and the group. */
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    char *open_paren, *close_paren;
    if (read_file(path, buf, sizeof buf) < 0 || !(open_paren = strchr(buf, '(')) ||
        !(close_paren = strrchr(buf, ')'))) {
      close(m->pidfd);
      return 0;
    }
    *close_paren = 0;
    snprintf(m->comm, sizeof m->comm, "%s", open_paren + 1);
    char state;
    int ppid, pgrp;
    if (sscanf(close_paren + 2, "%c %d %d", &state, &ppid, &pgrp) != 3) pgrp = -1;
    m->pgrp = pgrp;
  } else {
    m->pgrp = getpgid(pid);
    snprintf(path, sizeof path, "/proc/%d/comm", pid);
    if (read_file(path, m->comm, sizeof m->comm) < 0) m->comm[0] = 0;
  }
  if (m->pgrp < 0) {
    close(m->pidfd);
    return 0;
  }
  g_count++;
  return 1;
}

/* Pins every pid listed in a children or cgroup.procs file that is not pinned yet. */
static void pin_listed(const char *path, int from_stat) {
  char buf[8192];
  if (read_file(path, buf, sizeof buf) < 0) return;
  for (char *p = buf; *p;) {
    char *end;
    long pid = strtol(p, &end, 10);
    if (end == p) break;
    p = end;
    if (pid > 0) pin((pid_t)pid, from_stat);
  }
}

static void pin_children(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", pid, pid);
  pin_listed(path, 1);
}

/* Pins the members not pinned yet (a second call finds those born since the first). */
static void list_members(void) {
  if (g_leaf[0]) {
    char path[4200];
    snprintf(path, sizeof path, "%s/cgroup.procs", g_leaf);
    pin_listed(path, 0);
    return;
  }
  /* The walk: the main process, the floor's own children (orphans re-parented to it, such as a
   * setsid daemon), then every descendant of each. */
  pin(g_main, 1);
  pin_children(getpid());
  for (int i = 0; i < g_count; i++) pin_children(g_members[i].pid);
}

static void signal_members(int signo) {
  for (int i = 0; i < g_count; i++)
    if (g_members[i].pgrp != g_main) syscall(SYS_pidfd_send_signal, g_members[i].pidfd, signo, NULL, 0);
  kill(-g_main, signo);
}

static void kill_leaf(void) {
  char path[4200];
  snprintf(path, sizeof path, "%s/cgroup.kill", g_leaf);
  write_file(path, "1");
}

static void reap_all(void) {
  while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
  }
}

static double since_ms(const struct timespec *t) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - t->tv_sec) * 1e3 + (double)(now.tv_nsec - t->tv_nsec) / 1e6;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: record_floor cgroup:DIR|walk GRACE_MS CMD...\n");
    return 2;
  }
  const long grace_ms = atol(argv[2]);
  if (strncmp(argv[1], "cgroup:", 7) == 0) {
    snprintf(g_leaf, sizeof g_leaf, "%s/floor-%d", argv[1] + 7, getpid());
    if (mkdir(g_leaf, 0755) != 0) {
      perror(g_leaf);
      return 2;
    }
  } else if (strcmp(argv[1], "walk") != 0) {
    fprintf(stderr, "record_floor: mode must be cgroup:DIR or walk, not %s\n", argv[1]);
    return 2;
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, NULL);
  g_main = fork();
  if (g_main == 0) {
    setpgid(0, 0);
    if (g_leaf[0]) {
      char procs[4200];
      snprintf(procs, sizeof procs, "%s/cgroup.procs", g_leaf);
      if (write_file(procs, "0") != 0) _exit(127);
    }
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    execvp(argv[3], argv + 3);
    _exit(127);
  }
  setpgid(g_main, g_main);
  int status = 0, cancelled = 0;
  for (;;) {
    siginfo_t info;
    if (sigwaitinfo(&set, &info) < 0) continue;
    if (info.si_signo == SIGCHLD) {
      pid_t p;
      while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
        if (p == g_main) goto ended;
      }
      continue;
    }
    cancelled = 1;
    break;
  }
  /* The cancel: pins and names first, the signals, then the command lines. */
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  list_members();
  signal_members(SIGTERM);
  for (int i = 0; i < g_count; i++) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", g_members[i].pid);
    int n = read_file(path, g_members[i].cmdline, sizeof g_members[i].cmdline);
    for (int k = 0; k < n - 1; k++)
      if (!g_members[i].cmdline[k]) g_members[i].cmdline[k] = ' ';
  }
  /* The grace: reap what ends; stop waiting once the main process and the orphans are gone. */
  sigdelset(&set, SIGINT);
  sigdelset(&set, SIGTERM);
  for (;;) {
    const double left = (double)grace_ms - since_ms(&t0);
    if (left <= 0) break;
    const long long ns = (long long)(left * 1e6);
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    siginfo_t info;
    if (sigtimedwait(&set, &info, &ts) < 0 && errno == EAGAIN) break;
    while (waitpid(-1, &status, WNOHANG) > 0) {
    }
    if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD) goto record;
  }
  if (g_leaf[0]) {
    kill_leaf();
  } else {
    signal_members(SIGKILL);
    list_members(); /* anything born in the grace */
    signal_members(SIGKILL);
  }
  reap_all();
record:
  for (int i = 0; i < g_count; i++) {
    fprintf(stderr, "%d %s %s\n", g_members[i].pid, g_members[i].comm, g_members[i].cmdline);
    close(g_members[i].pidfd);
  }
ended:
  /* Whatever outlived the main process (or the record) does not outlive the floor. */
  if (g_leaf[0]) {
    kill_leaf();
  } else {
    kill(-g_main, SIGKILL);
  }
  reap_all();
  if (g_leaf[0]) rmdir(g_leaf);
  if (cancelled) return 130;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
