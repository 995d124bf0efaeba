/* cancel_floor: the floor of bench/cancel_scale — the same signals with no runner at all.
 *
 *   cancel_floor GRACE_MS < jobs
 *
 * Reads one line "PGID OUTSIDER" per job (the job's process group, led by its main process, and
 * the one process that left it: sigrec's setsid daemon), then an empty line, and answers "ready".
 * On the next byte of stdin it does, for every job in order, what the runner must at least do on
 * a Cancel: SIGTERM to the outsider, then one kill(-PGID). Each job's SIGKILLs (the outsider's and
 * the group's) go out once GRACE_MS have passed since its own SIGTERM, and then it exits. No pins,
 * no names, no record, no reaping, no RPC: whatever a runner does beyond these signals is its
 * cost above this floor, and whatever this costs (the signalled processes' own wake-ups and
 * handlers on the same cores) no runner can avoid.
 *
 * Built by scripts/bench with `cc -O2`; used by bench/cancel_scale (mode "floor").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

struct job {
  pid_t pgid;
  pid_t outsider;
  struct timespec termed;
};

static void signal_job(const struct job *j, int signo) {
  if (j->outsider > 0) kill(j->outsider, signo);
  kill(-j->pgid, signo);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: cancel_floor GRACE_MS < \"PGID OUTSIDER\" lines, then an empty line\n");
    return 2;
  }
  const long grace_ms = atol(argv[1]);
  size_t n = 0, cap = 256;
  struct job *jobs = calloc(cap, sizeof *jobs);
  char line[128];
  while (jobs && fgets(line, sizeof line, stdin) && line[0] != '\n') {
    if (n == cap) {
      cap *= 2;
      struct job *grown = realloc(jobs, cap * sizeof *jobs);
      if (!grown) {
        perror("cancel_floor: jobs");  // not a partial floor: the rest of stdin is still jobs
        return 2;
      }
      jobs = grown;
    }
    int pgid = 0, outsider = 0;
    if (sscanf(line, "%d %d", &pgid, &outsider) < 1 || pgid <= 1) {
      fprintf(stderr, "cancel_floor: bad job line: %s", line);
      return 2;
    }
    jobs[n].pgid = pgid;
    jobs[n].outsider = outsider;
    n++;
  }
  if (!jobs) {
    perror("cancel_floor: jobs");
    return 2;
  }
  printf("ready\n");
  fflush(stdout);
  if (getchar() == EOF) return 0;

  for (size_t i = 0; i < n; i++) {
    signal_job(&jobs[i], SIGTERM);
    clock_gettime(CLOCK_MONOTONIC, &jobs[i].termed);
  }
  for (size_t i = 0; i < n; i++) {
    struct timespec due = jobs[i].termed;
    due.tv_sec += grace_ms / 1000;
    due.tv_nsec += (grace_ms % 1000) * 1000000L;
    if (due.tv_nsec >= 1000000000L) {
      due.tv_sec++;
      due.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR) {
    }
    signal_job(&jobs[i], SIGKILL);
  }
  free(jobs);
  return 0;
}
