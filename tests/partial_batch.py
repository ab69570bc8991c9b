#!/usr/bin/env python3
"""partial_batch.py: a run whose last batch is partial (30 images a state in
batches of 16: 16 + 14) on 2 threads, at a width where oneDNN picks, for 14
rows, a convolution that needs more scratch than the planned 16 rows did. The
cpu backend once stopped with "oneDNN convolution for 14 rows: needs more
scratch than the plan has" (found running a sweep on a 2-core Xeon with
AMX, 2026-12-02); the plan's workspace now grows to fit. Widths 0.1 to 0.3
are tried (which one triggers it depends on the CPU). Ends with
"N passed, N failed"."""
import os, shutil, subprocess, sys, tempfile

exe = sys.argv[1]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pyutil import check, finish, tiny_idx  # noqa: E402

tmp = tempfile.mkdtemp(prefix="cs-partial-")
data = os.path.join(tmp, "data")
tiny_idx(data, lambda i, j: i * 7 + j)
for w in ("0.1", "0.2", "0.3"):
    out = os.path.join(tmp, "w" + w)
    r = subprocess.run([exe, "run", "--set", "data.path=" + data, "--set", "scenario.states=2", "--set",
                        "train.epochs=1", "--set", "train.first_epochs=1", "--set", "model.width=" + w, "--set",
                        "model.depth=0.5", "--set", "train.batch=16", "--set", "backend.device=threads=2",
                        "--out", out], capture_output=True, text=True)
    check(r.returncode == 0 and os.path.exists(os.path.join(out, "state-1.safetensors")),
          "w=%s, batches of 16 + 14 on 2 threads: the run finishes (exit %d) %s" % (w, r.returncode, r.stderr[-300:]))
shutil.rmtree(tmp, ignore_errors=True)
finish()
