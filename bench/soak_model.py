"""What bench/soak sends and what it expects back: the job kinds, the invalid requests, and the
inspection of the server's process (fds, threads, RSS, zombies, job processes).

Every job gets SOAK_JOB=<run>:<id> in its environment, so any process it started (daemons that
called setsid included) can be found in /proc by that variable after the job is said to be over.
"""
import os
import random
import time

SUCCESS, FAILURE, CANCELLED, CANCELLING, RUNNING = 2, 3, 4, 5, 1
ENDED = (SUCCESS, FAILURE, CANCELLED)
NAMES = {0: "unspecified", 1: "running", 2: "success", 3: "failure", 4: "cancelled", 5: "cancelling"}
# StatusError kinds
K_CANCELLED, K_STEP_FAILURE, K_TIMED_OUT = 1, 3, 4


def steps(*named_scripts):
    out = "spec: {}\n---\nrun:\n"
    for name, script in named_scripts:
        out += "  - name: %s\n    script: |\n" % name
        out += "".join("      %s\n" % line for line in script.split("\n"))
    return out


class Kind:
    """A kind of valid job. `natural` is the final status it reaches on its own (None: it runs
    until cancelled); `run_fields` are the RunRequest fields besides id/steps/job/env."""

    def __init__(self, name, natural, error_kind=None, long=False):
        self.name, self.natural, self.error_kind, self.long = name, natural, error_kind, long


KINDS = [
    Kind("echo", SUCCESS),
    Kind("fail", FAILURE, K_STEP_FAILURE),
    Kind("multi", SUCCESS),
    Kind("bulk", SUCCESS),
    Kind("leftover", SUCCESS),     # leaves a daemon behind: the leftover rule must kill it
    Kind("masked", SUCCESS),
    Kind("sleeper", None, long=True),
    Kind("stubborn", None, long=True),  # ignores SIGTERM: needs SIGKILL after a short grace
    Kind("tree", None, long=True),      # background children and a setsid daemon
    Kind("timeout", FAILURE, K_TIMED_OUT, long=True),
]
WEIGHTS = [14, 8, 6, 6, 5, 5, 16, 10, 10, 6]


class JobModel:
    """One job as the soak knows it: what it was asked to do, what it was told, what was seen."""

    def __init__(self, job_id, kind, rng):
        self.id = job_id
        self.kind = kind
        self.token = "tok-%s-%08x" % (job_id, rng.getrandbits(32))
        self.secret = "sec-%08x%08x" % (rng.getrandbits(32), rng.getrandbits(32))
        self.bulk = rng.randint(1, 300000)
        self.cancels = []          # force flags of the Cancels sent, in order
        self.cancelled = False     # a Cancel returned OK
        self.final = None          # (status, message, end_time ns) once an ended Status was seen
        self.final_at = 0.0        # monotonic time that was seen
        self.closing = False       # a Close was sent: other answers may now be NOT_FOUND
        self.closed = False        # the Close returned
        self.inflight = 0          # operations on this job not finished yet
        self.registered = False    # its Run returned OK
        self.runs_again = 0        # second Runs in flight (a Close waits for them)

    def request(self, pb, work_dir, run_id, rng):
        k = self.kind.name
        grace = {"seconds": 30}
        fields = {}
        variables = []
        t = self.token
        if k == "echo":
            text = steps(("a", "echo %s" % t))
        elif k == "fail":
            text = steps(("a", "echo %s\nexit 3" % t))
        elif k == "multi":
            text = steps(("a", "echo %s-1" % t), ("b", "echo %s-2" % t))
        elif k == "bulk":
            text = steps(("a", "echo %s\nhead -c %d /dev/zero | tr '\\0' x\necho\necho end-%s"
                          % (t, self.bulk, t)))
        elif k == "leftover":
            text = steps(("a", "(setsid sleep 3600 >/dev/null 2>&1 &)\nsleep 3600 >/dev/null 2>&1 &\n"
                               "echo %s" % t))
        elif k == "masked":
            variables.append(pb.Variable(key="SECRET", value=self.secret, masked=True))
            text = steps(("a", "echo %s ${{ job.SECRET }}" % t))
        elif k == "sleeper":
            text = steps(("a", "echo %s\nsleep 3600" % t), ("never", "echo never-%s" % t))
        elif k == "stubborn":
            grace = {"nanos": rng.choice([50, 200, 500]) * 1000000}
            text = steps(("a", "trap '' TERM\necho %s\nsleep 3600" % t))
        elif k == "tree":
            grace = {"seconds": rng.choice([1, 5, 30])}
            text = steps(("a", "(setsid sleep 3600 >/dev/null 2>&1 &)\n(sleep 3600 &)\n"
                               "sleep 3600 &\necho %s\nwait" % t))
        elif k == "timeout":
            grace = {"seconds": 1}
            fields["timeout"] = {"nanos": rng.choice([1, 100, 300, 800]) * 1000000}
            text = steps(("a", "echo %s\nsleep 3600" % t))
        else:
            raise AssertionError(k)
        return pb.RunRequest(id=self.id, steps=text, graceful_exit_timeout=grace,
                             env={"SOAK_JOB": "%s:%s" % (run_id, self.id)},
                             job=pb.Job(build_dir=work_dir, variables=variables), **fields)

    def check_status(self, st, sent_at, full=True):
        """Problems with one Status of this job (a list of strings). `sent_at`: monotonic time the
        request was sent (answers of concurrent requests are checked in any order, so only a
        request sent after an end state was seen must see that same end state). `full`: a
        Status(id) answer, with the result and termination trees (the listing leaves them out)."""
        bad = []
        s = st.status
        if s not in (RUNNING, CANCELLING) + ENDED:
            return ["status %s" % NAMES.get(s, s)]
        timeout = self.kind.name == "timeout"  # its own timer cancels it too
        if s == CANCELLING and not self.cancels and not timeout:
            bad.append("cancelling without a Cancel")
        if self.final is not None:
            seen = (s, st.message, st.end_time.ToNanoseconds())
            if s in ENDED and seen != self.final or s not in ENDED and sent_at > self.final_at:
                bad.append("final status changed from %s to %s" % (self.final, seen))
            return bad
        if s not in ENDED:
            return bad
        self.final = (s, st.message, st.end_time.ToNanoseconds())
        self.final_at = time.monotonic()
        if not st.HasField("end_time") or not st.HasField("start_time"):
            bad.append("ended without start/end time")
        if s == CANCELLED:
            if not self.cancels:
                bad.append("cancelled without a Cancel")
            if st.error.kind != K_CANCELLED:
                bad.append("cancelled with error kind %d" % st.error.kind)
            if full and st.termination.reason != 1 and not timeout:
                bad.append("cancelled with termination reason %d" % st.termination.reason)
            if st.termination.forced and True not in self.cancels:
                bad.append("termination forced without a forced Cancel")
        elif self.kind.natural is None:
            bad.append("a job that runs until cancelled ended %s: %s" % (NAMES[s], st.message))
        elif s != self.kind.natural:
            bad.append("expected %s, got %s: %s" % (NAMES[self.kind.natural], NAMES[s], st.message))
        elif self.kind.error_kind is not None and st.error.kind != self.kind.error_kind:
            bad.append("error kind %d, expected %d" % (st.error.kind, self.kind.error_kind))
        elif self.kind.name == "fail" and st.message != 'step "a": exec: exit status 3':
            bad.append("message %r" % st.message)
        elif s == SUCCESS and st.HasField("error"):
            bad.append("success with an error")
        return bad

    def check_log(self, log):
        """Problems with the complete log of this job, once it ended."""
        if self.final is None or self.final[0] != self.kind.natural or self.kind.name == "timeout":
            return []  # cancelled, or timed out: how far it got is not known
        t = self.token.encode()
        k = self.kind.name
        if k == "multi":
            a, b = log.find(t + b"-1\n"), log.find(t + b"-2\n")
            return [] if 0 <= a < b else ["log lacks %s-1 then -2" % self.token]
        if k == "bulk":
            want = t + b"\n" + b"x" * self.bulk + b"\nend-" + t + b"\n"
            return [] if want in log else ["log lacks the %d bytes of x" % self.bulk]
        if k == "masked":
            if self.secret.encode() in log:
                return ["masked value in the log"]
            return [] if t + b" [MASKED]\n" in log else ["log lacks %s [MASKED]" % self.token]
        return [] if t + b"\n" in log else ["log lacks %s" % self.token]


INVALID = [  # (steps, extra RunRequest fields, what it tests)
    ("spec: {}\n---\nrun:\n  - name: a\n    scrpt: true\n", {}, "unknown key"),
    ("spec: {\n", {}, "YAML syntax"),
    ("", {}, "empty text"),
    ("spec: {}\n---\nrun: 5\n", {}, "run is not a list"),
    (steps(("a", "true")), {"timeout": {"seconds": -3}}, "negative timeout"),
    (steps(("a", "true")), {"graceful_exit_timeout": {"nanos": -1}}, "negative grace"),
    (steps(("a", "true")), {"warn_before": {"seconds": 1}}, "warn_before without timeout"),
    (steps(("a", "true")), {"warn_signal": "SIGNOPE"}, "unknown signal"),
]
INVALID_IDS = ["", "a/b", "..", "x" * 129, "../escape"]


def random_invalid(rng, job_id):
    """(id, steps, fields, label) of a Run that must be refused with INVALID_ARGUMENT."""
    if rng.random() < 0.25:
        return rng.choice(INVALID_IDS), steps(("a", "true")), {}, "bad id"
    text, fields, label = rng.choice(INVALID)
    return job_id, text, fields, label


# --- the server process, seen from /proc ------------------------------------------------------

# The supervisor keeps up to 16 empty cgroup leaves of finished steps for the next ones (7 fds
# each: the directory, cgroup.procs, cgroup.events, and the four files CgroupLeaf::AsCreated
# reads after each step; src/supervisor/supervisor.cc kIdleLeaves): a
# bounded cache whose size follows how many steps last ran at once, not a leak. They are counted
# on their own and checked against that bound; every other fd must come back.
IDLE_LEAF_FDS_MAX = 16 * 7


def leaf_fd(target):
    return target.startswith("/sys/fs/cgroup") and "/tree-" in target


def resources(pid):
    """fd count (idle cgroup leaves apart), thread count and RSS (KiB) of a process."""
    fds = 0
    leaf_fds = 0
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except OSError:
            continue  # closed meanwhile
        if leaf_fd(target):
            leaf_fds += 1
        else:
            fds += 1
    status = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    return {"fds": fds, "threads": int(status["Threads"]), "rss_kib": int(status["VmRSS"].split()[0]),
            "idle_leaf_fds": leaf_fds}


def processes():
    """(pid, ppid, state, environ bytes) of every process we can read."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
            with open("/proc/%s/environ" % name, "rb") as f:
                env = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2:].split()
        out.append((int(name), int(rest[1]), rest[0].decode(), env))
    return out


def job_processes(marker):
    """Live processes whose environment carries SOAK_JOB=<marker> (a prefix "run:" matches all)."""
    needle = b"SOAK_JOB=" + marker.encode()
    found = []
    for pid, _, state, env in processes():
        if state == "Z":
            continue
        for var in env.split(b"\0"):
            if var == needle or (marker.endswith(":") and var.startswith(needle)):
                found.append(pid)
                break
    return found


def zombies(parents):
    return [pid for pid, ppid, state, _ in processes() if state == "Z" and ppid in parents]


def pick_kind(rng):
    return rng.choices(KINDS, weights=WEIGHTS)[0]


__all__ = ["JobModel", "pick_kind", "random_invalid", "resources", "job_processes", "zombies",
           "ENDED", "NAMES", "random"]
