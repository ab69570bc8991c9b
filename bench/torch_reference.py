#!/usr/bin/python3
"""torch_reference.py: PyTorch reference timings for cilscale's scaled networks.

Asks `cilscale scale ... --json` for the network a policy picks under a budget,
builds the same network in PyTorch (torchvision's module and parameter names
and structure, written out here so torchvision is not needed), checks that its
parameter count equals cilscale's exactly, and times training steps (forward,
cross-entropy on random labels, backward, SGD step) and inference (eval mode,
no_grad).

Takes the options of `cilscale bench`:

  /usr/bin/python3 bench/torch_reference.py --arch resnet18 --budget 1M --policy psi \
      --classes 100 --stem small --batch 128 --input 3x32x32 --warmup 2 --steps 5 --json
  /usr/bin/python3 bench/torch_reference.py --arch resnet18 --width 0.5 --depths 1,1,1,1 --json

(as `cilscale bench`: --budget M [--policy P, default psi] or --width/--depth/--depths;
--batch 128, --input 3x32x32, --steps 20, --warmup 3 by default. --device is
cpu or cuda here, where `cilscale bench --device` takes a backend device string.)

Exit status: 0 done; 1 cilscale failed or the parameter counts differ (or a
non-finite loss); 2 bad usage.

Network notes:
  * resnet18: torchvision's ResNet (conv1/bn1/relu/maxpool, layer1..layer4 of
    BasicBlocks, avgpool, fc); the stem stays 64 channels; a block gets a
    downsample (1x1 conv + bn) when stride != 1 or in != out channels.
  * mobilenetv2: torchvision's MobileNetV2: features.0 stem of
    make_divisible(32 w, 8) channels, inverted residuals features.1.., last
    1x1 conv of make_divisible(1280 max(1, w), 8) channels, then
    classifier = Sequential(Dropout(p=0.0), Linear): the Dropout is kept at p=0
    so the classifier's name stays torchvision's "classifier.1" while the
    computation matches cilscale's graph, which has no dropout.
  * shufflenetv2: torchvision's ShuffleNetV2: conv1 stem of
    make_divisible(24 w, 4) channels, maxpool, stage2..stage4, conv5 of 1024
    channels, mean over H and W, fc.
  * stem "small": the first conv is 3x3 stride 1 padding 1 and the max-pool is
    an nn.Identity (ResNet, ShuffleNetV2); MobileNetV2's first conv gets stride
    1. Every other stride is torchvision's.
  * head "cosine": fc / classifier.1 is a CosineLinear with "weight" [K, F] and
    a learnable scalar "sigma" (LUCIR; cilscale's graph uses the same names):
    logits = sigma * normalize(x) . normalize(weight)^T.

FLOPs: conv and linear multiply-adds x 2 per image, counted from the module
shapes with forward hooks (batch norm, activations, pooling, additions and
the optimiser are not counted). Training is counted as 3 x forward.
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

ARCHS = ("resnet18", "mobilenetv2", "shufflenetv2")


def die(msg, code=1):
    print(f"torch_reference: {msg}", file=sys.stderr)
    sys.exit(code)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="torch_reference.py",
        description="PyTorch reference timings for a network cilscale scales to a budget.",
    )
    p.add_argument("--arch", required=True, choices=ARCHS)
    p.add_argument("--budget", help="parameter budget, as cilscale reads it (1M, 2.5M, 1500k, ...)")
    p.add_argument("--policy", default=None, help="scaling policy (psi, compound, width, depth; default psi)")
    p.add_argument("--width", help="width coefficient: count this configuration instead of asking a policy")
    p.add_argument("--depth", help="depth coefficient (with or without --width)")
    p.add_argument("--depths", help="blocks per stage N1,N2,... in place of --depth")
    p.add_argument("--classes", type=int, default=100, help="classifier outputs (default 100)")
    p.add_argument("--stem", choices=("imagenet", "small"), default="imagenet", help="default imagenet")
    p.add_argument("--head", choices=("linear", "cosine"), default="linear", help="default linear")
    p.add_argument("--batch", type=int, default=128, help="images per step (default 128)")
    p.add_argument("--input", default="3x32x32", help="image shape CxHxW (default 3x32x32)")
    p.add_argument("--steps", type=int, default=20, help="timed steps for each of training and inference (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before each measurement (default 3)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default os.cpu_count())")
    p.add_argument("--memory-format", choices=("contiguous", "channels_last"), default="contiguous",
                   help="layout of the model and the batch (channels_last is faster for MobileNetV2 on CPU); "
                        "default contiguous")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default cpu")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="capture the training step and the inference forward in CUDA graphs (cuda only; "
                        "ignored with a warning on cpu)")
    p.add_argument("--tf32", action="store_true",
                   help="let cuDNN and cuBLAS use TF32 (cuda only). Off by default: PyTorch's own default lets "
                        "cuDNN convolutions run in TF32, which is not the fp32 cilscale computes")
    p.add_argument("--cilscale", default="build/core/cilscale", help="cilscale binary (default build/core/cilscale)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = p.parse_args(argv)
    try:
        parts = [int(v) for v in a.input.lower().split("x")]
        if len(parts) != 3 or min(parts) < 1:
            raise ValueError
    except ValueError:
        p.error(f"--input '{a.input}': expected CxHxW with positive integers, e.g. 3x32x32")
    a.in_shape = tuple(parts)
    a.fixed = a.width is not None or a.depth is not None or a.depths is not None
    if a.depth is not None and a.depths is not None:
        p.error("--depth and --depths exclude each other")
    if not a.fixed and a.budget is None:
        p.error("give --budget M (and --policy P), or a configuration with --width/--depth/--depths")
    if a.fixed and a.policy is not None:
        p.error("--policy picks a network under --budget; with --width/--depth/--depths there is none to pick")
    if not a.fixed and a.policy is None:
        a.policy = "psi"
    if a.batch < 1:
        p.error("--batch must be >= 1")
    if a.classes < 1:
        p.error("--classes must be >= 1")
    if a.steps < 1:
        p.error("--steps must be >= 1")
    if a.warmup < 0:
        p.error("--warmup must be >= 0")
    if a.threads is None:
        a.threads = os.cpu_count() or 1
    if a.threads < 1:
        p.error("--threads must be >= 1")
    return a


def cilscale_scale(a):
    cmd = [a.cilscale, "scale", "--arch", a.arch]
    for opt in ("budget", "policy", "width", "depth", "depths"):
        if getattr(a, opt) is not None:
            cmd += ["--" + opt, getattr(a, opt)]
    cmd += ["--classes", str(a.classes), "--in-channels", str(a.in_shape[0]), "--stem", a.stem,
            "--head", a.head, "--json"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        die(f"cannot run {a.cilscale}: {e} (build it, or pass --cilscale PATH)")
    if r.returncode != 0:
        die(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
    try:
        return json.loads(r.stdout), cmd
    except json.JSONDecodeError as e:
        die(f"{' '.join(cmd)} printed no JSON object ({e}): {r.stdout!r}")


# ---------------------------------------------------------------- networks
# torch is imported after the arguments are read, so that the thread counts of
# OpenMP and OpenBLAS can be fixed through the environment first.

def make_divisible(v, divisor):
    """cilscale's cs_make_divisible (torchvision's _make_divisible)."""
    new_v = int(math.floor(v + divisor / 2.0)) // divisor * divisor
    if new_v < divisor:
        new_v = divisor
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def define_networks(torch):
    nn = torch.nn
    F = torch.nn.functional

    class CosineLinear(nn.Module):
        """LUCIR's cosine classifier: no bias, one learnable scale (sigma)."""

        def __init__(self, in_features, out_features, sigma=1.0):
            super().__init__()
            self.in_features, self.out_features = in_features, out_features
            self.weight = nn.Parameter(torch.empty(out_features, in_features))
            self.sigma = nn.Parameter(torch.full((1,), float(sigma)))
            bound = 1.0 / math.sqrt(in_features)
            nn.init.uniform_(self.weight, -bound, bound)

        def forward(self, x):
            return self.sigma * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def head(features, classes, kind):
        return nn.Linear(features, classes) if kind == "linear" else CosineLinear(features, classes)

    # ---- ResNet18 (torchvision.models.resnet) ----
    class BasicBlock(nn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                                nn.BatchNorm2d(planes))

        def forward(self, x):
            identity = x
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            if self.downsample is not None:
                identity = self.downsample(x)
            return self.relu(out + identity)

    class ResNet18(nn.Module):
        STEM = 64

        def __init__(self, cfg, in_ch, stem, head_kind):
            super().__init__()
            if stem == "imagenet":
                self.conv1 = nn.Conv2d(in_ch, self.STEM, 7, 2, 3, bias=False)
                self.maxpool = nn.MaxPool2d(3, 2, 1)
            else:
                self.conv1 = nn.Conv2d(in_ch, self.STEM, 3, 1, 1, bias=False)
                self.maxpool = nn.Identity()
            self.bn1 = nn.BatchNorm2d(self.STEM)
            self.relu = nn.ReLU(inplace=True)
            inplanes = self.STEM
            for s, (depth, width) in enumerate(zip(cfg["depths"], cfg["widths"])):
                blocks = []
                for b in range(depth):
                    blocks.append(BasicBlock(inplanes, width, 2 if (s > 0 and b == 0) else 1))
                    inplanes = width
                setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = head(inplanes, cfg["classes"], head_kind)
            for m in self.modules():  # torchvision's initialisation
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    # ---- MobileNetV2 (torchvision.models.mobilenetv2) ----
    class Conv2dNormActivation(nn.Sequential):
        def __init__(self, inp, out, k=3, stride=1, groups=1, act=True):
            layers = [nn.Conv2d(inp, out, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(out)]
            if act:
                layers.append(nn.ReLU6(inplace=True))
            super().__init__(*layers)

    class InvertedResidualMB(nn.Module):
        def __init__(self, inp, oup, stride, t):
            super().__init__()
            hidden = int(round(inp * t))
            self.use_res_connect = stride == 1 and inp == oup
            layers = []
            if t != 1:
                layers.append(Conv2dNormActivation(inp, hidden, 1))
            layers += [Conv2dNormActivation(hidden, hidden, 3, stride, groups=hidden),
                       nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        EXPAND = (1, 6, 6, 6, 6, 6, 6)
        STRIDE0 = (1, 2, 2, 2, 1, 2, 1)

        def __init__(self, cfg, in_ch, stem, head_kind):
            super().__init__()
            w = cfg["w"]
            inp = make_divisible(32 * w, 8)
            last = make_divisible(1280 * max(1.0, w), 8)
            self.stem_width, self.last_width = inp, last
            feats = [Conv2dNormActivation(in_ch, inp, 3, 2 if stem == "imagenet" else 1)]
            for s, (depth, width) in enumerate(zip(cfg["depths"], cfg["widths"])):
                for b in range(depth):
                    feats.append(InvertedResidualMB(inp, width, self.STRIDE0[s] if b == 0 else 1, self.EXPAND[s]))
                    inp = width
            feats.append(Conv2dNormActivation(inp, last, 1))
            self.features = nn.Sequential(*feats)
            # Dropout p=0: keeps torchvision's "classifier.1" name, computes nothing.
            self.classifier = nn.Sequential(nn.Dropout(p=0.0), head(last, cfg["classes"], head_kind))
            for m in self.modules():  # torchvision's initialisation
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.zeros_(m.bias)

        def forward(self, x):
            x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
            return self.classifier(torch.flatten(x, 1))

    # ---- ShuffleNetV2 (torchvision.models.shufflenetv2) ----
    def channel_shuffle(x, groups):
        n, c, h, w = x.size()
        x = x.view(n, groups, c // groups, h, w)
        return torch.transpose(x, 1, 2).contiguous().view(n, -1, h, w)

    def depthwise(i, o, stride):
        return nn.Conv2d(i, o, 3, stride, 1, bias=False, groups=i)

    class InvertedResidualSN(nn.Module):
        def __init__(self, inp, oup, stride):
            super().__init__()
            self.stride = stride
            bf = oup // 2
            if stride == 1 and inp != bf << 1:
                raise ValueError(f"shufflenet block: stride 1 needs in == out, got {inp} -> {oup}")
            if stride > 1:
                self.branch1 = nn.Sequential(depthwise(inp, inp, stride), nn.BatchNorm2d(inp),
                                             nn.Conv2d(inp, bf, 1, 1, 0, bias=False), nn.BatchNorm2d(bf),
                                             nn.ReLU(inplace=True))
            else:
                self.branch1 = nn.Sequential()
            self.branch2 = nn.Sequential(
                nn.Conv2d(inp if stride > 1 else bf, bf, 1, 1, 0, bias=False), nn.BatchNorm2d(bf),
                nn.ReLU(inplace=True), depthwise(bf, bf, stride), nn.BatchNorm2d(bf),
                nn.Conv2d(bf, bf, 1, 1, 0, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))

        def forward(self, x):
            if self.stride == 1:
                x1, x2 = x.chunk(2, dim=1)
                out = torch.cat((x1, self.branch2(x2)), dim=1)
            else:
                out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
            return channel_shuffle(out, 2)

    class ShuffleNetV2(nn.Module):
        LAST = 1024

        def __init__(self, cfg, in_ch, stem, head_kind):
            super().__init__()
            inp = make_divisible(24 * cfg["w"], 4)
            self.stem_width = inp
            self.conv1 = nn.Sequential(nn.Conv2d(in_ch, inp, 3, 2 if stem == "imagenet" else 1, 1, bias=False),
                                       nn.BatchNorm2d(inp), nn.ReLU(inplace=True))
            self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
            for s, (depth, width) in enumerate(zip(cfg["depths"], cfg["widths"])):
                blocks = []
                for b in range(depth):
                    blocks.append(InvertedResidualSN(inp, width, 2 if b == 0 else 1))
                    inp = width
                setattr(self, f"stage{s + 2}", nn.Sequential(*blocks))
            self.conv5 = nn.Sequential(nn.Conv2d(inp, self.LAST, 1, 1, 0, bias=False), nn.BatchNorm2d(self.LAST),
                                       nn.ReLU(inplace=True))
            self.fc = head(self.LAST, cfg["classes"], head_kind)

        def forward(self, x):
            x = self.maxpool(self.conv1(x))
            x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
            return self.fc(x.mean([2, 3]))

    return {"resnet18": ResNet18, "mobilenetv2": MobileNetV2, "shufflenetv2": ShuffleNetV2}, CosineLinear


def build_network(nets, cfg, in_ch, stem, head_kind):
    n_stages = {"resnet18": 4, "mobilenetv2": 7, "shufflenetv2": 3}[cfg["arch"]]
    if len(cfg["depths"]) != n_stages or len(cfg["widths"]) != n_stages:
        die(f"cilscale gave {len(cfg['depths'])} depths / {len(cfg['widths'])} widths for {cfg['arch']}, "
            f"expected {n_stages}")
    return nets[cfg["arch"]](cfg, in_ch, stem, head_kind)


# ---------------------------------------------------------------- measuring

def count_fwd_flops(torch, model, in_shape, cosine_cls, device):
    """Conv and linear MACs x 2 per image, from one eval-mode forward with hooks."""
    nn = torch.nn
    total = [0]

    def conv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1]
        total[0] += out.numel() // out.shape[0] * (m.in_channels // m.groups) * k

    def linear_hook(m, inp, out):
        total[0] += m.in_features * m.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, (nn.Linear, cosine_cls)):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros((1,) + tuple(in_shape), device=device))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return 2 * total[0]


def cpu_model_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def time_loop(torch, fn, warmup, steps, cuda):
    """Runs fn warmup times, then steps times; returns per-step seconds."""
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def time_loop_total(torch, fn, warmup, steps, cuda):
    """As time_loop, but with no synchronisation between steps (CUDA queues them);
    returns the total seconds for steps steps."""
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def net_name(a, cfg):
    if a.fixed:
        return "configuration given" + (f", budget {a.budget}" if a.budget else "")
    return f"{a.policy} @ {a.budget}"


def main(argv):
    a = parse_args(argv)
    cfg, scale_cmd = cilscale_scale(a)

    # Thread counts must be in the environment before torch (OpenMP, OpenBLAS) starts.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(a.threads)
    import torch  # noqa: E402
    import torch.nn.functional as F  # noqa: E402

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cuda = a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        die("--device cuda: this torch has no CUDA device (torch.cuda.is_available() is false)")
    device = torch.device(a.device)
    use_graphs = False
    if a.cuda_graphs:
        if cuda:
            use_graphs = True
        else:
            print("torch_reference: --cuda-graphs needs --device cuda; timing without graphs", file=sys.stderr)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = a.tf32
        torch.backends.cuda.matmul.allow_tf32 = a.tf32

    nets, cosine_cls = define_networks(torch)
    model = build_network(nets, cfg, a.in_shape[0], a.stem, a.head)
    params = sum(p.numel() for p in model.parameters())
    if params != cfg["params"]:
        die(f"parameter count mismatch for {a.arch} ({net_name(a, cfg)}, {a.classes} classes, "
            f"{a.stem} stem, {a.head} head): PyTorch model has {params:,}, cilscale says {cfg['params']:,} "
            f"(depths {cfg['depths']}, widths {cfg['widths']}, w {cfg['w']})")
    model.to(device)
    fwd_flops = count_fwd_flops(torch, model, a.in_shape, cosine_cls, device)
    fmt = torch.channels_last if a.memory_format == "channels_last" else torch.contiguous_format
    model.to(memory_format=fmt)

    n = a.batch
    x = torch.randn((n,) + a.in_shape, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, a.classes, (n,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4, foreach=cuda)
    last_loss = [None]

    # ---- training ----
    model.train()

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        last_loss[0] = loss

    train_fn = train_step
    if use_graphs:
        # torch's whole-network capture: warm up on a side stream (creates the
        # momentum buffers, picks the cuDNN algorithms), then capture one step.
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(max(3, a.warmup)):
                train_step()
        torch.cuda.current_stream().wait_stream(s)
        g_train = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(g_train):
            static_loss = F.cross_entropy(model(x), y)
            static_loss.backward()
            opt.step()
        last_loss[0] = static_loss
        train_fn = g_train.replay

    train_times = time_loop(torch, train_fn, a.warmup, a.steps, cuda)
    train_total = sum(train_times)
    if cuda:  # also without a synchronisation after every step
        train_total = min(train_total, time_loop_total(torch, train_fn, 0, a.steps, cuda))
    final_loss = float(last_loss[0].detach())
    if not math.isfinite(final_loss):
        die(f"training loss is {final_loss} after {a.warmup + a.steps} steps (try a smaller --lr)")

    # ---- inference ----
    model.eval()
    out_holder = [None]

    def infer_step():
        with torch.no_grad():
            out_holder[0] = model(x)

    infer_fn = infer_step
    if use_graphs:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(max(3, a.warmup)):
                infer_step()
        torch.cuda.current_stream().wait_stream(s)
        g_infer = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(g_infer):
            out_holder[0] = model(x)
        infer_fn = g_infer.replay

    infer_times = time_loop(torch, infer_fn, a.warmup, a.steps, cuda)
    infer_total = sum(infer_times)
    if cuda:
        infer_total = min(infer_total, time_loop_total(torch, infer_fn, 0, a.steps, cuda))

    train_ips = n * a.steps / train_total
    infer_ips = n * a.steps / infer_total
    gflop = fwd_flops / 1e9
    res = {
        "backend": "torch-cuda" if cuda else "torch-cpu",
        "device": torch.cuda.get_device_name(device) if cuda else cpu_model_name(),
        "torch": torch.__version__,
        "threads": a.threads,
        "arch": a.arch,
        "policy": cfg.get("policy"),
        "budget": cfg.get("budget"),
        "w": cfg["w"],
        "d": cfg["d"],
        "depths": cfg["depths"],
        "widths": cfg["widths"],
        "classes": a.classes,
        "stem": a.stem,
        "head": a.head,
        "params": params,
        "params_cilscale": cfg["params"],
        "batch": n,
        "input": list(a.in_shape),
        "warmup": a.warmup,
        "steps": a.steps,
        "dtype": "float32",
        "memory_format": a.memory_format,
        "cuda_graphs": use_graphs,
        "cudnn_benchmark": bool(cuda),
        "tf32_conv": bool(torch.backends.cudnn.allow_tf32) if cuda else False,
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if cuda else False,
        "optimizer": {"name": "sgd", "lr": a.lr, "momentum": 0.9, "weight_decay": 5e-4, "foreach": cuda},
        "train_img_per_s": round(train_ips, 3),
        "infer_img_per_s": round(infer_ips, 3),
        # batch / median step time: steadier than the mean on a shared machine
        "train_img_per_s_median_step": round(n / statistics.median(train_times), 3),
        "infer_img_per_s_median_step": round(n / statistics.median(infer_times), 3),
        "train_step_ms_median": round(1e3 * statistics.median(train_times), 3),
        "train_step_ms_min": round(1e3 * min(train_times), 3),
        "infer_step_ms_median": round(1e3 * statistics.median(infer_times), 3),
        "infer_step_ms_min": round(1e3 * min(infer_times), 3),
        "fwd_gflop_per_img": round(gflop, 6),
        "train_gflops": round(3 * gflop * train_ips, 3),
        "infer_gflops": round(gflop * infer_ips, 3),
        "final_loss": round(final_loss, 4),
        "cilscale_command": " ".join(scale_cmd),
    }
    if a.json:
        print(json.dumps(res))
        return 0

    rows = [
        ("backend", res["backend"]),
        ("device", res["device"]),
        ("torch", res["torch"]),
        ("threads", res["threads"]),
        ("network", f"{a.arch} ({net_name(a, cfg)}): w {cfg['w']}, depths {cfg['depths']}, "
                    f"widths {cfg['widths']}"),
        ("config", f"{a.classes} classes, {a.stem} stem, {a.head} head"),
        ("params", f"{params:,} (cilscale {cfg['params']:,}: equal)"),
        ("batch / input", f"{n} x {a.input}, float32"),
        ("warmup / steps", f"{a.warmup} / {a.steps}" + (" (CUDA graphs)" if use_graphs else "")),
        ("fwd GFLOP/img", f"{gflop:.4f} (conv + linear MACs x 2)"),
        ("train", f"{train_ips:10.1f} img/s  {res['train_gflops']:8.2f} GFLOP/s  "
                  f"step median {res['train_step_ms_median']:.1f} ms"),
        ("inference", f"{infer_ips:10.1f} img/s  {res['infer_gflops']:8.2f} GFLOP/s  "
                      f"step median {res['infer_step_ms_median']:.1f} ms"),
        ("final loss", f"{final_loss:.4f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
