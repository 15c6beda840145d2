"""Inference: translate paintings at any resolution with any method's trained or released translator.

Translators are fully convolutional with two stride-2 stages, so inputs are reflect-padded to a multiple of 4 and
cropped back. Images larger than ``tile`` pixels on a side are translated in overlapping tiles blended with
linear ramps, so memory stays bounded whatever the image size.

Outputs are PNGs named after their input's stem; inputs that share a stem (``a.jpg``, ``a.png``) are named after
their whole file name instead (``a.jpg.png``, ``a.png.png``), so every input gets its own output. Unreadable files
and images under ``MIN_SIDE`` px a side (unless resized with ``size``) are skipped, named and counted.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from . import methods
from .config import from_dict
from .data.images import ImageReport, UnreadableImage, load_rgb, scan_images, to_image, to_tensor
from .errors import CheckpointError, ConfigError, DataError, NotAGenerator, UserError
from .train.checkpoint import load_checkpoint

MIN_TILE = 64  # smaller tiles leave no room for the blending overlap
# the smallest side a translator takes: padded to a multiple of 4 (8 px), the generator's 3-px reflection pad
# and its 1-px pads after two stride-2 stages (2 px left) still fit; 4 px would leave 1 px there, too few
MIN_SIDE = 5


def load_translator(source, device="cpu", method: str | None = None) -> torch.nn.Module:
    """A painting -> photo translator, in eval mode, from
    - a checkpoint of this kit (``last.pt``, ``previous.pt``, ``best.pt``): its method and architecture come
      from the config inside;
    - a generator file in a method's authors' layout (``--method``, default the CycleGAN layout that CycleGAN's
      and the Art2Real authors' releases use), or a state_dict given as a dict."""
    name = str(source)[:200]
    state = load_checkpoint(source) if isinstance(source, (str, Path)) else source
    if not isinstance(state, dict):
        raise CheckpointError(f"{name} holds a {type(state).__name__}, not a checkpoint or a state_dict")
    if "translator" in state and "config" in state:
        cfg = from_dict(state["config"])
        net = methods.get(cfg.method).build_translator(cfg)
        try:
            net.load_state_dict(state["translator"])
        except RuntimeError as e:
            raise CheckpointError(f"{name}: its translator does not fit its own config ({str(e).splitlines()[0]})"
                                  ) from None
    else:
        if "G" in state and isinstance(state["G"], dict):  # a checkpoint of the first release: G was the generator
            state = state["G"]
        try:
            net = methods.get(method or "cyclegan").load_official(state, name)
        except KeyError as e:
            raise ConfigError(e.args[0]) from None
        except UserError:  # the method's loader already said what is wrong with the file
            raise
        except (ValueError, RuntimeError, AttributeError) as e:  # not a generator of that layout
            layout = method or "cyclegan"
            raise NotAGenerator(f"{name} is not a {layout} generator file: {e}"
                                  + ("" if method else " (--method names another layout)")) from None
    return net.to(device).eval()


@torch.no_grad()
def translate_tensor(G: torch.nn.Module, x: torch.Tensor, tile: int = 1024, overlap: int | None = None
                     ) -> torch.Tensor:
    """x: (1, 3, H, W) in [-1, 1] -> G(x) of the same size; tiles overlap by ``overlap`` pixels (default: a
    quarter of the tile, at most 64)."""
    overlap = min(64, tile // 4) if overlap is None else overlap
    if tile < 16 or 2 * overlap >= tile:
        raise ValueError(f"tile {tile} with overlap {overlap}: tiles must be >= 16 px and wider than twice the "
                         "overlap")
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


def translate_image(G: torch.nn.Module, image: Image.Image, size: int | None = None, tile: int = 1024,
                    key: str | None = None) -> Image.Image:
    """Translate one image at its own resolution (or resized to ``size`` x ``size``). ``key`` (the file name)
    reseeds a stochastic translator, so an image always gets the same sample."""
    if size:
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    if key is not None and hasattr(G, "reseed"):
        G.reseed(key)
    device = next(G.parameters()).device
    return to_image(translate_tensor(G, to_tensor(image).unsqueeze(0).to(device), tile)[0])


def output_names(paths: list[Path]) -> dict[Path, str]:
    """{input: output file name}: ``<stem>.png``, or ``<file name>.png`` for inputs sharing a stem, then a
    ``-2``, ``-3``... suffix for anything still shared."""
    stems = [p.stem for p in paths]
    names = {p: f"{p.stem if stems.count(p.stem) == 1 else p.name}.png" for p in paths}
    seen: dict[str, int] = {}
    for p in paths:
        name = names[p]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            names[p] = f"{name[:-4]}-{seen[name]}.png"
    return names


def check_options(tile: int, size: int | None) -> None:
    """Refuse a tile or resize option the generator cannot work with, before anything is loaded or written."""
    if tile < MIN_TILE:
        raise ConfigError(f"tile {tile} is too small: tiles must be at least {MIN_TILE} px")
    if size is not None and size < MIN_SIDE:
        raise ConfigError(f"size {size} is too small: images are resized to SIZE x SIZE, at least {MIN_SIDE} px")


class Written(list):
    """The translations written; ``skipped`` lists [(input, why)] of the inputs left out."""

    def __init__(self, paths=(), skipped=()):
        super().__init__(paths)
        self.skipped = list(skipped)


def translation_inputs(source: Path, size: int | None = None) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(the readable images of a file or folder, [(input, why)] of those that cannot be translated: unreadable,
    or under ``MIN_SIDE`` px a side without ``size``); refuses before any work when nothing can be."""
    if not source.exists():
        raise DataError(f"nothing to translate: {source} does not exist")
    if source.is_file():
        try:
            image = load_rgb(source)
        except UnreadableImage as e:
            raise DataError(f"cannot translate {e}") from None
        report = ImageReport(source.parent, good=[source])
        if min(image.size) < MIN_SIDE:
            report.smaller_than[source] = image.size
    else:
        report = scan_images(source, min_size=MIN_SIDE)
    why = f"px, too small to translate (under {MIN_SIDE} px a side; --size resizes it)"
    small = [] if size else [(p, f"{w}x{h} {why}") for p, (w, h) in report.smaller_than.items()]
    if small:
        warnings.warn(f"{len(small)} image(s) too small to translate skipped ("
                      + "; ".join(f"{p.name}: {why}" for p, why in small[:10]) + ")", stacklevel=2)
    if len(small) == len(report.good):
        problems = "; ".join(f"{p.name}: {why}" for p, why in (report.bad + small)[:5])
        raise DataError(f"nothing to translate in {source}: no readable image of at least {MIN_SIDE} px a side"
                        + (f" ({problems})" if problems else ""))
    return report.good, report.bad + small


def translate_folder(G: torch.nn.Module, source: str | Path, target: str | Path, size: int | None = None,
                     tile: int = 1024, progress: bool = True, keep_inputs: bool = True) -> Written:
    """Translate a file or every readable image of a folder into ``target`` (see the module docstring for the
    names), with a copy of each input in ``target/inputs/`` for comparison. Unreadable files and images too
    small for the generator are skipped, named in a warning and listed in the result's ``skipped``; everything
    is checked before the first output is written."""
    source, target = Path(source), Path(target)
    check_options(tile, size)
    folder = source if source.is_dir() else source.parent
    if target.resolve() == folder.resolve() or (source.is_dir() and target.resolve().is_relative_to(source.resolve())):
        raise ConfigError(f"the output folder {target} is inside the input {source}: outputs would overwrite or "
                          "join the inputs; choose another output folder")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"the output {target} is a file; give a folder (it is created when missing)")
    readable, skipped = translation_inputs(source, size)
    names = output_names(readable)  # over every readable input, so names do not depend on what is skipped
    left_out = {p for p, _ in skipped}
    target.mkdir(parents=True, exist_ok=True)
    written = Written(skipped=skipped)
    for path in tqdm([p for p in readable if p not in left_out], desc="translate", disable=not progress):
        try:
            image = load_rgb(path)
        except UnreadableImage as e:  # became unreadable since the scan
            warnings.warn(f"skipping {e}", stacklevel=2)
            written.skipped.append((path, str(e).split(": ", 1)[-1]))
            continue
        out = target / names[path]
        translate_image(G, image, size, tile, key=path.name).save(out)
        if keep_inputs:
            (target / "inputs").mkdir(exist_ok=True)
            if size:
                image.resize((size, size), Image.Resampling.BICUBIC).save(target / "inputs" / names[path])
            else:
                shutil.copyfile(path, target / "inputs" / path.name)
        written.append(out)
    return written
