#!/usr/bin/python3
"""check_torchvision.py: checks torch_reference.py's networks against torchvision.

Needs torchvision (Debian: apt-get install -y python3-torchvision); the
benchmark itself does not. For each case it asks cilscale for a configuration,
builds torch_reference's network and torchvision's, and checks that the
state_dicts have the same names and shapes (parameters and buffers), that the
parameter count equals cilscale's, and that with torchvision's weights loaded
both give the same logits (eval mode). ImageNet stem and linear head only:
torchvision has no other.

  /usr/bin/python3 bench/check_torchvision.py [--cilscale build/core/cilscale]

Exit status 0 when every case matches, 1 otherwise.
"""

import argparse
import json
import os
import subprocess
import sys

sys.dont_write_bytecode = True  # no bench/__pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as tr  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402


def scale(cilscale, args):
    out = subprocess.run([cilscale, "scale"] + args + ["--stem", "imagenet", "--head", "linear", "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def cases(cilscale):
    tvm = torchvision.models
    # the reference networks
    for arch, ctor in (("resnet18", tvm.resnet18), ("mobilenetv2", tvm.mobilenet_v2),
                       ("shufflenetv2", tvm.shufflenet_v2_x1_0)):
        for k in (1000, 100):
            cfg = scale(cilscale, ["--arch", arch, "--width", "1", "--depth", "1", "--classes", str(k)])
            yield f"{arch} reference, {k} classes", cfg, (lambda c=ctor, k=k: c(num_classes=k))
    # scaled networks that torchvision can also build
    for budget in ("1M", "2.5M"):
        cfg = scale(cilscale, ["--arch", "mobilenetv2", "--budget", budget, "--policy", "psi", "--classes", "100"])
        ref = [(1, 16, 1), (6, 24, 2), (6, 32, 2), (6, 64, 2), (6, 96, 1), (6, 160, 2), (6, 320, 1)]
        setting = [[t, c, n, s] for (t, c, s), n in zip(ref, cfg["depths"])]
        yield (f"mobilenetv2 psi @ {budget}", cfg,
               lambda c=cfg, st=setting: tvm.MobileNetV2(num_classes=100, width_mult=c["w"],
                                                         inverted_residual_setting=st))
        cfg = scale(cilscale, ["--arch", "shufflenetv2", "--budget", budget, "--policy", "psi", "--classes", "100"])
        yield (f"shufflenetv2 psi @ {budget}", cfg,
               lambda c=cfg: tvm.ShuffleNetV2(c["depths"], [tr.make_divisible(24 * c["w"], 4)] + c["widths"] + [1024],
                                              num_classes=100))
    cfg = scale(cilscale, ["--arch", "shufflenetv2", "--budget", "1M", "--policy", "width", "--classes", "100"])
    yield ("shufflenetv2 width @ 1M", cfg,
           lambda c=cfg: tvm.ShuffleNetV2(c["depths"], [tr.make_divisible(24 * c["w"], 4)] + c["widths"] + [1024],
                                          num_classes=100))
    cfg = scale(cilscale, ["--arch", "resnet18", "--width", "1", "--depths", "1,1,1,1", "--classes", "100"])
    yield ("resnet18 w=1 depths 1,1,1,1", cfg,
           lambda: torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1],
                                                    num_classes=100))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cilscale", default="build/core/cilscale")
    a = p.parse_args()
    torch.manual_seed(0)
    nets, _ = tr.define_networks(torch)
    failed = 0
    for name, cfg, make_tv in cases(a.cilscale):
        ours = tr.build_network(nets, cfg, 3, "imagenet", "linear").eval()
        tv = make_tv().eval()
        so, st = ours.state_dict(), tv.state_dict()
        problems = []
        if list(so) != list(st):
            problems.append(f"names differ: only ours {sorted(set(so) - set(st))[:5]}, "
                            f"only torchvision {sorted(set(st) - set(so))[:5]}")
        else:
            bad = [k for k in so if so[k].shape != st[k].shape]
            if bad:
                problems.append(f"shapes differ: {[(k, tuple(so[k].shape), tuple(st[k].shape)) for k in bad[:5]]}")
        n_ours = sum(q.numel() for q in ours.parameters())
        n_tv = sum(q.numel() for q in tv.parameters())
        if not (n_ours == n_tv == cfg["params"]):
            problems.append(f"params: ours {n_ours}, torchvision {n_tv}, cilscale {cfg['params']}")
        if not problems:
            ours.load_state_dict(st)
            x = torch.randn(2, 3, 96, 96)
            with torch.no_grad():
                diff = (ours(x) - tv(x)).abs().max().item()
            if diff > 1e-4:
                problems.append(f"logits differ by {diff:g}")
        status = "ok" if not problems else "FAIL " + "; ".join(problems)
        failed += bool(problems)
        print(f"{name:<36} params {cfg['params']:>10,}  {len(so):4d} state_dict entries  {status}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
