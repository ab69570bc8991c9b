"""cilscale: read a cilscale run folder into Python (pure Python, no dependency).

    import cilscale
    run = cilscale.read_run("runs/fashion-mnist")
    run.summary["avg_incremental_top1"], run.class_order, run.matrix[-1], run.epochs[0]
    run.frame("epochs")          # a pandas DataFrame, when pandas is installed

    ck = cilscale.read_checkpoint("runs/fashion-mnist/state-4.safetensors")  # needs numpy
    ck.metadata["widths"], ck.tensors["fc.weight"].shape, ck.class_order

    import cilscale.nets                     # needs torch
    net = cilscale.nets.load_module("runs/fashion-mnist/state-4.safetensors")
    net(net.normalize(images_uint8))         # the logits cilscale computes

The files and their columns are described in docs/user-guide.md ("Results and
reports", "In Python").
"""
import csv
import json
import math
import os

from .checkpoint import Checkpoint, read_checkpoint, read_header

__all__ = ["Run", "read_run", "Checkpoint", "read_checkpoint", "read_header"]


def _number(text):
    if text == "" or text is None:
        return None
    v = float(text)
    return None if math.isnan(v) else v


class Run:
    """One run folder: results.json as `results`, and the parsed CSV files."""

    def __init__(self, folder):
        self.folder = folder
        with open(os.path.join(folder, "results.json")) as f:
            self.results = json.load(f)
        self.schema = self.results.get("schema", 1)
        self.label = self.results["label"]
        self.summary = self.results["summary"]
        self.states = self.results["states"]
        self.class_order = self.results.get("class_order")
        self.matrix = self._read_csv("accuracy_matrix.csv")
        self.epochs = self._read_csv("epochs.csv")

    def _read_csv(self, name):
        path = os.path.join(self.folder, name)
        if not os.path.exists(path):
            return []
        with open(path, newline="") as f:
            rows = []
            for row in csv.DictReader(f):
                rows.append({k: (v if k == "term" else _number(v)) for k, v in row.items()})
            return rows

    def top1(self):
        """Top-1 after each finished state, as fractions (None where not defined)."""
        return [s["top1"] for s in self.states]

    def frame(self, what="states"):
        """states, matrix or epochs as a pandas DataFrame (pandas must be installed)."""
        import pandas  # only here: the rest needs nothing beyond the standard library
        rows = {"states": self.states, "matrix": self.matrix, "epochs": self.epochs}[what]
        return pandas.DataFrame(rows)

    def __repr__(self):
        return "Run(%r, %d states)" % (self.label, len(self.states))


def read_run(folder):
    """The run in folder (it must hold results.json, as every finished state leaves it)."""
    return Run(folder)
