#!/usr/bin/env python3
"""python_reader.py: the Python package reads a real run folder (a tiny IDX
data set made here, a 2-state run with the built cilscale) and agrees with
results.csv. Ends with "N passed, N failed"."""
import os, shutil, subprocess, sys, tempfile

exe, src = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(src, "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cilscale  # noqa: E402
from pyutil import check, finish, tiny_idx  # noqa: E402

tmp = tempfile.mkdtemp(prefix="cs-py-")
data = os.path.join(tmp, "data")
tiny_idx(data, lambda i, j: i * 7 + j)
out = os.path.join(tmp, "run")
r = subprocess.run([exe, "run", "--set", "data.path=" + data, "--set", "scenario.states=2", "--set", "train.epochs=1",
                    "--set", "model.width=0.1", "--set", "model.depth=0.5", "--set", "train.batch=16",
                    "--set", "backend.device=threads=1", "--out", out], capture_output=True, text=True)
check(r.returncode == 0, "the tiny run finished (exit %d) %s" % (r.returncode, r.stderr[-300:]))

run = cilscale.read_run(out)
check(run.schema == 2, "results.json schema 2")
check(len(run.states) == 2 and run.states[1]["n_seen"] == 10, "two states, 10 classes seen at the end")
rows = [l.split(",") for l in open(os.path.join(out, "results.csv")) if l[:1].isdigit()]
check(all(abs(run.top1()[i] - float(rows[i][3])) <= 1e-6 for i in range(2)),
      "top-1 per state equals results.csv (within 1e-6: both are written with 6 digits)")
check(sorted(run.class_order) == list(range(10)), "class_order is a permutation of the 10 classes")
check(len(run.matrix) == 2 and run.matrix[1]["group_1"] is not None and run.matrix[0]["group_1"] is None,
      "accuracy_matrix: a row per state, groups not yet seen empty")
check(abs(run.matrix[1]["top1"] - run.top1()[1]) <= 1e-6, "the matrix's top1 is the state's")
check({e["term"] for e in run.epochs} == {"softmax_xent", "cosine_embed"}, "epochs.csv: both LUCIR terms")
check(repr(run).startswith("Run('lucir resnet18 w=0.1"), "repr names the run: %r" % run)
meta, entries, _ = cilscale.read_header(os.path.join(out, "state-1.safetensors"))
check([int(c) for c in meta["class_order"].split(",")] == run.class_order and meta["state"] == "1",
      "the checkpoint's metadata (read without numpy) has the run's class order and its state")
check(meta["depths"] == ",".join(str(d) for d in run.results["depths"]) and
      meta["widths"] == ",".join(str(d) for d in run.results["widths"]) and meta["head"] == "cosine" and
      meta["last_relu"] == "0" and meta["stem"] == "small" and meta["input"] == "1x28x28",
      "... and says what the network is: %s" % {k: meta[k] for k in ("depths", "widths", "head", "stem", "input")})
check(entries["fc.weight"]["shape"] == [10, run.results["widths"][-1]], "fc.weight is classes x features")
try:
    import pandas  # noqa: F401
    check(len(run.frame("epochs")) == len(run.epochs), "frame('epochs') has every row")
except ImportError:
    print("skip: pandas is not installed (frame() is the only part that needs it)")
shutil.rmtree(tmp, ignore_errors=True)
finish()
