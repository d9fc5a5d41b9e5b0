"""The ArcFace ResNet-100 the production default uses, for timing when its weights are absent.

If ``<model_dir>/arcfaceresnet100-8.onnx`` (the ONNX Model Zoo file the fetch script installs) is
present, the benchmark times that. Otherwise it builds the same network, LResNet100E-IR of
insightface (Deng et al. 2019), with random weights and exports it to ONNX once:

- input ``data`` (1, 3, 112, 112) float32 RGB in 0-255 (batch fixed at 1 like the zoo file, so the
  embedder runs it face by face as it runs the real one), normalised inside the graph as
  ``(x - 127.5) * 0.0078125``; output ``fc1`` (1, 512);
- stem: conv 3x3/1 64, BN, PReLU;
- four stages of improved-residual units (BN, conv 3x3, BN, PReLU, conv 3x3 with the stage's
  stride, BN; shortcut conv 1x1 + BN where the shape changes) with 3, 13, 30 and 3 units and
  64, 128, 256, 512 channels, each stage halving the resolution to 7x7;
- head "E": BN, dropout, FC 25088 -> 512, BN1d.

The cost of a network is set by its layers and their shapes, not by the values of its weights, so
timing this file times the real model; its embeddings mean nothing, and the file is kept outside
git and outside the model directory (``~/.cache/face-blur/bench/``) so it can never be mistaken
for the real model. Building it needs PyTorch (CPU wheel, the ``bench`` extra), only here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ZOO_FILE = "arcfaceresnet100-8.onnx"
CACHE_DIR = Path(os.environ.get("FACE_BLUR_BENCH_CACHE", os.path.expanduser("~/.cache/face-blur/bench")))
RANDOM_FILE = "arcface-r100-architecture-random.onnx"
STAGES = (3, 13, 30, 3)
CHANNELS = (64, 128, 256, 512)
REAL_LABEL = "real weights (ONNX Model Zoo arcfaceresnet100-8)"
RANDOM_LABEL = "architecture-equivalent (random weights)"


@dataclass(frozen=True)
class R100Model:
    """Where the R100 file is and what it is; ``path`` None when it could not be had (``label`` says why)."""

    path: Path | None
    label: str
    random_weights: bool


def locate_r100(model_dir: Path | None, cache_dir: Path = CACHE_DIR, build: bool = True) -> R100Model:
    """The real zoo file if ``model_dir`` holds it, else the cached random-weight twin (built once)."""
    if model_dir is not None and (Path(model_dir) / ZOO_FILE).is_file():
        return R100Model(Path(model_dir) / ZOO_FILE, REAL_LABEL, False)
    target = Path(cache_dir) / RANDOM_FILE
    if target.is_file():
        return R100Model(target, RANDOM_LABEL, True)
    if not build:
        return R100Model(None, "not built (run without --quick once, or with torch installed)", True)
    try:
        import torch  # noqa: F401
    except ImportError:
        return R100Model(None, "not measured: PyTorch is not installed (pip install torch, CPU wheel)", True)
    build_r100_onnx(target)
    return R100Model(target, RANDOM_LABEL, True)


def _network():
    import torch
    from torch import nn

    class IRUnit(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.BatchNorm2d(cin, eps=2e-5),
                nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
                nn.BatchNorm2d(cout, eps=2e-5),
                nn.PReLU(cout),
                nn.Conv2d(cout, cout, 3, stride, 1, bias=False),
                nn.BatchNorm2d(cout, eps=2e-5),
            )
            self.shortcut = (
                nn.Identity() if cin == cout and stride == 1
                else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=2e-5))
            )

        def forward(self, x):
            return self.body(x) + self.shortcut(x)

    class LResNet100EIR(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64, eps=2e-5),
                                      nn.PReLU(64))
            units, cin = [], 64
            for n, cout in zip(STAGES, CHANNELS, strict=True):
                for i in range(n):
                    units.append(IRUnit(cin, cout, 2 if i == 0 else 1))
                    cin = cout
            self.stages = nn.Sequential(*units)
            self.head = nn.Sequential(nn.BatchNorm2d(512, eps=2e-5), nn.Dropout(0.4), nn.Flatten(),
                                      nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512, eps=2e-5))

        def forward(self, data):
            x = (data - 127.5) * 0.0078125
            return self.head(self.stages(self.stem(x)))

    torch.manual_seed(0)
    return LResNet100EIR().eval()


def parameter_count() -> int:
    """Weights in the network (about 65 million for LResNet100E-IR)."""
    return sum(p.numel() for p in _network().parameters())


def build_r100_onnx(target: Path) -> Path:
    """Export the random-weight network to ``target`` (batch 1), written atomically."""
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    net = _network()
    tmp = target.with_suffix(".tmp.onnx")
    log.info("building %s (LResNet100E-IR, random weights) with torch %s", target, torch.__version__)
    with torch.no_grad():
        torch.onnx.export(net, (torch.zeros(1, 3, 112, 112),), str(tmp), input_names=["data"],
                          output_names=["fc1"], opset_version=13, dynamo=False)
    os.replace(tmp, target)
    return target
