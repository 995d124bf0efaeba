"""Shared helpers of the whole-process benchmarks (bench/cli_compare, bench/serve_compare,
bench/cancel_latency): spawning and reaping, timing, statistics and the result rows.

Every benchmark process makes itself a child subreaper (PR_SET_CHILD_SUBREAPER): the trees it
starts may leave orphans behind (that is what some of them measure), and pid 1 on the
development machines does not reap. Processes are started with posix_spawn and reaped here,
never by subprocess, so that one waitpid(-1) loop can collect both our children and the orphans.

Environment:
  STEP_RUNNER      the binary to measure (default build-bench/step-runner)
  BENCH_BIN        directory of the compiled helpers (sigrec)
  BENCH_TMP        scratch directory (default /dev/shm if writable, else /tmp)
  BENCH_RESULTS    a file that result rows are appended to (JSON lines) for scripts/bench
  BENCH_QUICK=1    fewer iterations
"""

import ctypes
import json
import math
import os
import select
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_RUNNER = os.environ.get("STEP_RUNNER", os.path.join(ROOT, "build-bench", "step-runner"))
BENCH_BIN = os.environ.get("BENCH_BIN", os.path.join(ROOT, "build-bench", "bench-bin"))
QUICK = os.environ.get("BENCH_QUICK") == "1"

PR_SET_CHILD_SUBREAPER = 36


def set_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def scratch_dir(prefix):
    base = os.environ.get("BENCH_TMP")
    if not base:
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def now_ns():
    return time.monotonic_ns()  # CLOCK_MONOTONIC, the clock sigrec writes


# --- processes -----------------------------------------------------------------------------------

_done = {}  # pid -> (wait status, rusage), for children reaped while we waited for another one
last_cpu = 0.0  # user + system seconds of the last child wait() returned (with its reaped children)


def spawn(argv, stdout=None, stderr=None, stdin=None, env=None, cwd=None):
    """Starts argv (PATH lookup) and returns its pid. stdout/stderr: None (inherit), a path
    (truncated) or "null"."""
    actions = []
    if cwd is not None:
        # posix_spawn has no chdir action in Python's binding: run through env -C would add a
        # process, so callers give absolute paths instead.
        raise ValueError("cwd is not supported; use absolute paths")
    for fd, target in ((0, stdin), (1, stdout), (2, stderr)):
        if target is None:
            continue
        path = os.devnull if target == "null" else target
        flags = os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        actions.append((os.POSIX_SPAWN_OPEN, fd, path, flags, 0o644))
    return os.posix_spawnp(argv[0], argv, os.environ if env is None else env, file_actions=actions)


def reap_orphans():
    """Reaps every child that has exited (orphans re-parented to us included)."""
    while True:
        try:
            pid, status, ru = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _done[pid] = (status, ru)


def wait(pid, timeout=None):
    """Waits for our child `pid`; returns its exit code (128+n for a signal). On timeout the
    child is SIGKILLed and TimeoutError raised. Sets last_cpu."""
    global last_cpu
    if pid not in _done:
        if timeout is not None:
            fd = os.pidfd_open(pid)
            try:
                r, _, _ = select.select([fd], [], [], timeout)
            finally:
                os.close(fd)
            if not r:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise TimeoutError(f"pid {pid} still running after {timeout}s")
        _, status, ru = os.wait4(pid, 0)
        _done[pid] = (status, ru)
    status, ru = _done.pop(pid)
    last_cpu = ru.ru_utime + ru.ru_stime
    reap_orphans()
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def run_timed(argv, timeout=120, expect=0, **kw):
    """Runs argv to its end; returns the wall time in seconds (spawn to reap). The CPU time it
    used (with its children) is left in last_cpu."""
    t0 = time.perf_counter()
    pid = spawn(argv, **kw)
    code = wait(pid, timeout)
    t = time.perf_counter() - t0
    if expect is not None and code != expect:
        raise RuntimeError(f"{argv[:4]}... exited {code}, expected {expect}")
    return t


def interleaved(variants, iterations, warmup=1, budget=None, min_rounds=3):
    """variants: list of (name, fn) where fn() returns one sample. Runs every variant once per
    round, the order rotating from round to round, so that load changes hit all of them alike.
    Stops after `iterations` rounds, or earlier once `budget` seconds have passed and at least
    `min_rounds` rounds were measured (on a loaded machine one round can take a minute).
    Returns {name: [samples]}."""
    samples = {name: [] for name, _ in variants}
    start = time.monotonic()
    for r in range(warmup + iterations):
        if (budget is not None and r >= warmup + min_rounds
                and time.monotonic() - start > budget):
            break
        k = r % len(variants)
        for name, fn in variants[k:] + variants[:k]:
            v = fn()
            if r >= warmup:
                samples[name].append(v)
    return samples


# --- a server ------------------------------------------------------------------------------------


def wait_for_server(sock, log):
    """Until `serve` accepts connections on `sock` (30 s at most; then its log says why)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            s.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not start: " + open(log).read())
            time.sleep(0.02)


class Server:
    """`step-runner serve --socket` in its own scratch TMPDIR. `binary` replaces STEP_RUNNER;
    `env` sets variables for it, or removes those whose value is None."""

    def __init__(self, d, binary=None, env=None):
        os.makedirs(d, exist_ok=True)
        self.d = d
        self.sock = os.path.join(d, "sr.sock")
        self.tmp = os.path.join(d, "tmp")
        os.makedirs(self.tmp, exist_ok=True)
        full_env = dict(os.environ, TMPDIR=self.tmp)
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
        self.pid = spawn([binary or STEP_RUNNER, "serve", "--socket", self.sock], env=full_env,
                         stdout="null", stderr=os.path.join(d, "serve.log"))
        wait_for_server(self.sock, os.path.join(d, "serve.log"))
        self.target = "unix:" + self.sock
        self.stopped = False

    def proc(self):
        """(VmRSS MB, VmHWM MB, threads, open fds) of the server process."""
        fields = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024,
                int(fields["Threads"]), fds)

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        os.kill(self.pid, signal.SIGTERM)
        code = wait(self.pid, 60)
        if code != 0:
            print(f"  (serve exited {code})")


# --- statistics ----------------------------------------------------------------------------------

def median(xs):
    return statistics.median(xs) if xs else float("nan")


def pct(xs, p):
    """Nearest-rank percentile."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def load_average():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


# --- result rows ---------------------------------------------------------------------------------

def fmt(v, unit):
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    if unit == "s":
        return f"{v:.3f} s" if v >= 1 else f"{v * 1000:.1f} ms"
    if unit == "ms":
        return f"{v:.2f} ms" if v < 10 else f"{v:.1f} ms"
    if unit == "us":
        return f"{v:.1f} µs"
    if unit == "MB/s":
        return f"{v:.0f} MB/s"
    if unit == "MB":
        return f"{v:.1f} MB"
    if isinstance(v, float):
        return f"{v:.2f} {unit}".strip()
    return f"{v} {unit}".strip()


def row(section, name, value, unit, baseline=None, baseline_value=None, ratio=None,
        target="", ok=None, note=""):
    """Prints one figure beside its baseline and ratio, and records it for scripts/bench."""
    if ratio is None and baseline_value not in (None, 0) and value is not None:
        ratio = value / baseline_value
    verdict = "" if ok is None else ("  [meets target]" if ok else "  [MISSES target]")
    parts = [f"  {name:<58} {fmt(value, unit):>12}"]
    if baseline is not None:
        parts.append(f"  vs {baseline} {fmt(baseline_value, unit)}")
    if ratio is not None:
        parts.append(f"  ratio {ratio:.2f}x")
    if target:
        parts.append(f"  (target {target})")
    print("".join(parts) + verdict + (f"  {note}" if note else ""), flush=True)
    rec = dict(section=section, name=name, value=value, unit=unit, baseline=baseline,
               baseline_value=baseline_value, ratio=ratio, target=target, ok=ok, note=note)
    path = os.environ.get("BENCH_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(rec) + "\n")


def header(title):
    print(f"\n== {title}  (load average {load_average()})", flush=True)


def need_binary():
    if not os.access(STEP_RUNNER, os.X_OK):
        sys.exit(f"bench: {STEP_RUNNER} not built (run scripts/bench)")


def helper(name):
    path = os.path.join(BENCH_BIN, name)
    if not os.access(path, os.X_OK):
        sys.exit(f"bench: helper {path} not built (run scripts/bench)")
    return path


def cleanup_dir(path):
    shutil.rmtree(path, ignore_errors=True)


def own_cgroup_dir():
    """This process's cgroup v2 directory if it can make child cgroups there, else None (no
    cgroup2 mount, no v2 line in /proc/self/cgroup, or not writable)."""
    try:
        with open("/proc/self/mounts") as f:
            mount = next(line.split()[1] for line in f if line.split()[2] == "cgroup2")
        with open("/proc/self/cgroup") as f:
            rel = next(line.strip()[3:] for line in f if line.startswith("0::"))
    except (OSError, StopIteration):
        return None
    path = os.path.normpath(mount + rel)
    return path if os.access(path, os.W_OK) else None
