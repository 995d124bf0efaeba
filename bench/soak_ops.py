"""The operations of bench/soak: each sends one request to the server and checks the answer against
the job's model (soak_model.py). A mixin of bench/soak's Soak, which holds the stub, the jobs and
the lock they use, and which picks the operations and drives them.
"""
import os
import threading
import time

import grpc

import soak_model as m

INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND


class SoakOps:
    # --- operations (worker threads) -------------------------------------------------------------
    def op_run(self, job, req):
        try:
            self.stub.Run(req, timeout=120)
        except grpc.RpcError as e:
            self.problem("Run %s (%s): %s %s" % (job.id, job.kind.name, e.code(), e.details()))
            with self.lock:
                job.closing = job.closed = True  # nothing to close: retire it
            return
        with self.lock:
            job.registered = True

    def op_run_again(self, job):
        # A second Run with a live id is an OK no-op: the job stays the one we know. (A Close of
        # the job waits for this: sent after the Close, it would start a new job.)
        try:
            self.stub.Run(self.pb.RunRequest(id=job.id, steps=m.steps(("a", "echo impostor"))),
                          timeout=120)
        except grpc.RpcError as e:
            self.problem("second Run %s: %s %s" % (job.id, e.code(), e.details()))
        finally:
            with self.lock:
                job.runs_again -= 1

    def op_invalid(self, job_id, text, fields, label):
        try:
            self.stub.Run(self.pb.RunRequest(id=job_id, steps=text, job=self.pb.Job(build_dir=self.work),
                                             **fields), timeout=120)
            self.problem("invalid Run (%s, id %r) was accepted" % (label, job_id))
            return
        except grpc.RpcError as e:
            if e.code() != INVALID:
                self.problem("invalid Run (%s): %s %s" % (label, e.code(), e.details()))
        if job_id and "/" not in job_id and ".." not in job_id and len(job_id) <= 128:
            try:
                self.stub.Status(self.pb.StatusRequest(id=job_id), timeout=120)
                self.problem("invalid Run (%s) left a job %s" % (label, job_id))
            except grpc.RpcError as e:
                if e.code() != NOT_FOUND:
                    self.problem("Status after invalid Run: %s" % e.code())
            if os.path.exists(os.path.join(self.jobs_dir, "step-runner-output-" + job_id)):
                self.problem("invalid Run (%s) left a directory" % label)

    def op_status(self, job):
        sent_at = time.monotonic()
        try:
            st = self.stub.Status(self.pb.StatusRequest(id=job.id), timeout=120).jobs[0]
        except grpc.RpcError as e:
            if not (job.closing and e.code() == NOT_FOUND):
                self.problem("Status %s: %s %s" % (job.id, e.code(), e.details()))
            return
        self.check_status(job, st, sent_at)

    def check_status(self, job, st, sent_at, full=True):
        if st.id != job.id:
            self.problem("Status for %s answered %s" % (job.id, st.id))
        if job.closing:
            return  # a Close may have cancelled it: no expectation holds any more
        with self.lock:
            bad = job.check_status(st, sent_at, full)
        for b in bad:
            self.problem("job %s (%s, cancels %s): %s" % (job.id, job.kind.name, job.cancels, b))

    def op_status_all(self):
        with self.lock:
            known = dict(self.jobs)
        sent_at = time.monotonic()
        for st in self.stub.Status(self.pb.StatusRequest(), timeout=120).jobs:
            if st.id in known:
                self.check_status(known[st.id], st, sent_at, full=False)

    def log_path(self, job):
        return os.path.join(self.jobs_dir, "step-runner-output-" + job.id, "logs")

    def op_follow(self, job, offset, mode, limit):
        call = self.stub.FollowLogs(self.pb.FollowLogsRequest(id=job.id, offset=offset))
        expired = threading.Event()

        def cut():
            expired.set()
            call.cancel()
        # "chunks" also stops after 1 s: a quiet job may never send that many.
        timer = threading.Timer({"time": limit, "chunks": 1}.get(mode, 300), cut)
        timer.start()
        data, chunks, complete = b"", 0, False
        try:
            for r in call:
                data += r.data
                chunks += 1
                if mode == "chunks" and chunks >= limit:
                    call.cancel()
                    break
            else:
                complete = True
        except grpc.RpcError as e:
            if e.code() == NOT_FOUND and job.closing:
                return
            if e.code() != grpc.StatusCode.CANCELLED:
                self.problem("FollowLogs %s@%d: %s %s" % (job.id, offset, e.code(), e.details()))
                return
        finally:
            timer.cancel()
        try:
            with open(self.log_path(job), "rb") as f:
                f.seek(offset)
                on_disk = f.read(len(data) if not complete else -1)
        except OSError:
            if not job.closing:
                self.problem("log of %s unreadable while registered" % job.id)
            return
        if data != on_disk[:len(data)] or (complete and data != on_disk):
            self.problem("FollowLogs %s@%d: %d bytes differ from the log file (%d)"
                         % (job.id, offset, len(data), len(on_disk)))
        if complete and not job.closing:
            # The stream ended: the job has ended; its final status and log must agree.
            self.op_status(job)
            if offset == 0:
                with self.lock:
                    bad = job.check_log(data)
                for b in bad:
                    self.problem("job %s (%s): %s" % (job.id, job.kind.name, b))
        elif mode == "full" and not complete and not job.closing and expired.is_set():
            self.problem("FollowLogs %s did not end within 300 s" % job.id)

    def op_cancel(self, job, force):
        try:
            self.stub.Cancel(self.pb.CancelRequest(id=job.id, force=force), timeout=120)
            with self.lock:
                job.cancelled = True
        except grpc.RpcError as e:
            if not (job.closing and e.code() == NOT_FOUND):
                self.problem("Cancel %s: %s %s" % (job.id, e.code(), e.details()))

    def op_close(self, job):
        while True:
            with self.lock:
                if job.runs_again == 0:
                    break
            time.sleep(0.01)
        try:
            self.stub.Close(self.pb.CloseRequest(id=job.id), timeout=300)
        except grpc.RpcError as e:
            self.problem("Close %s: %s %s" % (job.id, e.code(), e.details()))
            return
        try:
            self.stub.Status(self.pb.StatusRequest(id=job.id), timeout=120)
            self.problem("job %s still there after Close" % job.id)
        except grpc.RpcError as e:
            if e.code() != NOT_FOUND:
                self.problem("Status after Close %s: %s" % (job.id, e.code()))
        if os.path.exists(os.path.dirname(self.log_path(job))):
            self.problem("job directory of %s left after Close" % job.id)
        alive = m.job_processes("%s:%s" % (self.run_id, job.id))
        if alive:
            self.problem("processes %s of job %s (%s) alive after Close" % (alive, job.id, job.kind.name))
        with self.lock:
            job.closed = True
