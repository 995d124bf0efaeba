/* sigrec: a process tree that records when each of its processes receives the cancel signal.
 *
 *   sigrec FIFO NPROC MODE [daemon]
 *
 * Starts NPROC processes in all (this one plus NPROC-1 forked children; every second child
 * forks its sibling, so the tree is two levels deep) and, with `daemon`, one more process that
 * leaves the session (setsid + double fork, the classic daemon that `timeout` cannot see).
 * Every process writes `R <pid>\n` to FIFO once its handlers are installed, and keeps the FIFO
 * open until it dies, so the reader also sees EOF when the last one is gone.
 *
 * On SIGTERM or SIGINT a process writes `T <pid> <CLOCK_MONOTONIC ns>\n` (the first time only).
 * MODE `obey`: it then exits at once. MODE `ignore`: it keeps running until SIGKILL.
 * Every write is shorter than PIPE_BUF, so lines from different processes never interleave.
 *
 * Built by scripts/bench with `cc -O2`; used by bench/cancel_latency and bench/serve_compare.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int g_fd = -1;
static int g_obey = 1;
static volatile sig_atomic_t g_seen = 0;

static size_t put_u64(char *p, unsigned long long v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
  return n;
}

static void on_signal(int sig) {
  (void)sig;
  if (!g_seen) {
    g_seen = 1;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char line[64];
    size_t n = 0;
    line[n++] = 'T';
    line[n++] = ' ';
    n += put_u64(line + n, (unsigned long long)getpid());
    line[n++] = ' ';
    n += put_u64(line + n, (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec);
    line[n++] = '\n';
    (void)!write(g_fd, line, n);
  }
  if (g_obey) _exit(0);
}

static void ready(void) {
  char line[32];
  size_t n = 0;
  line[n++] = 'R';
  line[n++] = ' ';
  n += put_u64(line + n, (unsigned long long)getpid());
  line[n++] = '\n';
  (void)!write(g_fd, line, n);
}

static void wait_forever(void) {
  for (;;) pause();
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: sigrec FIFO NPROC obey|ignore [daemon]\n");
    return 2;
  }
  int nproc = atoi(argv[2]);
  g_obey = strcmp(argv[3], "obey") == 0;
  int daemon = argc > 4 && strcmp(argv[4], "daemon") == 0;
  g_fd = open(argv[1], O_WRONLY | O_CLOEXEC);
  if (g_fd < 0) {
    perror("sigrec: open fifo");
    return 2;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  /* Children are reaped by whoever ends up their parent; we never wait for them. */

  for (int i = 1; i < nproc; i++) {
    pid_t p = fork();
    if (p < 0) {
      perror("sigrec: fork");
      break;
    }
    if (p == 0) {
      /* Every second child forks the next one itself: a tree, not a flat fan. */
      if (i % 2 == 1 && i + 1 < nproc) {
        pid_t q = fork();
        if (q == 0) {
          ready();
          wait_forever();
        }
      }
      ready();
      wait_forever();
    }
    if (i % 2 == 1 && i + 1 < nproc) i++;
  }
  if (daemon) {
    pid_t p = fork();
    if (p == 0) {
      setsid();
      if (fork() == 0) {
        ready();
        wait_forever();
      }
      _exit(0);
    }
    if (p > 0) waitpid(p, NULL, 0);
  }
  ready();
  wait_forever();
}
