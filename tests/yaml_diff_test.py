#!/usr/bin/python3
"""Differential test of the YAML layer: step files with random scalars, read by step-runner and by
Python's yaml (PyYAML, strict about quoting and indentation as Go's yaml.v3 is).

Each case is a step file whose second command argument is a generated scalar (quotes, escapes,
line breaks, indentation, comments, flow indicators). When PyYAML rejects the text, step-runner
must reject it too (exit 2, a file:line error). When PyYAML reads a string, step-runner must run
the file and record exactly that string as the argument (step-results.json). Cases where the two
YAML versions type a scalar differently (1.1 `yes`, numbers) are skipped. Seeded: reproducible.
"""
import json
import os
import random
import re
import subprocess
import tempfile
import unittest

import yaml

BINARY = os.environ.get("STEP_RUNNER", "build/step-runner")
CASES = int(os.environ.get("YAML_DIFF_CASES", "600"))
MAX_REJECTS = int(os.environ.get("YAML_DIFF_REJECTS", "30"))

PIECES = ['"', "'", "\\", "\\n", "\\\"", "''", " ", "  ", "\n", "\n      ", "\n  ", "\n    - x",
          "#", " #c", ":", ": ", "-", "{", "}", "[", "]", ",", "a", "bc", "é", "\\x41", "\\t",
          "|", ">", "&a", "*a", "!", "%", "@", "`"]
# No raw tab: PyYAML refuses tabs in places YAML 1.2 (and yaml-cpp) allow them, e.g. after a
# closing quote; that difference is PyYAML's, not a leniency of ours.


def gen_scalar(rng):
    body = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 7)))
    style = rng.random()
    if style < 0.35:
        return '"' + body + ('"' if rng.random() < 0.8 else "")
    if style < 0.6:
        return "'" + body + ("'" if rng.random() < 0.8 else "")
    if style < 0.7:
        return "|\n        " + body.replace("\n", "\n        ")
    return body


def step_file(scalar):
    return ("spec: {}\n---\nexec:\n  command:\n    - /bin/true\n    - " + scalar + "\n"
            "  work_dir: /\n")


def python_view(text):
    """('reject', None) | ('string', value) | ('other', None)"""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return "reject", None
    try:
        arg = docs[1]["exec"]["command"][1]
        if len(docs) == 2 and set(docs[1]) == {"exec"} and len(docs[1]["exec"]["command"]) == 2:
            if isinstance(arg, str):
                return "string", arg
    except (TypeError, KeyError, IndexError):
        pass
    return "other", None


class YamlDifferentialTest(unittest.TestCase):
    def test_quoted_unterminated_is_an_error(self):
        with tempfile.TemporaryDirectory(prefix="sr-yamldiff-") as tmp:
            path = os.path.join(tmp, "s.yml")
            with open(path, "w") as f:
                f.write('spec: {}\n---\nrun:\n  - name: a\n    script: "echo unterminated\n'
                        '  - name: b\n    script: echo b\n')
            p = subprocess.run([BINARY, "run", "-f", path], capture_output=True, text=True,
                               cwd=tmp, timeout=60)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn("s.yml:5:13:", p.stderr)
            self.assertNotIn("unterminated", p.stdout)

    def run_file(self, tmp, text):
        path = os.path.join(tmp, "s.yml")
        results = os.path.join(tmp, "r.json")
        with open(path, "w") as f:
            f.write(text)
        if os.path.exists(results):
            os.unlink(results)
        p = subprocess.run([BINARY, "run", "-f", path, "--step-results-file", results],
                           capture_output=True, text=True, errors="backslashreplace", cwd=tmp,
                           timeout=60)
        got = None
        if p.returncode == 0:
            with open(results) as f:
                got = json.load(f)["execResult"]["command"][1:]
        return p, got

    def test_against_pyyaml(self):
        rng = random.Random(15)
        rejects, strings = [], []
        for _ in range(CASES):
            scalar = gen_scalar(rng)
            kind, value = python_view(step_file(scalar))
            if kind == "reject" and len(rejects) < MAX_REJECTS:
                rejects.append(scalar)
            elif kind == "string" and "${{" not in value and "}}" not in value:
                if scalar[0] in "\"'" and re.search(r"\n[ ]*\n", scalar):
                    continue  # yaml-cpp folds empty lines in quoted scalars wrongly (docs)
                strings.append((scalar, value))
        # The generator must exercise both sides, or the test proves nothing.
        self.assertGreater(len(rejects), 20)
        self.assertGreater(len(strings), 20)
        with tempfile.TemporaryDirectory(prefix="sr-yamldiff-") as tmp:
            for scalar in rejects:  # one file each: any one of them must fail the whole file
                p, _ = self.run_file(tmp, step_file(scalar))
                ctx = "PyYAML rejects:\n%s\nstderr: %s" % (step_file(scalar), p.stderr)
                self.assertEqual(p.returncode, 2, ctx)
                self.assertRegex(p.stderr, r"s\.yml:\d+:\d+: ", ctx)
            # Accepted scalars in batches: one command with many arguments (when PyYAML reads
            # the batch as those arguments; else each alone).
            for i in range(0, len(strings), 40):
                batch = strings[i:i + 40]
                text = step_file("\n    - ".join(sc for sc, _ in batch))
                if python_args(text) != [v for _, v in batch]:
                    groups = [[item] for item in batch]
                else:
                    groups = [batch]
                for group in groups:
                    text = step_file("\n    - ".join(sc for sc, _ in group))
                    p, got = self.run_file(tmp, text)
                    self.assertEqual(p.returncode, 0, text + "\nstderr: " + p.stderr)
                    self.assertEqual(got, [v for _, v in group], text)


def python_args(text):
    try:
        return list(yaml.safe_load_all(text))[1]["exec"]["command"][1:]
    except (yaml.YAMLError, TypeError, KeyError, IndexError):
        return None


if __name__ == "__main__":
    unittest.main()
