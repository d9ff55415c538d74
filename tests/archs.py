"""Reference architectures for tests, written out because torchvision does not load with the CPU
torch 2.13 wheel. Layer shapes follow torchvision's definitions, so counts can be compared with
torchvision's published `_ops` figures; weights are random (no download).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from convcost.ir.model import Conv, MatMul, Model
from convcost.ir.shapes import make_conv


def conv_bn(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1, act: bool = True,
            dilation: int = 1) -> nn.Sequential:
    pad = (k - 1) // 2 * dilation
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, pad, dilation=dilation, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


# --- ResNet (torchvision.models.resnet) -------------------------------------------------------

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, width_per_group: int = 64,
                 dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = self.downsample(x) if self.downsample is not None else x
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, groups: int = 1, width_per_group: int = 64,
                 dilation: int = 1) -> None:
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, dilation, dilation=dilation, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = self.downsample(x) if self.downsample is not None else x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int], num_classes: int = 1000,
                 groups: int = 1, width_per_group: int = 64) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(self.inplanes, planes, stride, groups, width_per_group))
                self.inplanes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18() -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2])


def resnet50() -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3])


def resnext50_32x4d() -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4)


# --- MobileNet v2 (torchvision.models.mobilenetv2) ------------------------------------------

class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(cin, hidden, 1))
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000, width: float = 1.0) -> None:
        super().__init__()
        cin = int(32 * width)
        features: list[nn.Module] = [conv_bn(3, cin, 3, 2)]
        for t, c, n, s in self.SETTINGS:
            cout = int(c * width)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2() -> MobileNetV2:
    return MobileNetV2()


# --- ShuffleNet v2 (torchvision.models.shufflenetv2, x1.0) ----------------------------------

def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        branch = cout // 2
        self.branch1 = nn.Sequential()
        if stride > 1:
            self.branch1 = nn.Sequential(conv_bn(cin, cin, 3, stride, groups=cin, act=False), conv_bn(cin, branch, 1))
        bin_ = cin if stride > 1 else branch
        self.branch2 = nn.Sequential(conv_bn(bin_, branch, 1), conv_bn(branch, branch, 3, stride, groups=branch,
                                                                        act=False), conv_bn(branch, branch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, repeats: tuple[int, ...] = (4, 8, 4), channels: tuple[int, ...] = (24, 116, 232, 464, 1024),
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = conv_bn(3, channels[0], 3, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = channels[0]
        stages = []
        for n, cout in zip(repeats, channels[1:4], strict=True):
            blocks = [ShuffleBlock(cin, cout, 2)] + [ShuffleBlock(cout, cout, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stage2, self.stage3, self.stage4 = stages
        self.conv5 = conv_bn(cin, channels[-1], 1)
        self.fc = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean([2, 3]))


def shufflenet_v2_x1_0() -> ShuffleNetV2:
    return ShuffleNetV2()


# --- VGG-16 (torchvision.models.vgg16, no BN) ------------------------------------------------

class VGG16(nn.Module):
    CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(v, int)
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(512 * 49, 4096), nn.ReLU(True), nn.Linear(4096, 4096),
                                        nn.ReLU(True), nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# --- Small models with unusual convs -----------------------------------------------------------

class Audio1d(nn.Module):
    """1-D convs (a small keyword-spotting / wav2letter-style net), grouped and dilated."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(40, 64, 5, stride=2, padding=2)
        self.conv2 = nn.Conv1d(64, 64, 3, padding=2, dilation=2, groups=4)
        self.conv3 = nn.Conv1d(64, 128, 1)
        self.fc = nn.Linear(128, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x))))))
        return self.fc(x.mean(-1))


class Video3d(nn.Module):
    """3-D convs, R(2+1)D style: a (1,3,3) spatial conv then a (3,1,1) temporal conv, plus a full 3x3x3."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 16, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False)
        self.spatial = nn.Conv3d(16, 32, (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.temporal = nn.Conv3d(32, 32, (3, 1, 1), padding=(1, 0, 0), bias=False)
        self.full = nn.Conv3d(32, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.full(torch.relu(self.temporal(self.spatial(torch.relu(self.stem(x))))))
        return self.fc(x.mean((2, 3, 4)))


class GroupedDilated(nn.Module):
    """Grouped (ResNeXt-style) and dilated (DeepLab-style atrous) 2-D convs, alone and combined."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 32, 3, 2)
        self.grouped = conv_bn(32, 64, 3, groups=8)
        self.atrous = conv_bn(64, 64, 3, dilation=2)
        self.atrous_grouped = conv_bn(64, 64, 3, groups=4, dilation=3)
        self.block = Bottleneck(64, 16, stride=2, groups=4, width_per_group=16, dilation=2)
        self.head = nn.Conv2d(64, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.atrous_grouped(self.atrous(self.grouped(self.stem(x))))))


class SharedConv(nn.Module):
    """Weight sharing: one conv applied twice (as in recurrent refinement or siamese branches)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.block = nn.Sequential()
        self.block.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.head = nn.Conv2d(16, 4, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = torch.relu(self.block.conv(x))
        x = torch.relu(self.block.conv(x))
        return self.head(x)


class Decoder(nn.Module):
    """ConvTranspose upsampling (1-D, 2-D), grouped and with output_padding, as in segmentation decoders."""

    def __init__(self) -> None:
        super().__init__()
        self.up1 = nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1)
        self.up2 = nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.up3 = nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, dilation=2, bias=False)
        self.head = nn.Conv2d(8, 3, 3, padding=2, dilation=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.up3(torch.relu(self.up2(torch.relu(self.up1(x))))))


# --- ConvNeXt-tiny (torchvision.models.convnext) ----------------------------------------------

class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of an NCHW tensor (permute to NHWC and back), as torchvision's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * 1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(nn.functional.gelu(self.pwconv1(self.norm(y))))
        return x + self.layer_scale * y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, depths: tuple[int, ...] = (3, 3, 9, 3), dims: tuple[int, ...] = (96, 192, 384, 768),
                 num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))]
        for i, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            layers.append(nn.Sequential(*[CNBlock(dim) for _ in range(depth)]))
            if i + 1 < len(dims):
                layers.append(nn.Sequential(LayerNorm2d(dim, eps=1e-6), nn.Conv2d(dim, dims[i + 1], 2, 2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1),
                                        nn.Linear(dims[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def convnext_tiny() -> ConvNeXt:
    return ConvNeXt()


# --- AlexNet (torchvision.models.alexnet) ------------------------------------------------------

class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(256 * 36, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Linear(4096, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# --- SqueezeNet 1.0 (torchvision.models.squeezenet1_0) -----------------------------------------

class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.expand1x1(x)), torch.relu(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 7, 2), nn.ReLU(inplace=True), pool(),
            Fire(96, 16, 64, 64), Fire(128, 16, 64, 64), Fire(128, 32, 128, 128), pool(),
            Fire(256, 32, 128, 128), Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256),
            pool(), Fire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, num_classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


# --- MobileNet v3 large and EfficientNet-B0 (inverted residuals with squeeze-excitation) ------

def make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class SqueezeExcite(nn.Module):
    """Global pool, 1x1 conv down, 1x1 conv up, gate: the convs run on a 1x1 map."""

    def __init__(self, channels: int, squeeze: int, act: type[nn.Module], gate: type[nn.Module]) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act, self.gate = act(), gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class MBConv(nn.Module):
    """Expand 1x1, depthwise k x k, optional SE, project 1x1 (MobileNet v3 / EfficientNet block)."""

    def __init__(self, cin: int, k: int, expanded: int, cout: int, stride: int, act: type[nn.Module],
                 se_squeeze: int | None, gate: type[nn.Module] = nn.Hardsigmoid) -> None:
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expanded != cin:
            layers += [nn.Conv2d(cin, expanded, 1, bias=False), nn.BatchNorm2d(expanded), act()]
        layers += [nn.Conv2d(expanded, expanded, k, stride, (k - 1) // 2, groups=expanded, bias=False),
                   nn.BatchNorm2d(expanded), act()]
        if se_squeeze:
            layers.append(SqueezeExcite(expanded, se_squeeze, nn.ReLU if act is nn.Hardswish else act, gate))
        layers += [nn.Conv2d(expanded, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res else self.block(x)


class MobileNetV3(nn.Module):
    """MobileNetV3 as torchvision builds it: a hardswish stem, inverted residuals (SE where CONF says),
    a 1x1 conv to LAST channels, then a HIDDEN-wide classifier. Subclasses give the configuration."""

    #: (in, kernel, expanded, out, SE, activation, stride), torchvision's `_mobilenet_v3_conf`.
    CONF: tuple[tuple[int, int, int, int, bool, str, int], ...] = ()
    LAST, HIDDEN, DROPOUT = 960, 1280, 0.2

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish()]
        for cin, k, exp, cout, se, act, s in self.CONF:
            layers.append(MBConv(cin, k, exp, cout, s, nn.Hardswish if act == "HS" else nn.ReLU,
                                 make_divisible(exp // 4) if se else None))
        last = self.CONF[-1][3]
        layers += [nn.Conv2d(last, self.LAST, 1, bias=False), nn.BatchNorm2d(self.LAST), nn.Hardswish()]
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Linear(self.LAST, self.HIDDEN), nn.Hardswish()]
        if self.DROPOUT:
            head.append(nn.Dropout(self.DROPOUT))
        self.classifier = nn.Sequential(*head, nn.Linear(self.HIDDEN, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class MobileNetV3Large(MobileNetV3):
    CONF = ((16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2), (24, 3, 72, 24, False, "RE", 1),
            (24, 5, 72, 40, True, "RE", 2), (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
            (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
            (80, 3, 184, 80, False, "HS", 1), (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
            (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1), (160, 5, 960, 160, True, "HS", 1))


class EfficientNetB0(nn.Module):
    #: (expand ratio, kernel, stride, in, out, repeats), torchvision's `_efficientnet_conf` for B0.
    CONF = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
            (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.SiLU()]
        for t, k, s, cin, cout, n in self.CONF:
            for i in range(n):
                c = cin if i == 0 else cout
                layers.append(MBConv(c, k, c * t, cout, s if i == 0 else 1, nn.SiLU, max(1, c // 4), nn.Sigmoid))
        layers += [nn.Conv2d(320, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v3_large() -> MobileNetV3Large:
    return MobileNetV3Large()


def efficientnet_b0() -> EfficientNetB0:
    return EfficientNetB0()


# --- DenseNet-121 (torchvision.models.densenet121) ---------------------------------------------

class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int = 32, bn_size: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(torch.relu(self.norm2(self.conv1(torch.relu(self.norm1(x))))))
        return torch.cat([x, out], 1)


class DenseNet121(nn.Module):
    def __init__(self, blocks: tuple[int, ...] = (6, 12, 24, 16), growth: int = 32, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                   nn.MaxPool2d(3, 2, 1)]
        c = 64
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(DenseLayer(c, growth))
                c += growth
            if i < len(blocks) - 1:
                layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, c // 2, 1, bias=False),
                           nn.AvgPool2d(2, 2)]
                c //= 2
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


#: name -> (factory, input shape) for parametrized tests; ImageNet-size models use 224.
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "resnet18": (resnet18, (1, 3, 224, 224)),
    "resnet50": (resnet50, (1, 3, 224, 224)),
    "resnext50_32x4d": (resnext50_32x4d, (1, 3, 224, 224)),
    "mobilenet_v2": (mobilenet_v2, (1, 3, 224, 224)),
    "shufflenet_v2_x1_0": (shufflenet_v2_x1_0, (1, 3, 224, 224)),
    "vgg16": (VGG16, (1, 3, 224, 224)),
    "convnext_tiny": (convnext_tiny, (1, 3, 224, 224)),
    "efficientnet_b0": (efficientnet_b0, (1, 3, 224, 224)),
    "audio1d": (Audio1d, (2, 40, 101)),
    "video3d": (Video3d, (1, 3, 8, 56, 56)),
    "decoder": (Decoder, (1, 64, 14, 14)),
}

#: More torchvision architectures, kept apart so that tests parametrized over `MODELS` stay fast;
#: benchmarks use `ALL_MODELS`. Published torchvision `_ops` (GMACs at 224x224) in `PUBLISHED_GMACS`.
EXTRA_MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "alexnet": (AlexNet, (1, 3, 224, 224)),
    "squeezenet1_0": (SqueezeNet, (1, 3, 224, 224)),
    "mobilenet_v3_large": (mobilenet_v3_large, (1, 3, 224, 224)),
    "densenet121": (DenseNet121, (1, 3, 224, 224)),
}
ALL_MODELS = {**MODELS, **EXTRA_MODELS}
PUBLISHED_GMACS = {"alexnet": 0.714, "squeezenet1_0": 0.819, "mobilenet_v3_large": 0.217,
                   "efficientnet_b0": 0.386, "densenet121": 2.834}


class TiedConvs(nn.Module):
    """Two convs sharing one weight (`b.weight = a.weight`): named after the first owner, counted once."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def flop_counter_macs(model: nn.Module, x: torch.Tensor) -> int:
    """The model's MACs as torch's own FlopCounterMode counts them (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops()) // 2


def conv_hook_macs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Per-conv MACs counted independently with forward hooks (torchvision's `_ops` method).

    Conv: out.numel() * C_in/g * prod(k). ConvTranspose: in.numel() * C_out/g * prod(k).
    A module called twice has its MACs summed.
    """
    counts: dict[str, int] = {}
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.modules.conv._ConvNd):
            def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor, name: str = name) -> None:
                assert isinstance(m, nn.modules.conv._ConvNd)
                k = 1
                for v in m.kernel_size:
                    k *= v
                if m.transposed:
                    macs = inp[0].numel() * (m.out_channels // m.groups) * k
                else:
                    macs = out.numel() * (m.in_channels // m.groups) * k
                counts[name] = counts.get(name, 0) + macs
            handles.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return counts


def module_convs(model: nn.Module, x: torch.Tensor) -> list[Conv]:
    """The model's convs as convcost `Conv`s with weight loaders, shapes taken from a forward pass.

    Stands in for the ONNX/TorchScript loaders where a test needs convs that carry weights.
    """
    return to_model(model, tuple(x.shape), weights=True).convs


def to_model(module: nn.Module, input_shape: tuple[int, ...], name: str = "model", weights: bool = False) -> Model:
    """A convcost `Model` of `module`'s convs and Linears, in execution order, read by forward hooks.

    Shapes come from torch itself (the hook sees the real tensors), so this is independent of every
    convcost loader; benchmarks and tests use it for architectures with no spec file.
    """
    convs: list[Conv] = []
    matmuls: list[MatMul] = []
    handles = []
    for mod_name, mod in module.named_modules():
        if isinstance(mod, nn.modules.conv._ConvNd):
            def conv_hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor, n: str = mod_name) -> None:
                assert isinstance(m, nn.modules.conv._ConvNd) and isinstance(m.padding, tuple)
                pads = tuple(int(p) for p in m.padding)
                conv = make_conv(
                    name=n, op="ConvTranspose" if m.transposed else "Conv", input_shape=tuple(inp[0].shape),
                    out_channels=m.out_channels, kernel=m.kernel_size, stride=m.stride, padding=pads + pads,
                    dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
                    output_padding=m.output_padding if m.transposed else None)
                assert conv.output_shape == tuple(out.shape), (n, conv.output_shape, tuple(out.shape))
                if weights:
                    kernel = m.weight.detach().numpy().copy()
                    conv = conv.with_changes(weight=lambda: kernel)
                convs.append(conv)
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            def linear_hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor, n: str = mod_name) -> None:
                assert isinstance(m, nn.Linear)
                rows = inp[0].numel() // m.in_features
                matmuls.append(MatMul(n, "Linear", batch=rows, m=1, k=m.in_features, n=m.out_features,
                                      params=m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)))
            handles.append(mod.register_forward_hook(linear_hook))
    with torch.no_grad():
        module.eval()(torch.zeros(input_shape))
    for h in handles:
        h.remove()
    return Model(name=name, format="pytorch", source=f"tests/archs.py:{name}", inputs={"input": input_shape},
                 convs=convs, matmuls=matmuls)
