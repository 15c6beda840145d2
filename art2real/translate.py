"""Inference: translate paintings at any resolution with a trained or released generator.

The generator is fully convolutional with two stride-2 stages, so inputs are reflect-padded to a multiple of 4
and cropped back. Images larger than ``tile`` pixels on a side are translated in overlapping tiles blended with
linear ramps, so memory stays bounded whatever the image size.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from .data.images import load_rgb, scan_images, to_image, to_tensor
from .nn.networks import ResnetGenerator, clean_state_dict, load_generator_state
from .train.checkpoint import load_checkpoint


def infer_architecture(state: dict) -> tuple[int, int]:
    """(ngf, n_blocks) of a CycleGAN-layout generator state_dict."""
    state = clean_state_dict(state)
    if "model.1.weight" not in state:
        raise ValueError("not a CycleGAN ResNet generator state_dict (no 'model.1.weight')")
    ngf = state["model.1.weight"].shape[0]
    blocks = {k.split(".")[1] for k in state if ".conv_block." in k}
    return int(ngf), len(blocks)


def load_generator(source, device="cpu") -> ResnetGenerator:
    """A generator from a training checkpoint (``last.pt``, ``best_G.pt``), a plain state_dict file, or a dict."""
    state = load_checkpoint(source, "cpu") if isinstance(source, (str, Path)) else source
    if "G" in state and isinstance(state["G"], dict):
        state = state["G"]
    ngf, n_blocks = infer_architecture(state)
    net = load_generator_state(ResnetGenerator(ngf=ngf, n_blocks=n_blocks), state, str(source)[:200])
    return net.to(device).eval()


@torch.no_grad()
def translate_tensor(G: torch.nn.Module, x: torch.Tensor, tile: int = 1024, overlap: int = 64) -> torch.Tensor:
    """x: (1, 3, H, W) in [-1, 1] -> G(x) of the same size."""
    _, _, h, w = x.shape
    if max(h, w) <= tile:
        ph, pw = (-h) % 4, (-w) % 4
        padded = F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x
        return G(padded)[..., :h, :w]
    out = torch.zeros_like(x)
    weight = torch.zeros(1, 1, h, w, device=x.device)
    step = tile - overlap
    for top in range(0, max(h - overlap, 1), step):
        for left in range(0, max(w - overlap, 1), step):
            t, l = min(top, max(h - tile, 0)), min(left, max(w - tile, 0))
            patch = x[..., t:t + tile, l:l + tile]
            ramp = _ramp(patch.shape[-2], patch.shape[-1], overlap, x.device)
            out[..., t:t + tile, l:l + tile] += translate_tensor(G, patch, tile, overlap) * ramp
            weight[..., t:t + tile, l:l + tile] += ramp
    return out / weight


def _ramp(h: int, w: int, overlap: int, device) -> torch.Tensor:
    """Blending weights: 1 inside, falling linearly towards the tile border over ``overlap`` pixels."""
    def axis(n):
        r = torch.ones(n, device=device)
        k = min(overlap, n // 2)
        if k:
            edge = torch.linspace(1.0 / (k + 1), 1.0, k, device=device)
            r[:k], r[n - k:] = edge, edge.flip(0)
        return r
    return (axis(h)[:, None] * axis(w)[None, :])[None, None]


def translate_image(G: torch.nn.Module, image: Image.Image, size: int | None = None, tile: int = 1024) -> Image.Image:
    """Translate one image at its own resolution (or resized to ``size`` x ``size``)."""
    if size:
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    device = next(G.parameters()).device
    return to_image(translate_tensor(G, to_tensor(image).unsqueeze(0).to(device), tile)[0])


def translate_folder(G: torch.nn.Module, source: str | Path, target: str | Path, size: int | None = None,
                     tile: int = 1024, progress: bool = True, keep_inputs: bool = True) -> list[Path]:
    """Translate a file or every readable image of a folder; outputs go to ``target/<stem>.png`` and a copy of
    each input to ``target/inputs/`` for comparison. Unreadable files are skipped and listed in a warning."""
    source, target = Path(source), Path(target)
    if not source.exists():
        raise FileNotFoundError(f"nothing to translate: {source} does not exist")
    paths = [source] if source.is_file() else scan_images(source).good
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for path in tqdm(paths, desc="translate", disable=not progress):
        image = load_rgb(path)
        out = target / f"{path.stem}.png"
        translate_image(G, image, size, tile).save(out)
        if keep_inputs:
            (target / "inputs").mkdir(exist_ok=True)
            if size:
                image.resize((size, size), Image.Resampling.BICUBIC).save(target / "inputs" / f"{path.stem}.png")
            else:
                shutil.copyfile(path, target / "inputs" / path.name)
        written.append(out)
    return written
