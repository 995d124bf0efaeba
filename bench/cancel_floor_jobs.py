"""The floor of bench/cancel_scale: its trees with no runner, signalled by bench/cancel_floor.

The bench starts each job's tree itself, in a process group of its own (so it must be the
trees' subreaper, as it is), and on the Cancel hands every job's group and daemon to
bench/cancel_floor, which sends only the signals. Same interface as cancel_serve_jobs.ServeJobs.
"""
import os
import subprocess

import benchlib as B


class FloorJobs:
    """The same trees with no runner: started by the bench, signalled by bench/cancel_floor."""

    def __init__(self, grace_ms):
        self.grace_ms = grace_ms
        self.signaller = None
        self.mains = []

    def start(self, i, argv):
        null = os.open(os.devnull, os.O_RDWR)
        try:
            main = os.posix_spawn(argv[0], argv, os.environ, setpgroup=0,
                                  file_actions=[(os.POSIX_SPAWN_DUP2, null, fd) for fd in (0, 1, 2)])
        finally:
            os.close(null)
        self.mains.append(main)  # it leads its group, the tree's other processes but the daemon

    def cancel_all(self, ready):
        lines = []
        for main, procs in zip(self.mains, ready):
            outsider = next((p for p in procs if os.getpgid(p) != main), 0)  # the daemon
            lines.append(f"{main} {outsider}\n")
        self.signaller = subprocess.Popen([B.helper("cancel_floor"), str(self.grace_ms)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.signaller.stdin.write(("".join(lines) + "\n").encode())
        self.signaller.stdin.flush()
        if self.signaller.stdout.readline() != b"ready\n":
            raise RuntimeError("bench/cancel_floor did not start")
        t = B.now_ns()
        self.signaller.stdin.write(b"g")
        self.signaller.stdin.flush()
        return [t] * len(ready)

    def statuses(self, end_by):
        return {}

    def close(self):
        if self.signaller:
            self.signaller.stdin.close()
            self.signaller.wait(timeout=60)
