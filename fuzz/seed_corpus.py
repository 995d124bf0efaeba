#!/usr/bin/env python3
"""Regenerates fuzz/corpus/<target>/ from the string literals of the unit and e2e tests.

Usage: fuzz/seed_corpus.py [OUT]      (from anywhere; OUT defaults to build-fuzz/fuzz-seeds)

Each seed is one literal (adjacent literals concatenated) that looks like input for a target:
step files and invocation lists for `stepfile`, `${{ }}` texts for `expr`, JSON lines for
`outputs`, references for `reference`, durations and signal names for `duration`, and the
MaskAll() cases of mask_test.cc for `masker` (in that target's input format). Seeds are small
(at most 4 KiB); files are named by content hash so reruns are stable. They are written to
OUT/<target>/seed-* (old seeds there are removed first), never to the source tree: scripts/fuzz
regenerates them on every run, so new tests seed the fuzzers without a commit. Hand-written seeds
live in fuzz/corpus/<target>/hand-*.
"""
import hashlib
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "build-fuzz" / "fuzz-seeds"
MAX = 4096


def literals(src):
    """Yields (start, end, bytes) for each run of adjacent C++ string literals."""
    i, n = 0, len(src)
    run, run_start = None, 0
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            i = src.find("\n", i)
            i = n if i < 0 else i
            continue
        if src.startswith("/*", i):
            i = src.find("*/", i + 2) + 2
            continue
        if c == "'" :  # a char literal: skip it
            m = re.match(r"'(\\.|[^'\\])*'", src[i:])
            i += len(m.group(0)) if m else 1
            continue
        m = re.match(r'R"([^(\s]*)\(', src[i:])
        if m and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            end = src.find(")" + m.group(1) + '"', i + len(m.group(0)))
            body = src[i + len(m.group(0)):end].encode()
            run, run_start = (run or b"") + body, run_start if run is not None else i
            i = end + len(m.group(1)) + 2
            continue
        if c == '"':
            j, out = i + 1, bytearray()
            while j < n and src[j] != '"':
                if src[j] == "\\":
                    e = src[j + 1]
                    simple = {"n": 10, "t": 9, "r": 13, "0": 0, "\\": 92, '"': 34, "'": 39,
                              "a": 7, "b": 8, "f": 12, "v": 11, "?": 63}
                    if e == "x":
                        h = re.match(r"[0-9a-fA-F]+", src[j + 2:]).group(0)
                        out.append(int(h, 16) & 0xFF)
                        j += 2 + len(h)
                        continue
                    if e in "01234567":
                        o = re.match(r"[0-7]{1,3}", src[j + 1:]).group(0)
                        out.append(int(o, 8) & 0xFF)
                        j += 1 + len(o)
                        continue
                    out.append(simple.get(e, ord(e)))
                    j += 2
                    continue
                out += src[j].encode()
                j += 1
            run, run_start = (run or b"") + bytes(out), run_start if run is not None else i
            i = j + 1
            continue
        if run is not None and not c.isspace():
            yield run_start, i, run
            run = None
        i += 1
    if run is not None:
        yield run_start, n, run


def tests():
    for pattern in ("src/*/*_test.cc", "tests/*_test.cc"):
        yield from sorted(ROOT.glob(pattern))


def classify(path, text):
    name = path.name
    out = set()
    if len(text) > MAX or not text:
        return out
    if (b"---" in text or text.lstrip().startswith(b"- ") or b"step:" in text or
            b"exec:" in text or b"run:" in text) and name != "outputs_test.cc":
        out.add("stepfile")
    if b"${{" in text or b"}}" in text:
        out.add("expr")
    if name == "outputs_test.cc" and b"name" in text:
        out.add("outputs")
    if name == "reference_test.cc" and b"\n" not in text.strip():
        out.add("reference")
    if re.fullmatch(rb"[0-9.]+(ns|us|\xc2\xb5s|ms|s|m|h)([0-9.]+(ns|us|ms|s|m|h))*|0|"
                    rb"-?[0-9.]+[a-z]*|(SIG)?[A-Z]{2,7}[0-9]?|[0-9]{1,2}", text):
        out.add("duration")
    return out


def masker_seeds():
    src = (ROOT / "src/expr/mask_test.cc").read_text()
    for m in re.finditer(r"MaskAll\(", src):
        lits = []
        call = src[m.end():src.find("})", m.end())]
        first = next(literals(call), None)
        if first is None:
            continue
        _, end, text = first
        s = [b for _, _, b in literals(call[call.find("{", end) + 1:])]
        # Seed both the whole text and a split in the middle of it.
        mid = len(text) // 2
        for body in (text, text[:mid] + b"\x01" + text[mid:]):
            lits.append(b"\0".join(s) + b"\0\0" + body)
        yield from lits


def write(target, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


def main():
    global CORPUS
    if len(sys.argv) > 1:
        CORPUS = pathlib.Path(sys.argv[1]).resolve()
    for d in CORPUS.glob("*"):
        for f in d.glob("seed-*"):
            f.unlink()
    counts = {}
    for path in tests():
        src = path.read_text(errors="replace")
        for _, _, lit in literals(src):
            for target in classify(path, lit):
                data = lit
                if target == "expr":
                    data = b"\x00" + lit  # mode byte: string expansion
                write(target, data)
                counts[target] = counts.get(target, 0) + 1
    for seed in masker_seeds():
        write("masker", seed)
        counts["masker"] = counts.get("masker", 0) + 1
    for target, n in sorted(counts.items()):
        print(f"{target}: {n} literals")


if __name__ == "__main__":
    main()
