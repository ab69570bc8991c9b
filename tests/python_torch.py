#!/usr/bin/env python3
"""python_torch.py: cilscale.nets builds the exact PyTorch module of a
checkpoint. For each architecture, with LUCIR (cosine head, last ReLU left
out, small stem, uneven depths) and with fine-tuning (linear head, every ReLU,
ImageNet stem), a 2-state run on a tiny IDX data set made here, then
`cilscale eval --dump --inputs`; the module's logits on the dumped inputs must
equal cilscale's logits.npy within max |difference| <= 1e-5 x max(1, max
|logit|) (float32 sums in another order; measured 2e-7 relative), with the
same predicted class for every image. Also: a strict load refuses a
checkpoint that does not match, a checkpoint without the metadata is refused
with a line naming the key, and net.normalize gives the inputs cilscale fed.

Needs torch and numpy: without them it prints a skip line and exits 77
(meson's skip). Ends with "N passed, N failed"."""
import json, os, shutil, struct, subprocess, sys, tempfile

exe, src = sys.argv[1], sys.argv[2]
try:
    import numpy as np
    import torch
except ImportError as e:
    print("skip: %s (apt-get install python3-torch to run this test)" % e)
    print("0 passed, 0 failed")
    sys.exit(77)
sys.path.insert(0, os.path.join(src, "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cilscale.checkpoint  # noqa: E402
import cilscale.nets  # noqa: E402
from pyutil import check, finish, tiny_idx  # noqa: E402

torch.set_num_threads(1)
tmp = tempfile.mkdtemp(prefix="cs-torch-")
data = os.path.join(tmp, "data")
raw = {"t10k": tiny_idx(data, lambda i, j: i * 7 + j * 13 + (j // 28) * i)}

CASES = [
    ("resnet18", "lucir", "small", "[2,1,1,2]", "0.25"),
    ("mobilenetv2", "lucir", "small", "[1,2,2,1,1,2,1]", "0.35"),
    ("shufflenetv2", "lucir", "small", "[2,1,2]", "0.5"),
    ("resnet18", "finetune", "imagenet", "[1,1,1,1]", "0.25"),
    ("mobilenetv2", "finetune", "imagenet", "[1,1,1,1,1,1,1]", "0.5"),
    ("shufflenetv2", "finetune", "imagenet", "[1,2,1]", "0.5"),
]
first_run = None
for arch, cil, stem, depths, width in CASES:
    name = "%s %s stem %s depths %s w %s" % (arch, cil, stem, depths, width)
    out = os.path.join(tmp, "%s-%s-%s" % (arch, cil, stem))
    r = subprocess.run([exe, "run", "--set", "data.path=" + data, "--set", "scenario.states=2",
                        "--set", "train.epochs=1", "--set", "train.batch=16", "--set", "model.arch=" + arch,
                        "--set", "cil.algorithm=" + cil, "--set", "model.stem=" + stem,
                        "--set", "model.depths=" + depths, "--set", "model.width=" + width,
                        "--set", "backend.device=threads=1", "--out", out], capture_output=True, text=True)
    if r.returncode != 0:
        check(False, "%s: the run failed (exit %d): %s" % (name, r.returncode, r.stderr[-400:]))
        continue
    first_run = first_run or out
    dump = os.path.join(out, "dump")
    r = subprocess.run([exe, "eval", out, "--dump", dump, "--inputs"], capture_output=True, text=True)
    if r.returncode != 0:
        check(False, "%s: eval failed (exit %d): %s" % (name, r.returncode, r.stderr[-400:]))
        continue
    net = cilscale.nets.load_module(os.path.join(out, "state-1.safetensors"))
    x = np.load(os.path.join(dump, "inputs.npy"))
    ref = np.load(os.path.join(dump, "logits.npy"))
    with torch.no_grad():
        y = net(torch.from_numpy(x)).numpy()
    scale = max(1.0, float(np.abs(ref).max()))
    diff = float(np.abs(y - ref).max())
    check(y.shape == ref.shape and diff <= 1e-5 * scale,
          "%s: logits equal cilscale's (max |diff| %.3g, bound %.3g)" % (name, diff, 1e-5 * scale))
    check(bool((y.argmax(1) == ref.argmax(1)).all()), "%s: the same prediction for all %d images" % (name, len(y)))
    results = json.load(open(os.path.join(out, "results.json")))
    check(net.class_order == results["class_order"], "%s: class_order is results.json's" % name)

# normalize(): the module's own preprocessing gives the inputs cilscale fed (IDX: no resize)
if first_run:
    net = cilscale.nets.load_module(os.path.join(first_run, "state-1.safetensors"))
    x = np.load(os.path.join(first_run, "dump", "inputs.npy"))
    labels = np.load(os.path.join(first_run, "dump", "labels.npy"))
    pix = np.frombuffer(raw["t10k"], dtype=np.uint8).reshape(-1, 1, 28, 28)
    # the dump lists the test images by model label: match them by content
    mine = net.normalize(pix).numpy()
    ok = len(x) == len(pix) and all(np.abs(mine - x[i]).reshape(len(pix), -1).max(1).min() <= 1e-6
                                    for i in range(len(x)))
    check(ok, "net.normalize(uint8 images) gives cilscale's inputs within 1e-6 (%d images, %d labels)" %
          (len(x), len(labels)))

    # a strict load: a checkpoint whose metadata does not match its tensors is refused
    ck = cilscale.checkpoint.read_checkpoint(os.path.join(first_run, "state-1.safetensors"))
    ck.metadata["depths"] = "1,1,1,1"
    try:
        cilscale.nets.build_module(ck)
        check(False, "a checkpoint with depths that are not its tensors' is refused")
    except (RuntimeError, ValueError) as e:
        check("Unexpected key" in str(e) or "layer1.1" in str(e),
              "a checkpoint with depths that are not its tensors' is refused: %s" % str(e).splitlines()[0][:120])
    ck = cilscale.checkpoint.read_checkpoint(os.path.join(first_run, "state-1.safetensors"))
    del ck.metadata["stem"]
    try:
        cilscale.nets.build_module(ck)
        check(False, "a checkpoint without 'stem' is refused")
    except ValueError as e:
        check("'stem'" in str(e) and "stem=" in str(e), "a checkpoint without 'stem' is refused: %s" % e)
    net = cilscale.nets.build_module(ck, stem="small")
    check(net is not None, "... and loads with stem='small' given")
    bad = os.path.join(tmp, "bad.safetensors")
    open(bad, "wb").write(struct.pack("<Q", 1 << 40) + b"{}")
    try:
        cilscale.checkpoint.read_checkpoint(bad)
        check(False, "a file whose header length exceeds its size is refused")
    except ValueError as e:
        check("not a safetensors file" in str(e), "a file whose header length exceeds its size is refused: %s" % e)

shutil.rmtree(tmp, ignore_errors=True)
finish()
