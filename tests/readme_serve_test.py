#!/usr/bin/python3
"""Runs the console examples of README.md's "Service" section exactly as written (contract:
every example in the README is run by a test).

The commands are taken from the README itself: each `$ ` line of the section's console blocks
runs, in order, in one bash session whose current directory holds `build` (a link to the build
dir), so `build/step-runner ...` is the real binary. A `$ cat FILE` block writes FILE with the
lines shown under it instead. Checked: every command exits 0, the output the README shows for
`client ... run ... --follow` and `echo $?` is what comes out, and the status listing names both
jobs. The server started with `serve /tmp/sr &` is stopped (SIGTERM) at the end.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

SOURCE = os.environ.get("STEP_RUNNER_SOURCE_DIR", os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("STEP_RUNNER_BUILD_DIR", os.path.join(SOURCE, "build"))


def section_blocks():
    text = open(os.path.join(SOURCE, "README.md")).read()
    section = text.split("\n## Service\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```console\n(.*?)```", section, re.S)


def steps(blocks):
    """(kind, command or (file, content), expected output lines) in README order."""
    out = []
    for block in blocks:
        current = None
        for line in block.splitlines():
            if line.startswith("$ "):
                current = [line[2:], []]
                out.append(current)
            elif current is not None:
                current[1].append(line)
    return out


def main():
    work = tempfile.mkdtemp(prefix="sr-readme-")
    os.symlink(os.path.abspath(BUILD), os.path.join(work, "build"))
    problems = []
    script, expected = [], []
    for i, (cmd, output) in enumerate(steps(section_blocks())):
        m = re.match(r"cat (\S+)$", cmd)
        if m:
            with open(os.path.join(work, m.group(1)), "w") as f:
                f.write("\n".join(output) + "\n")
            continue
        cmd = re.sub(r"\s+# .*$", "", cmd)  # the README's comments
        background = cmd.endswith("&")
        script.append("echo '@@%d'; %s" % (i, cmd))
        if background:
            # Wait for the server's socket before the next command.
            path = re.search(r"serve (\S+)", cmd).group(1) + "/step-runner.sock"
            script.append("for _ in $(seq 500); do [ -S %s ] && break; sleep 0.02; done" % path)
        else:
            script.append("echo \"@@rc $?\"")
        expected.append((i, cmd, output, background))
    script.append("kill %1; wait")
    shutil.rmtree("/tmp/sr", ignore_errors=True)  # the README's own directory, as written
    env = dict(os.environ, TMPDIR=work)
    r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, env=env, capture_output=True,
                       text=True, timeout=120)
    outputs = {}
    for part in r.stdout.split("@@")[1:]:
        head, _, body = part.partition("\n")
        if head.startswith("rc "):
            outputs[last]["rc"] = int(head[3:])
        else:
            last = int(head)
            outputs[last] = {"out": body, "rc": None}
    for i, cmd, output, background in expected:
        got = outputs.get(i)
        if got is None:
            problems.append("did not run: " + cmd)
            continue
        if not background and got["rc"] != 0:
            problems.append("%s: exit %s\n%s" % (cmd, got["rc"], got["out"]))
        if "--follow" in cmd or cmd.startswith("echo"):
            if got["out"].splitlines() != output:
                problems.append("%s: printed %r, README shows %r" % (cmd, got["out"], output))
        if cmd.endswith("client $S status"):
            for job in ("build-1", "long-1"):
                if job not in got["out"]:
                    problems.append("status does not list %s: %r" % (job, got["out"]))
    if "listening on unix:/tmp/sr/step-runner.sock" not in r.stderr:
        problems.append("serve did not say where it listens: " + r.stderr)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree("/tmp/sr", ignore_errors=True)
    for p in problems:
        print("PROBLEM: " + p)
    print("%d README commands run, %d problems" % (len(expected), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
