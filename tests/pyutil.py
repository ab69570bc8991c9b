"""pyutil.py: what the Python test scripts share: check() with a pass/fail
count, the summary line meson's log parser reads, and a tiny IDX data set."""
import gzip
import os
import struct
import sys

passed = failed = 0


def check(ok, what):
    """Counts one assertion and prints it ("ok: ..." or "FAIL: ...")."""
    global passed, failed
    print(("ok: " if ok else "FAIL: ") + what)
    passed += bool(ok)
    failed += not ok


def finish():
    """Prints "N passed, N failed" and exits 1 if anything failed."""
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


def tiny_idx(folder, pixel, train_per_class=6, test_per_class=3):
    """Fashion-MNIST-shaped gzipped IDX files of 10 classes of 28x28 images
    in folder; pixel(i, j) gives image i's byte j. Returns the raw test pixels."""
    os.makedirs(folder, exist_ok=True)
    raw = None
    for split, per in (("train", train_per_class), ("t10k", test_per_class)):
        n = 10 * per
        pix = bytes(pixel(i, j) % 256 for i in range(n) for j in range(784))
        raw = pix
        with gzip.open(os.path.join(folder, "%s-images-idx3-ubyte.gz" % split), "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, 28, 28) + pix)
        with gzip.open(os.path.join(folder, "%s-labels-idx1-ubyte.gz" % split), "wb") as f:
            f.write(struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n)))
    return raw
