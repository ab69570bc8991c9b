"""Reading a cilscale checkpoint (state-K.safetensors).

The file is safetensors: an 8-byte little-endian header length, a JSON header
naming each tensor's dtype, shape and byte range, then the bytes. The header's
"__metadata__" says what the network is (arch, w, depths, widths, stem, head,
last_relu, in_channels, input, mean, std, convention) and what the state saw
(state, cil, class_order, run_id); docs/user-guide.md lists the keys.

read_header() needs nothing beyond the standard library; read_checkpoint()
needs numpy for the tensors.
"""
import json
import os
import struct

__all__ = ["Checkpoint", "read_header", "read_checkpoint"]

_DTYPES = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4", "U8": "u1"}


def read_header(path):
    """(metadata dict, {name: {"dtype", "shape", "data_offsets"}}, data start) of a safetensors file."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("%s: %d bytes, too short for a safetensors file" % (path, size))
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise ValueError("%s: header of %d bytes in a file of %d bytes: not a safetensors file" % (path, n, size))
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise ValueError("%s: the header is not JSON (%s): not a safetensors file" % (path, e)) from None
    if not isinstance(header, dict):
        raise ValueError("%s: the header is not a JSON object" % path)
    meta = header.pop("__metadata__", {}) or {}
    return meta, header, 8 + n


class Checkpoint:
    """metadata (dict of str), tensors (dict of numpy arrays) and the derived
    fields class_order (list of int: model label i is data-set class
    class_order[i]), state (int) and arch (str)."""

    def __init__(self, path):
        import numpy  # the tensors are numpy arrays

        self.path = path
        self.metadata, entries, start = read_header(path)
        with open(path, "rb") as f:
            f.seek(start)
            blob = f.read()
        self.tensors = {}
        for name, t in entries.items():
            dtype = _DTYPES.get(t.get("dtype"))
            if dtype is None:
                raise ValueError("%s: tensor %s has dtype %r, expected one of %s" %
                                 (path, name, t.get("dtype"), ", ".join(sorted(_DTYPES))))
            a, b = t["data_offsets"]
            if not 0 <= a <= b <= len(blob):
                raise ValueError("%s: tensor %s: bytes %d..%d outside the data (%d bytes)" % (path, name, a, b, len(blob)))
            arr = numpy.frombuffer(blob[a:b], dtype=dtype)
            self.tensors[name] = arr.reshape(t["shape"]).copy()
        m = self.metadata
        self.arch = m.get("arch")
        self.state = int(m["state"]) if "state" in m else None
        self.class_order = [int(v) for v in m["class_order"].split(",")] if m.get("class_order") else None

    def list_meta(self, key):
        """A comma-separated metadata value as a list of numbers (None when absent)."""
        v = self.metadata.get(key)
        if v is None or v == "":
            return None
        return [float(x) if "." in x or "e" in x else int(x) for x in v.split(",")]

    def __repr__(self):
        return "Checkpoint(%r, arch %s, state %s, %d tensors)" % (self.path, self.arch, self.state, len(self.tensors))


def read_checkpoint(path):
    """The checkpoint at path (a state-K.safetensors file)."""
    return Checkpoint(path)
