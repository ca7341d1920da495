"""The judge: an independent classifier that reads a mini-world picture attribute by attribute.

It is a plain VGG-style CNN (max-pooling, no attention pooling, a different seed and data
stream from the CLIPs), trained on renders with *wide* variation to predict the object's
colour, shape and position and the background colour. It only ever sees renders, never a
CLIP or a generated image, so it cannot be tuned towards either model.

``score(images, prompts)`` compares its predictions with the attributes each prompt names;
``score_folder(folder)`` does the same for a folder of PNGs with their prompts.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import world

__all__ = ["ATTRIBUTES", "CLASSES", "Judge", "JudgeConfig", "train_judge", "load_judge", "save_judge", "readings", "score",
           "confidence", "confusions", "score_folder"]

ATTRIBUTES = ("colour", "shape", "position", "background")
CLASSES = {"colour": world.COLOURS, "shape": world.SHAPES, "position": world.POSITIONS, "background": world.COLOURS}
WEIGHTS_NAME = "judge.safetensors"


class Judge(nn.Module):
    """VGG-style CNN with one linear head per attribute; input: [0, 1] images (B, 3, 64, 64)."""

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 3 * width, 4 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(4, cout), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)  # -> (B, 4w, 4, 4)
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(4 * width * 16, 128), nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict({a: nn.Linear(128, len(CLASSES[a])) for a in ATTRIBUTES})

    def forward(self, images01: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute."""
        if images01.shape[-2:] != (world.SIZE, world.SIZE):
            images01 = F.interpolate(images01, size=(world.SIZE, world.SIZE), mode="bilinear", antialias=True)
        h = self.hidden(self.features(images01 * 2 - 1))
        return {a: head(h) for a, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images01: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predicted class index per attribute, ``(B,)`` each."""
        return {a: logits.argmax(-1) for a, logits in self.eval()(images01).items()}


@dataclass(frozen=True)
class JudgeConfig:
    """Recipe of the judge (different seed and wider variation than the CLIPs')."""

    steps: int = 800
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 1234
    width: int = 24
    variation: world.Variation = world.WIDE


def _targets(scenes: world.Scenes) -> dict[str, torch.Tensor]:
    return {"colour": scenes.colour, "shape": scenes.shape, "position": scenes.position, "background": scenes.background}


def train_judge(cfg: JudgeConfig = JudgeConfig(), progress: bool = True) -> Judge:
    """Train the judge from scratch on freshly drawn renders (half clean, half widely varied)."""
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    judge = Judge(cfg.width).train()
    g = torch.Generator().manual_seed(cfg.seed + 1)
    opt = torch.optim.AdamW(judge.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    bar = tqdm(range(cfg.steps), desc="train judge", disable=not progress)
    half = cfg.batch_size // 2
    for _ in bar:
        a, b = world.sample_scenes(half, g, world.CLEAN), world.sample_scenes(cfg.batch_size - half, g, cfg.variation)
        images = torch.cat([world.render(a), world.render(b)])
        targets = {k: torch.cat([v, _targets(b)[k]]) for k, v in _targets(a).items()}
        logits = judge(images)
        loss = sum(F.cross_entropy(logits[k], targets[k]) for k in ATTRIBUTES)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return judge.eval()


def save_judge(judge: Judge, path: Path) -> Path:
    """Write the judge's weights (fp16 safetensors, width in the metadata)."""
    from safetensors.torch import save_file

    width = judge.features[0].out_channels
    state = {k: v.half().contiguous() for k, v in judge.state_dict().items()}
    save_file(state, str(path), metadata={"width": str(width)})
    return Path(path)


def load_judge(path: Optional[Path] = None) -> Judge:
    """The shipped judge (or the one at ``path``), in fp32 eval mode."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path) if path is not None else Path(str(resources.files("clipag_plugin") / "mini" / "weights" / WEIGHTS_NAME))
    if not path.is_file():
        raise FileNotFoundError(
            f"judge weights {path} are missing; rebuild them with `python -m clipag_plugin.mini.build`"
        )
    with safe_open(str(path), "pt") as f:
        width = int((f.metadata() or {}).get("width", 24))
    judge = Judge(width)
    judge.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return judge.eval()


def _prompt_targets(prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    parsed = [world.parse_caption(p) for p in prompts]
    return {a: torch.tensor([CLASSES[a].index(p[a]) for p in parsed]) for a in ATTRIBUTES}


def readings(images01: torch.Tensor, prompts: Sequence[str],
             judge: Optional[Judge] = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The judge's predicted and the prompts' asked class index per attribute, ``(B,)`` each
    (indices into :data:`CLASSES`)."""
    if len(prompts) != len(images01):
        raise ValueError(f"got {len(images01)} images but {len(prompts)} prompts; pass one prompt per image")
    judge = load_judge() if judge is None else judge
    return judge.predict(images01.float().clamp(0, 1)), _prompt_targets(prompts)


def score(
    images01: torch.Tensor, prompts: Sequence[str], judge: Optional[Judge] = None
) -> dict[str, float]:
    """Per-attribute accuracy of ``images01`` (B, 3, H, W in [0, 1]) against their prompts.

    Returns accuracies for each attribute plus ``colour+shape`` (both right) and ``all``.
    """
    pred, wanted = readings(images01, prompts, judge)
    hits = {a: (pred[a] == t) for a, t in wanted.items()}
    out = {a: float(h.float().mean()) for a, h in hits.items()}
    out["colour+shape"] = float((hits["colour"] & hits["shape"]).float().mean())
    out["all"] = float(torch.stack(list(hits.values())).all(0).float().mean())
    return out


@torch.no_grad()
def confidence(images01: torch.Tensor, prompts: Sequence[str], judge: Optional[Judge] = None) -> float:
    """The judge's mean probability of the prompts' values, over images and the four attributes.

    A cleanliness figure: a clean render of the caption scores near 1; a picture that shows the
    right values only faintly, in speckle, scores lower even where :func:`score` counts it right.
    """
    if len(prompts) != len(images01):
        raise ValueError(f"got {len(images01)} images but {len(prompts)} prompts; pass one prompt per image")
    judge = load_judge() if judge is None else judge
    logits = judge.eval()(images01.float().clamp(0, 1))
    wanted = _prompt_targets(prompts)
    probs = [logits[a].softmax(-1).gather(1, wanted[a][:, None]).squeeze(1) for a in ATTRIBUTES]
    return float(torch.stack(probs).mean())


def confusions(
    images01: torch.Tensor, prompts: Sequence[str], judge: Optional[Judge] = None
) -> dict[str, dict[tuple[str, str], int]]:
    """The judge's misreadings per attribute: ``{attribute: {(asked, read): count}}``, most frequent first.

    Only wrong readings are counted (``score`` gives the accuracies); e.g. ``("yellow", "blue"): 7``
    under ``"colour"`` means seven pictures asked for a yellow object and were read as blue.
    """
    pred, wanted = readings(images01, prompts, judge)
    out: dict[str, dict[tuple[str, str], int]] = {}
    for a, targets in wanted.items():
        counts = Counter((CLASSES[a][w], CLASSES[a][r])
                         for w, r in zip(targets.tolist(), pred[a].tolist(), strict=True) if w != r)
        out[a] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def read_folder(folder: Path) -> tuple[torch.Tensor, list[str]]:
    """Images and prompts of a folder: ``*.png`` with ``prompts.json`` (file name -> prompt) or a
    sidecar ``<stem>.txt`` per image."""
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    pngs = sorted(folder.glob("*.png"))
    if not pngs:
        raise FileNotFoundError(f"{folder}: no .png images to judge")
    table = json.loads((folder / "prompts.json").read_text()) if (folder / "prompts.json").is_file() else {}
    images, prompts = [], []
    for png in pngs:
        txt = png.with_suffix(".txt")
        if png.name in table:
            prompts.append(table[png.name])
        elif txt.is_file():
            prompts.append(txt.read_text().strip())
        else:
            raise FileNotFoundError(
                f"{png}: no prompt found; add it to {folder / 'prompts.json'} ({{file name: prompt}}) or write {txt}"
            )
        array = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32) / 255.0
        images.append(torch.from_numpy(array).permute(2, 0, 1))
    sizes = {tuple(im.shape) for im in images}
    if len(sizes) > 1:
        images = [F.interpolate(im[None], size=(world.SIZE, world.SIZE), mode="bilinear", antialias=True)[0] for im in images]
    return torch.stack(images), prompts


def score_folder(folder: Path, judge: Optional[Judge] = None) -> dict[str, float]:
    """:func:`score` of every ``*.png`` in ``folder`` against its prompt (see :func:`read_folder`)."""
    images, prompts = read_folder(folder)
    return score(images, prompts, judge)
