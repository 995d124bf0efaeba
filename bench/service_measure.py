#!/usr/bin/python3
"""Measures the gRPC service (not a test: it prints figures, it asserts nothing).

1. RSS and thread count of `step-runner serve` with N concurrent jobs, each with a FollowLogs
   stream attached.
2. Time from Cancel to the terminal status for a step that obeys SIGTERM, p50/p99 over M jobs
   (measured until the job's log stream ends, which happens right after the final status is
   published; the status is then checked to be `cancelled`).

Usage: bench/service_measure.py [--binary build/step-runner] [--jobs 200] [--cancels 100]
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)


def load_stub(gen):
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    if protoc.main(["protoc", "-I" + os.path.join(SOURCE, "proto"), "-I" + include,
                    "--python_out=" + gen, "--grpc_python_out=" + gen, "step.proto"]) != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, gen)
    import step_pb2
    import step_pb2_grpc
    return step_pb2, step_pb2_grpc


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(SOURCE, "build", "step-runner"))
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--cancels", type=int, default=100)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="sr-measure-")
    pb, pb_grpc = load_stub(tmp)
    sock = os.path.join(tmp, "s.sock")
    server = subprocess.Popen([args.binary, "serve", "--socket", sock], stderr=subprocess.DEVNULL,
                              env=dict(os.environ, TMPDIR=tmp))
    while not os.path.exists(sock):
        time.sleep(0.01)
    channel = grpc.insecure_channel("unix:" + sock)
    grpc.channel_ready_future(channel).result(timeout=60)
    stub = pb_grpc.StepRunnerStub(channel)
    idle = proc_status(server.pid)
    print("idle server: VmRSS %s, threads %s" % (idle["VmRSS"], idle["Threads"]))

    def steps(script):
        return "spec: {}\n---\nrun:\n  - name: a\n    script: %s\n" % script

    def run(job_id, script):
        stub.Run(pb.RunRequest(id=job_id, steps=steps(script), job=pb.Job(build_dir=tmp),
                               graceful_exit_timeout={"seconds": 30}))

    # --- 1. N jobs, each with a follower ---------------------------------------------------
    started = threading.Semaphore(0)
    ended = []

    def follow(job_id):
        first = True
        for _ in stub.FollowLogs(pb.FollowLogsRequest(id=job_id)):
            if first:
                started.release()
                first = False
        ended.append(job_id)

    t0 = time.monotonic()
    threads = []
    for i in range(args.jobs):
        run("load-%d" % i, "echo started; sleep 600")
        t = threading.Thread(target=follow, args=("load-%d" % i,), daemon=True)
        t.start()
        threads.append(t)
    for _ in range(args.jobs):
        started.acquire()
    st = proc_status(server.pid)
    print("%d running jobs, %d followers (set up in %.1fs): server VmRSS %s, VmHWM %s, threads %s"
          % (args.jobs, args.jobs, time.monotonic() - t0, st["VmRSS"], st["VmHWM"], st["Threads"]))
    t0 = time.monotonic()
    for i in range(args.jobs):
        stub.Cancel(pb.CancelRequest(id="load-%d" % i))
    for t in threads:
        t.join()
    print("cancelled all %d in %.2fs" % (args.jobs, time.monotonic() - t0))
    for i in range(args.jobs):
        stub.Close(pb.CloseRequest(id="load-%d" % i))

    # --- 2. Cancel → terminal status ----------------------------------------------------------
    latencies = []
    for i in range(args.cancels):
        job_id = "cancel-%d" % i
        run(job_id, "echo ready; sleep 600")
        stream = stub.FollowLogs(pb.FollowLogsRequest(id=job_id))
        got = b""
        for chunk in stream:  # until the step has printed: it is running
            got += chunk.data
            if b"ready\n" in got:
                break
        t0 = time.monotonic()
        stub.Cancel(pb.CancelRequest(id=job_id))
        for _ in stream:
            pass
        latencies.append(time.monotonic() - t0)
        status = stub.Status(pb.StatusRequest(id=job_id)).jobs[0]
        if status.status != pb.StepResult.cancelled:
            print("unexpected status for %s: %s" % (job_id, status))
        stub.Close(pb.CloseRequest(id=job_id))
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    p99 = ms[min(len(ms) - 1, int(round(0.99 * len(ms))) - 1)]
    print("Cancel -> terminal status over %d jobs: p50 %.1f ms, p99 %.1f ms, max %.1f ms"
          % (len(ms), statistics.median(ms), p99, ms[-1]))

    channel.close()
    server.send_signal(signal.SIGTERM)
    print("serve exit code", server.wait(timeout=120))


if __name__ == "__main__":
    main()
