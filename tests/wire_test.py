#!/usr/bin/python3
"""The wire, checked by an independent gRPC stack (Python grpcio) against a live `step-runner serve`.

The Python stub is generated from proto/step.proto at test time. Environment (set by CTest):
STEP_RUNNER (the binary), STEP_RUNNER_SOURCE_DIR. No timing assertions: waits poll states and
files, with safety timeouts only.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc
from grpc_tools import protoc

SOURCE_DIR = os.environ.get("STEP_RUNNER_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
BINARY = os.environ.get("STEP_RUNNER", os.path.join(SOURCE_DIR, "build", "step-runner"))

GEN_DIR = tempfile.mkdtemp(prefix="sr-wire-stub-")
_include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
if protoc.main(["protoc", "-I" + os.path.join(SOURCE_DIR, "proto"), "-I" + _include, "-I/usr/include",
                "--python_out=" + GEN_DIR, "--grpc_python_out=" + GEN_DIR, "step.proto"]) != 0:
    sys.exit("generating the Python stub failed")
sys.path.insert(0, GEN_DIR)
import step_pb2  # noqa: E402
import step_pb2_grpc  # noqa: E402

# For a ThreadSanitizer build of the binary: gRPC's libraries are not instrumented (tests/tsan.supp).
os.environ.setdefault("TSAN_OPTIONS", "ignore_noninstrumented_modules=1 suppressions=" +
                      os.path.join(SOURCE_DIR, "tests", "tsan.supp"))

SUCCESS, FAILURE, CANCELLED, CANCELLING = 2, 3, 4, 5
ENDED = (SUCCESS, FAILURE, CANCELLED)


def wait_for(pred, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def steps(*named_scripts):
    out = "spec: {}\n---\nrun:\n"
    for name, script in named_scripts:
        out += "  - name: %s\n    script: |\n" % name
        out += "".join("      %s\n" % line for line in script.split("\n"))
    return out


class Server:
    def __init__(self, tmp):
        self.tmp = tmp
        self.socket = os.path.join(tmp, "s.sock")
        env = dict(os.environ, TMPDIR=tmp)
        self.proc = subprocess.Popen([BINARY, "serve", "--socket", self.socket], env=env,
                                     stderr=subprocess.PIPE)
        assert wait_for(lambda: os.path.exists(self.socket)), "no socket"
        self.channel = grpc.insecure_channel("unix:" + self.socket)
        grpc.channel_ready_future(self.channel).result(timeout=60)
        self.stub = step_pb2_grpc.StepRunnerStub(self.channel)

    def stop(self):
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err.decode(errors="replace")

    def status(self, job_id):
        return self.stub.Status(step_pb2.StatusRequest(id=job_id)).jobs[0]

    def wait_ended(self, job_id):
        box = {}

        def ended():
            box["s"] = self.status(job_id)
            return box["s"].status in ENDED
        assert wait_for(ended), "job %s did not end" % job_id
        return box["s"]

    def follow(self, job_id, offset=0):
        return b"".join(r.data for r in self.stub.FollowLogs(step_pb2.FollowLogsRequest(id=job_id, offset=offset)))


class WireTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sr-wire-")
        self.server = Server(self.tmp)
        self.stub = self.server.stub

    def tearDown(self):
        code, err = self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(code, 0, err)

    def run_job(self, job_id, text, **fields):
        job = step_pb2.Job(build_dir=self.tmp)
        self.stub.Run(step_pb2.RunRequest(id=job_id, steps=text, job=job, **fields))

    def test_run_follow_status_close(self):
        release = os.path.join(self.tmp, "release")
        self.run_job("bytes", steps(("a", "while [ ! -f %s ]; do sleep 0.02; done\n"
                                          "printf 'one\\n\\n\\ntwo\\n'\n"
                                          "head -c 200000 /dev/zero | tr '\\0' y\n"
                                          "printf 'no newline'" % release)))
        results = {}
        threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, self.server.follow("bytes")))
                   for k in ("x", "y")]
        for t in threads:
            t.start()
        open(release, "w").close()
        for t in threads:
            t.join()
        log = results["x"]
        self.assertEqual(log, results["y"])
        expected = b"one\n\n\ntwo\n" + b"y" * 200000 + b"no newline"
        self.assertTrue(log.endswith(expected), log[-100:])
        with open(os.path.join(self.tmp, "step-runner-output-bytes", "logs"), "rb") as f:
            self.assertEqual(log, f.read())
        self.assertEqual(self.server.follow("bytes", offset=7), log[7:])

        st = self.server.wait_ended("bytes")
        self.assertEqual(st.id, "bytes")
        self.assertEqual(st.status, SUCCESS)
        self.assertEqual(st.message, "")
        self.assertFalse(st.HasField("error"))
        self.assertFalse(st.HasField("cancel_time"))
        self.assertFalse(st.HasField("termination"))
        self.assertTrue(st.HasField("start_time") and st.HasField("end_time"))
        self.assertLessEqual(st.start_time.ToNanoseconds(), st.end_time.ToNanoseconds())
        self.assertEqual(st.result.status, SUCCESS)
        self.assertEqual(st.result.sub_step_results[0].step.name, "a")
        self.assertEqual(st.result.sub_step_results[0].exec_result.exit_code, 0)
        all_jobs = self.stub.Status(step_pb2.StatusRequest()).jobs
        self.assertEqual([j.id for j in all_jobs], ["bytes"])
        # The listing is bounded: state and times, not the result tree (README "Listing").
        self.assertEqual(all_jobs[0].status, SUCCESS)
        self.assertTrue(all_jobs[0].HasField("start_time") and all_jobs[0].HasField("end_time"))
        self.assertFalse(all_jobs[0].HasField("result"))

        self.stub.Close(step_pb2.CloseRequest(id="bytes"))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "step-runner-output-bytes")))
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.Status(step_pb2.StatusRequest(id="bytes"))
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_failure_message_and_kind(self):
        self.run_job("fail", steps(("build", "exit 2")))
        st = self.server.wait_ended("fail")
        self.assertEqual(st.status, FAILURE)
        self.assertEqual(st.message, 'step "build": exec: exit status 2')
        self.assertEqual(st.error.kind, step_pb2.StatusError.step_failure)
        self.assertEqual(st.error.message, st.message)

    def test_status_codes(self):
        for call, req in ((self.stub.Status, step_pb2.StatusRequest(id="nope")),
                          (self.stub.Cancel, step_pb2.CancelRequest(id="nope"))):
            with self.assertRaises(grpc.RpcError) as e:
                call(req)
            self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
            self.assertEqual(e.exception.details(), 'no job with id "nope"')
        with self.assertRaises(grpc.RpcError) as e:
            self.server.follow("nope")
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as e:
            self.server.follow("nope", offset=-1)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.stub.Close(step_pb2.CloseRequest(id="nope"))  # OK
        for bad_id in ("", "a/b", "..", "x" * 129):
            with self.assertRaises(grpc.RpcError) as e:
                self.run_job(bad_id, steps(("a", "true")))
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, bad_id)
        with self.assertRaises(grpc.RpcError) as e:
            self.run_job("bad", "spec: {}\n---\nrun:\n  - name: a\n    scrpt: true\n")
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("<request>:5", e.exception.details())
        with self.assertRaises(grpc.RpcError) as e:
            self.run_job("neg", steps(("a", "true")), timeout={"seconds": -3})
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_cancel(self):
        ready = os.path.join(self.tmp, "ready")
        self.run_job("c", steps(("loop", "trap 'exit 5' TERM; touch %s; while :; do sleep 0.02; done" % ready),
                                ("never", "true")),
                     graceful_exit_timeout={"seconds": 60})
        self.assertTrue(wait_for(lambda: os.path.exists(ready)))
        self.stub.Cancel(step_pb2.CancelRequest(id="c"))
        self.stub.Cancel(step_pb2.CancelRequest(id="c"))  # idempotent
        st = self.server.wait_ended("c")
        self.assertEqual(st.status, CANCELLED)
        self.assertEqual(st.error.kind, step_pb2.StatusError.cancelled)
        self.assertTrue(st.HasField("cancel_time"))
        self.assertEqual(st.termination.reason, step_pb2.Termination.cancel_requested)
        self.assertEqual(st.result.sub_step_results[0].status, CANCELLED)
        self.assertEqual(len(st.result.sub_step_results), 1)

    def test_timeout(self):
        self.run_job("t", steps(("slow", "sleep 60")), timeout={"nanos": 200000000},
                     graceful_exit_timeout={"seconds": 1})
        st = self.server.wait_ended("t")
        self.assertEqual(st.status, FAILURE)
        self.assertEqual(st.error.kind, step_pb2.StatusError.timed_out)
        self.assertEqual(st.termination.reason, step_pb2.Termination.timed_out)

    def test_through_proxy(self):
        # What `docker exec ... step-runner proxy` does: gRPC over the proxy's stdin/stdout.
        front_path = os.path.join(self.tmp, "front.sock")
        front = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        front.bind(front_path)
        front.listen(4)
        procs = []

        def accept():
            while True:
                try:
                    conn, _ = front.accept()
                except OSError:
                    return
                procs.append(subprocess.Popen([BINARY, "proxy", "--socket", self.server.socket],
                                              stdin=conn, stdout=conn))
                conn.close()
        threading.Thread(target=accept, daemon=True).start()
        channel = grpc.insecure_channel("unix:" + front_path)
        try:
            stub = step_pb2_grpc.StepRunnerStub(channel)
            job = step_pb2.Job(build_dir=self.tmp)
            stub.Run(step_pb2.RunRequest(id="p", steps=steps(("a", "echo via proxy")), job=job))
            log = b"".join(r.data for r in stub.FollowLogs(step_pb2.FollowLogsRequest(id="p")))
            self.assertIn(b"via proxy\n", log)
            self.assertEqual(stub.Status(step_pb2.StatusRequest(id="p")).jobs[0].status, SUCCESS)
        finally:
            channel.close()
            front.close()
        for p in procs:  # the proxy ends when its client closes the connection
            self.assertEqual(p.wait(timeout=60), 0)

    def test_contract_field_numbers(self):
        def number(msg, field):
            return msg.DESCRIPTOR.fields_by_name[field].number
        self.assertEqual(number(step_pb2.RunRequest, "graceful_exit_timeout"), 7)
        self.assertEqual(number(step_pb2.RunRequest, "timeout"), 8)
        self.assertEqual(number(step_pb2.RunRequest, "warn_before"), 9)
        self.assertEqual(number(step_pb2.RunRequest, "warn_signal"), 10)
        self.assertEqual(number(step_pb2.Status, "error"), 7)
        self.assertEqual(number(step_pb2.Status, "result"), 8)
        self.assertEqual(number(step_pb2.Status, "cancel_time"), 9)
        self.assertEqual(number(step_pb2.Status, "termination"), 10)
        self.assertEqual(number(step_pb2.FollowLogsRequest, "offset"), 2)
        self.assertEqual(step_pb2.StepResult.cancelling, 5)
        # Contract section 8.
        self.assertEqual(number(step_pb2.RunRequest, "resources"), 11)
        self.assertEqual(number(step_pb2.StepResult, "usage"), 11)
        self.assertEqual([number(step_pb2.Resources, f) for f in ("memory_bytes", "pids", "cpus")], [1, 2, 3])
        self.assertEqual([number(step_pb2.ResourceUsage, f) for f in (
            "start_time", "end_time", "cpu_user_usec", "cpu_system_usec", "memory_peak_bytes", "pids_peak",
            "io_read_bytes", "io_write_bytes", "oom_kills")], list(range(1, 10)))
        self.assertEqual(step_pb2.Termination.step_timed_out, 5)
        self.assertEqual(step_pb2.Termination.oom_killed, 6)
        self.assertEqual(step_pb2.Termination.ProcessRecord.killed_by_oom, 6)
        # The deadline warning's own record (docs/cancellation.md, "The deadline warning").
        self.assertEqual(step_pb2.Termination.deadline_warning, 9)
        self.assertEqual(number(step_pb2.Termination.ProcessRecord, "warning_signal"), 9)
        self.assertEqual(step_pb2.Termination.job_ended, 10)

    def test_resources_usage_and_oom(self):
        # A job-wide memory limit of 64 MiB against a 200 MB allocation, from an independent stack.
        self.run_job("oom", steps(("big", "exec python3 -c 'x = bytearray(200 * 1048576)'")),
                     resources=step_pb2.Resources(memory_bytes=64 << 20))
        st = self.server.wait_ended("oom")
        self.assertEqual(st.status, FAILURE)
        self.assertEqual(st.error.kind, step_pb2.StatusError.step_failure)
        self.assertIn('step "big": killed by the OOM killer (memory limit 64 MiB, peak ', st.error.message)
        big = st.result.sub_step_results[0]
        self.assertEqual(big.termination.reason, step_pb2.Termination.oom_killed)
        self.assertEqual(big.termination.processes[0].ending, step_pb2.Termination.ProcessRecord.killed_by_oom)
        self.assertGreaterEqual(big.usage.oom_kills, 1)
        self.assertGreater(big.usage.memory_peak_bytes, 0)
        self.assertLessEqual(big.usage.start_time.ToNanoseconds(), big.usage.end_time.ToNanoseconds())
        # A limit that is not a limit is refused before anything runs.
        with self.assertRaises(grpc.RpcError) as e:
            self.run_job("neg", steps(("x", "true")), resources=step_pb2.Resources(cpus=-1))
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        shutil.rmtree(GEN_DIR, ignore_errors=True)
