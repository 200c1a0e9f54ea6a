"""The peer for `lint-corpus.sh`: rapidyaml (PyPI `rapidyaml`, a C++ YAML parser) parsing every
file of a corpus into its tree, nothing else. Files are read into memory first and interpreter
start-up is not counted, so the figure is the parser's alone: a floor for any tool that must at
least parse the same bytes.

    python linter/benches/rapidyaml-parse.py DIR RUNS     -> prints "SECONDS FILES BYTES" (best of RUNS)
"""

import os
import sys
import time

import ryml


def main() -> None:
    root, runs = sys.argv[1], int(sys.argv[2])
    texts = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith((".yaml", ".yml")):
                with open(os.path.join(dirpath, name), "rb") as f:
                    texts.append(f.read())
    best = None
    for _ in range(runs):
        t0 = time.perf_counter()
        for text in texts:
            ryml.parse_in_arena(text)
        t = time.perf_counter() - t0
        best = t if best is None else min(best, t)
    print(f"{best:.4f} {len(texts)} {sum(len(t) for t in texts)}")


main()
