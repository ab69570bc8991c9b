#!/usr/bin/env python3
"""make_corpus.py: writes the seed corpora in corpus/NAME/ (run once; the
files are kept in the tree). Seeds are small valid inputs of each format and
the hostile inputs of issue 13 (regressions). libFuzzer findings are added by
hand to corpus/NAME/ under a name that says what they found."""
import gzip, json, os, struct, zlib

here = os.path.dirname(os.path.abspath(__file__))

def put(name, fname, data):
    d = os.path.join(here, "corpus", name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, fname), "wb") as f:
        f.write(data)

def png(w, h):
    raw = b"".join(b"\0" + bytes([(x * 37 + y * 11) % 256 for x in range(3 * w)]) for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

# idx: byte 0 even = images file, odd = labels file
img = struct.pack(">IIII", 0x803, 3, 2, 3) + bytes(range(18))
lab = struct.pack(">II", 0x801, 3) + bytes([1, 2, 3])
put("idx", "images-valid", b"\0" + img)
put("idx", "labels-valid", b"\1" + lab)
put("idx", "images-gzip", b"\0" + gzip.compress(img))
put("idx", "images-truncated", b"\0" + img[:20])
put("idx", "images-huge-header", b"\0" + struct.pack(">IIII", 0x803, 0x7fffffff, 65535, 65535))
put("idx", "regress-gzip-bomb", b"\0" + gzip.compress(img + bytes(8 << 20), 9))
# cifar: byte 0 even = CIFAR-10 batch, odd = CIFAR-100 train.bin
put("cifar", "cifar10-two-records", b"\0" + (bytes([3]) + bytes(3072)) * 2)
put("cifar", "cifar100-one-record", b"\1" + bytes([1, 7]) + bytes(3072))
put("cifar", "cifar10-short", b"\0" + bytes(1000))
# image
p = png(3, 2)
put("image", "png-3x2", p)
put("image", "png-truncated", p[: len(p) // 2])
jpeg_min = bytes.fromhex(
    "ffd8ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f141d1a1f1e1d1a1c1c20242e2720222c231c1c2837292c"
    "30313434341f27393d38323c2e333432ffc0000b080001000101011100ffc4001f0000010501010101010100000000000000000102030405"
    "060708090a0bffc400b5100002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c115"
    "52d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a73747576"
    "7778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9"
    "dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00d2cf20ffd9")
put("image", "jpeg-1x1", jpeg_min)
big = bytearray(jpeg_min)
i = big.index(b"\xff\xc0")
big[i + 5:i + 9] = struct.pack(">HH", 16384, 16384)
put("image", "regress-jpeg-16k-declared", bytes(big))
put("image", "regress-jpeg-truncated-scan", jpeg_min[:-6])
put("image", "not-an-image", b"GIF89a")
# list (train.lst; a.png exists beside it)
put("list", "plain", b"a.png 0\n")
put("list", "root-line", b"/nonexistent/root/ -1\na.png 0\n")
put("list", "comments-crlf", b"# a comment\r\na.png 0\r\n\r\n")
put("list", "bad-label", b"a.png x\n")
put("list", "gap-in-labels", b"a.png 0\na.png 2\n")
# safetensors: the harness's graph has fc.bias [2] and fc.weight [2,3]
def st(tensors, meta=None, order=None):
    hdr, data, off = {}, b"", 0
    if meta:
        hdr["__metadata__"] = meta
    for name, shape, vals in tensors:
        b = struct.pack("<%df" % len(vals), *vals)
        hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        data += b
        off += len(b)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data
good = st([("fc.bias", [2], [0.5, -1]), ("fc.weight", [2, 3], [1, 2, 3, 4, 5, 6])], {"run_id": "0123456789abcdef"})
put("safetensors", "valid", good)
put("safetensors", "truncated", good[:-5])
put("safetensors", "wrong-shape", st([("fc.bias", [3], [0, 0, 0]), ("fc.weight", [2, 3], [0] * 6)]))
put("safetensors", "header-too-long", struct.pack("<Q", 1 << 40) + b"{}")
put("safetensors", "bad-json", struct.pack("<Q", 6) + b'{"a":]')
# experiment files
cfg = open(os.path.join(here, "..", "..", "configs", "fashion-mnist.cfg"), "rb").read()
put("experiment", "fashion-mnist", cfg)
put("experiment", "model-depths", b'model = { budget = "1M"; depths = [1, 2, 2, 1]; convention = "authors"; };\n')
put("experiment", "regress-group-as-key", b"data = 5;\n")
put("experiment", "regress-seed-2-63", b"seed = 9223372036854775808L;\n")
put("experiment", "regress-option-and-group", b'cil = { lucir = 1; lucir = { x = 2; }; };\n')
put("experiment", "syntax-error", b"train = { epochs = = 3; };\n")
# plugins.conf
put("plugins_conf", "two-missing", b'plugins = ["a.so", "sub/b.so"];\n')
put("plugins_conf", "empty-list", b"plugins = [];\n")
put("plugins_conf", "not-a-list", b'plugins = "a.so";\n')
put("plugins_conf", "unknown-key", b'plugins = []; extra = 1;\n')
# results.csv
res = (b"# label: lucir psi 1M resnet18 w=0.445 [1,1,1,1] seed 1\n# arch: resnet18\n# params: 959409\n"
       b"# budget: 1000000\n# depths: 1,1,1,1\n# widths: 32,56,112,224\n# settings: model.arch=resnet18\n"
       b"# run_id: 0123456789abcdef\n# seed: 1\n# n_states_planned: 2\n"
       b"state,n_new,n_seen,top1,top5,train_loss,train_seconds,eval_seconds,group_top1\n"
       b"0,2,2,0.56,nan,0.68,0.6,0.05,0.56\n1,2,4,0.23,nan,8.1,0.5,0.07,0.46;0\n")
put("results", "valid", res)
put("results", "bad-row", res.replace(b"0.46;0", b"0.46"))
put("results", "depths-mismatch", res.replace(b"# widths: 32,56,112,224", b"# widths: 32,56"))
put("results", "control-chars", res.replace(b"resnet18 w=", b"\x1b[31m w="))
