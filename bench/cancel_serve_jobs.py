"""The runner's side of bench/cancel_scale: `step-runner serve` and its jobs, over gRPC.

Same interface as cancel_floor_jobs.FloorJobs, plus cancels_alone(), the wire's own cost.
"""
import json
import os
import sys
import time

import benchlib as B

BENCH_PY = os.environ.get("BENCH_PY", os.path.join(B.ROOT, "build-bench", "bench-py"))
sys.path.insert(0, BENCH_PY)
try:
    import grpc  # noqa: E402
    from proto import step_pb2 as pb  # noqa: E402
    from proto import step_pb2_grpc as pbg  # noqa: E402
    from google.protobuf import duration_pb2  # noqa: E402
except ImportError as e:  # pragma: no cover
    sys.exit(f"bench: gRPC stubs missing ({e}); run scripts/bench, which generates them")

BEFORE = os.environ.get("STEP_RUNNER_BEFORE")
TERMINAL = (pb.StepResult.success, pb.StepResult.failure, pb.StepResult.cancelled)


class ServeJobs:
    """The jobs as `serve` runs them, through Run, Cancel and Status."""

    def __init__(self, d, mode, grace_ms):
        # The fallback is STEP_RUNNER_CGROUP=off; cgroup mode must not inherit that from the bench.
        self.server = B.Server(
            os.path.join(d, "server"), binary=BEFORE if mode.startswith("before") else None,
            env={"STEP_RUNNER_CGROUP": "off" if mode.endswith("process group") else None})
        self.ch = grpc.insecure_channel(self.server.target,
                                        options=[("grpc.max_receive_message_length", 256 << 20)])
        self.stub = pbg.StepRunnerStub(self.ch)
        self.grace = duration_pb2.Duration()
        self.grace.FromMilliseconds(grace_ms)
        self.work_dir = d

    def start(self, i, argv):
        # Each word a JSON string, which YAML reads as a double-quoted scalar.
        steps = "spec: {}\n---\nexec:\n  command: [%s]\n" % ", ".join(map(json.dumps, argv))
        self.stub.Run(pb.RunRequest(id=f"j{i}", steps=steps, work_dir=self.work_dir,
                                    graceful_exit_timeout=self.grace))

    def cancel_all(self, ready):
        """Every Cancel, back to back; each job's own send time is its reference."""
        sent, futures = [], []
        for i in range(len(ready)):
            sent.append(B.now_ns())
            futures.append(self.stub.Cancel.future(pb.CancelRequest(id=f"j{i}")))
        for f in futures:
            f.result(timeout=60)
        return sent

    def cancels_alone(self, n):
        """The same burst of Cancels for ids no job has (each answered NOT_FOUND at once, no
        signal sent): the wire's own cost, client and server. Returns (the last Cancel sent, the
        last answer received), in ms from the first Cancel sent."""
        sent, answered, futures = [], [], []
        for i in range(n):
            sent.append(B.now_ns())
            f = self.stub.Cancel.future(pb.CancelRequest(id=f"no-job-{i}"))
            f.add_done_callback(lambda _f: answered.append(B.now_ns()))
            futures.append(f)
        for f in futures:
            f.exception(timeout=60)  # NOT_FOUND is the expected answer
        while len(answered) < n:  # the callbacks run on gRPC's threads
            time.sleep(0.001)
        return (sent[-1] - sent[0]) / 1e6, (max(answered) - sent[0]) / 1e6

    def statuses(self, end_by):
        """Every job's status once all are terminal (the server publishes it once the tree is
        gone and reaped)."""
        statuses = {}
        while B.now_ns() < end_by:
            st = self.stub.Status(pb.StatusRequest())
            statuses = {s.id: s.status for s in st.jobs}
            if all(s in TERMINAL for s in statuses.values()):
                break
            time.sleep(0.02)
        return statuses

    def close(self):
        self.ch.close()
        self.server.stop()
