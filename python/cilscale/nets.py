"""The exact PyTorch module of a cilscale checkpoint.

    import cilscale.nets
    net = cilscale.nets.load_module("runs/fashion-mnist/state-4.safetensors")
    logits = net(net.normalize(images_uint8))   # model labels; net.class_order maps them to classes

What load_module builds, for any arch, width, depths, stem and head a run
trained (needs torch and numpy):
  * the layer structure and parameter names of torchvision's ResNet18,
    MobileNetV2 and ShuffleNetV2 (so state_dict keys match cilscale's names),
    every channel count read from the checkpoint's tensors, so any width or
    scaling convention loads;
  * stem "small" (3x3 stride-1 first conv, no max-pool) or "imagenet", from
    the metadata;
  * head "cosine" (LUCIR): CosineLinear, logits = sigma * cos(x, w); head
    "linear": nn.Linear;
  * last_relu = 0 (LUCIR): the ReLU (ReLU6 on MobileNetV2) right before the
    global pooling left out, as cilscale trained it;
  * no dropout in MobileNetV2's classifier (cilscale's graph has none):
    classifier.0 is Dropout(p=0).
The weights are loaded with load_state_dict(strict=True) and the module is
returned in eval mode.

bench/torch_reference.py builds the same architectures a second way, on
purpose: from `cilscale scale --json` (no checkpoint), untrained, with
torchvision's initialisation, to time training steps against cilscale's.
This module builds from a checkpoint's tensors and metadata, and is what the
test suite compares with cilscale's logits (tests/python_torch.py).

What loads into torchvision's own classes instead: torchvision.models.resnet18,
mobilenet_v2 and shufflenet_v2_x1_0 build the reference widths and depths, the
ImageNet stem and a linear head with ReLUs everywhere; a checkpoint loads into
them strictly only when it is exactly that network (cilscale with --width 1
--depth 1 --stem imagenet and a linear-head algorithm such as finetune, on 3
input channels). Any other width, depth, stem, input channel count, the cosine
head or the removed last ReLU needs this module.
"""
from .checkpoint import Checkpoint

__all__ = ["load_module", "build_module"]

_STAGES = {"resnet18": 4, "mobilenetv2": 7, "shufflenetv2": 3}
_MB_STRIDE0 = (1, 2, 2, 2, 1, 2, 1)


def _need(ck, key, override):
    if override is not None:
        return override
    v = ck.metadata.get(key)
    if v is None:
        raise ValueError("%s: the metadata has no %r (a checkpoint from before cilscale wrote it); pass %s=... "
                         "to load_module" % (ck.path, key, key))
    return v


def build_module(ck, stem=None, last_relu=None):
    """The torch module for Checkpoint ck, its weights loaded strictly, in eval mode.
    stem ("small"/"imagenet") and last_relu (True/False) override the metadata
    (for checkpoints written before it held them)."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    arch = _need(ck, "arch", None)
    if arch not in _STAGES:
        raise ValueError("%s: arch %r: this module knows %s" % (ck.path, arch, ", ".join(sorted(_STAGES))))
    stem = _need(ck, "stem", stem)
    if stem not in ("small", "imagenet"):
        raise ValueError("%s: stem %r: expected small or imagenet" % (ck.path, stem))
    if last_relu is None:
        last_relu = _need(ck, "last_relu", None) == "1"
    sd = ck.tensors
    depths = ck.list_meta("depths")
    if depths is None or len(depths) != _STAGES[arch]:
        raise ValueError("%s: depths %r: expected %d numbers for %s" % (ck.path, ck.metadata.get("depths"),
                                                                         _STAGES[arch], arch))

    def shape(name):
        if name not in sd:
            raise ValueError("%s: no tensor %s (the checkpoint is not a %s with depths %s)" %
                             (ck.path, name, arch, ck.metadata.get("depths")))
        return sd[name].shape

    def conv(prefix, stride, groups=1):
        o, i, kh, kw = shape(prefix + ".weight")
        return nn.Conv2d(i * groups, o, (kh, kw), stride, (kh - 1) // 2, groups=groups, bias=False)

    def bn(prefix):
        return nn.BatchNorm2d(shape(prefix + ".weight")[0])

    class CosineLinear(nn.Module):
        """LUCIR's classifier: sigma * normalize(x) . normalize(weight)^T (no bias)."""

        def __init__(self, in_f, out_f):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(out_f, in_f))
            self.sigma = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return self.sigma * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def head(prefix):
        k, f = shape(prefix + ".weight")
        if prefix + ".sigma" in sd:
            return CosineLinear(f, k)
        return nn.Linear(f, k)

    class BasicBlock(nn.Module):
        def __init__(self, p, stride, relu_out):
            super().__init__()
            self.conv1, self.bn1 = conv(p + ".conv1", stride), bn(p + ".bn1")
            self.conv2, self.bn2 = conv(p + ".conv2", 1), bn(p + ".bn2")
            self.downsample = (nn.Sequential(conv(p + ".downsample.0", stride), bn(p + ".downsample.1"))
                               if p + ".downsample.0.weight" in sd else None)
            self.relu_out = relu_out

        def forward(self, x):
            y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            y = y + (self.downsample(x) if self.downsample is not None else x)
            return F.relu(y) if self.relu_out else y

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = conv("conv1", 2 if stem == "imagenet" else 1)
            self.bn1 = bn("bn1")
            self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
            for s, d in enumerate(depths):
                last = s == len(depths) - 1
                setattr(self, "layer%d" % (s + 1), nn.Sequential(*[
                    BasicBlock("layer%d.%d" % (s + 1, b), 2 if s > 0 and b == 0 else 1,
                               last_relu or not (last and b == d - 1)) for b in range(d)]))
            self.fc = head("fc")

        def forward(self, x):
            x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(x.mean((2, 3)))

    def conv_bn_act(p, stride, groups=1, act=True):
        layers = [conv(p + ".0", stride, groups), bn(p + ".1")]
        if act:
            layers.append(nn.ReLU6())
        return nn.Sequential(*layers)

    class InvertedResidual(nn.Module):
        def __init__(self, p, stride):
            super().__init__()
            expand = p + ".conv.3.weight" in sd
            layers, i = [], 0
            if expand:
                layers.append(conv_bn_act("%s.conv.%d" % (p, i), 1))
                i += 1
            hidden = shape("%s.conv.%d.0.weight" % (p, i))[0]
            layers.append(conv_bn_act("%s.conv.%d" % (p, i), stride, groups=hidden))
            layers += [conv("%s.conv.%d" % (p, i + 1), 1), bn("%s.conv.%d" % (p, i + 2))]
            self.conv = nn.Sequential(*layers)
            cin = shape(("%s.conv.0.0.weight" % p))[1] * (1 if expand else hidden)
            self.residual = stride == 1 and cin == shape("%s.conv.%d.weight" % (p, i + 1))[0]

        def forward(self, x):
            return x + self.conv(x) if self.residual else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            feats = [conv_bn_act("features.0", 2 if stem == "imagenet" else 1)]
            f = 0
            for s, d in enumerate(depths):
                for b in range(d):
                    f += 1
                    feats.append(InvertedResidual("features.%d" % f, _MB_STRIDE0[s] if b == 0 else 1))
            feats.append(conv_bn_act("features.%d" % (f + 1), 1, act=last_relu))
            self.features = nn.Sequential(*feats)
            self.classifier = nn.Sequential(nn.Dropout(p=0.0), head("classifier.1"))

        def forward(self, x):
            return self.classifier(self.features(x).mean((2, 3)))

    def shuffle(x):
        n, c, h, w = x.shape
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)

    class ShuffleBlock(nn.Module):
        def __init__(self, p, stride):
            super().__init__()
            self.stride = stride
            if stride > 1:
                cin = shape(p + ".branch1.0.weight")[0]
                self.branch1 = nn.Sequential(conv(p + ".branch1.0", stride, cin), bn(p + ".branch1.1"),
                                             conv(p + ".branch1.2", 1), bn(p + ".branch1.3"), nn.ReLU())
            else:
                self.branch1 = nn.Sequential()
            half = shape(p + ".branch2.3.weight")[0]
            self.branch2 = nn.Sequential(conv(p + ".branch2.0", 1), bn(p + ".branch2.1"), nn.ReLU(),
                                         conv(p + ".branch2.3", stride, half), bn(p + ".branch2.4"),
                                         conv(p + ".branch2.5", 1), bn(p + ".branch2.6"), nn.ReLU())

        def forward(self, x):
            if self.stride == 1:
                x1, x2 = x.chunk(2, dim=1)
                return shuffle(torch.cat((x1, self.branch2(x2)), 1))
            return shuffle(torch.cat((self.branch1(x), self.branch2(x)), 1))

    class ShuffleNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Sequential(conv("conv1.0", 2 if stem == "imagenet" else 1), bn("conv1.1"), nn.ReLU())
            self.maxpool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
            for s, d in enumerate(depths):
                setattr(self, "stage%d" % (s + 2),
                        nn.Sequential(*[ShuffleBlock("stage%d.%d" % (s + 2, b), 2 if b == 0 else 1) for b in range(d)]))
            c5 = [conv("conv5.0", 1), bn("conv5.1")] + ([nn.ReLU()] if last_relu else [])
            self.conv5 = nn.Sequential(*c5)
            self.fc = head("fc")

        def forward(self, x):
            x = self.conv5(self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x))))))
            return self.fc(x.mean((2, 3)))

    net = {"resnet18": ResNet18, "mobilenetv2": MobileNetV2, "shufflenetv2": ShuffleNetV2}[arch]()
    state = {k: torch.from_numpy(v) for k, v in sd.items()}
    net.load_state_dict(state, strict=True)
    net.eval()

    # what the network expects, and what its outputs mean
    net.class_order = ck.class_order
    net.metadata = dict(ck.metadata)
    mean, std = ck.list_meta("mean"), ck.list_meta("std")
    channels = shape({"resnet18": "conv1.weight", "mobilenetv2": "features.0.0.weight",
                      "shufflenetv2": "conv1.0.weight"}[arch])[1]
    net.mean = [float(v) for v in mean] if mean else [0.0] * channels
    net.std = [float(v) if v else 1.0 for v in std] if std else [1.0] * channels

    def normalize(images):
        """uint8 (or 0..255) images N x C x H x W to the network's input: (p/255 - mean) / std."""
        x = torch.tensor(images, dtype=torch.float32)  # a copy: images may be read-only
        m = torch.tensor(net.mean, dtype=torch.float32).view(1, -1, 1, 1)
        s = torch.tensor(net.std, dtype=torch.float32).view(1, -1, 1, 1)
        return (x / 255.0 - m) / s

    net.normalize = normalize
    return net


def load_module(path, stem=None, last_relu=None):
    """The PyTorch module of the checkpoint at path (state-K.safetensors); see build_module."""
    return build_module(Checkpoint(path), stem=stem, last_relu=last_relu)

