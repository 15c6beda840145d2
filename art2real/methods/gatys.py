"""Style-transferred reals: the paper's row that applies Gatys et al.'s style transfer to the real photos.

"We also show quantitative results of applying the style transfer approach from Gatys et al., with content
images taken from the realistic datasets and style images randomly sampled from the paintings, for each set"
(Sec. 4.1). Its FID against the real photos says how far a painting's style alone moves a photo from reality.

Nothing is trained: ``produce`` stylises every test photo (testB) with a painting drawn at random from trainA
(seeded by ``cfg.seed``), at ``cfg.data.image_size``, one PNG per photo named like a translation. Each image is
written atomically; a killed run resumes with the photos not written yet. ``.settings.json`` in the folder
records what made the images there: when the settings change (another feature network once VGG-19's weights are
cached, other iterations), the images are made again rather than mixed.
"""
from __future__ import annotations

import dataclasses
import json
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..config import pick_device
from ..data.images import load_rgb, scan_images, to_image, to_tensor
from ..data.registry import dataset_root
from ..errors import ConfigError, DataError
from ..io import atomic_path, write_json
from ..nn.style import DEFAULT_STYLE_WEIGHT, VGG19_LAYERS, feature_network, stylise
from . import register
from .base import Method

CONTENT_SPLIT, STYLE_SPLIT = "testB", "trainA"  # the real test photos; the paintings styles are drawn from
SETTINGS = ".settings.json"  # hidden: image scans skip it


@register
class StyleTransferredReals(Method):
    key, row = "gatys", "Style-transferred reals"
    trained = False
    translates_paintings = False

    @classmethod
    def preset_values(cls, preset: str) -> dict:
        # iterations per image; the presets' image sizes stay (smoke 32 px, demo and cpu 128 px, paper 256 px).
        # demo: the 14 demo photos in about 3 minutes on 2 CPU cores (benchmarks/bench_gatys.py; the result
        # hardly changes from 150 to 300 iterations); paper: the authors' 500 (the default)
        return {"smoke": {"gatys.iterations": 5}, "demo": {"gatys.iterations": 150},
                "cpu": {"gatys.iterations": 500}}.get(preset, {})

    @classmethod
    def check_config(cls, cfg) -> None:
        g = cfg.gatys
        if not g.style_layers:
            raise ConfigError("gatys.style_layers must name at least one VGG-19 layer, e.g. [conv1_1, conv2_1]")
        unknown = [n for n in (*g.style_layers, g.content_layer) if n not in VGG19_LAYERS]
        if unknown:
            raise ConfigError(f"gatys.style_layers / gatys.content_layer: unknown VGG-19 layer(s) "
                              f"{', '.join(unknown)}; choose among {', '.join(VGG19_LAYERS)}")

    @classmethod
    def produce(cls, cfg, target, progress: bool = True) -> dict:
        target = Path(target)
        device = pick_device(cfg.device)
        g = cfg.gatys
        net = feature_network(g.feature_network, device, g.pooling)
        beta = DEFAULT_STYLE_WEIGHT[net.key] if g.style_weight is None else g.style_weight
        pairs = plan(cfg)
        settings = {"feature_network": net.name, "gatys": {**dataclasses.asdict(g), "style_weight": beta},
                    "image_size": cfg.data.image_size, "seed": cfg.seed, "pairs": pairs}
        target.mkdir(parents=True, exist_ok=True)
        resume = (target / SETTINGS).exists() and json.loads((target / SETTINGS).read_text()) == _plain(settings)
        write_json(target / SETTINGS, settings)
        wanted = {pair["output"] for pair in pairs}
        for stale in target.glob("*.png"):  # outputs of photos no longer planned would join the row's FID
            if stale.name not in wanted:
                stale.unlink()
        todo = [pair for pair in pairs if not (resume and (target / pair["output"]).exists())]
        with _threads(g.cpu_threads if device.type == "cpu" else None):
            for pair in tqdm(todo, desc="style transfer", disable=not progress):
                _stylise_one(cfg, net, beta, pair, target / pair["output"], device)
        summary = (f"{net.substitute or 'Gatys et al. with ' + net.name}: {g.iterations} L-BFGS iterations from "
                   f"the {g.init} at {cfg.data.image_size} px; {CONTENT_SPLIT} photos styled by {STYLE_SPLIT} "
                   f"paintings drawn with seed {cfg.seed}")
        return {"summary": summary, "substitute": net.substitute, "images": len(pairs), **settings}


def _stylise_one(cfg, net, beta: float, pair: dict, out: Path, device) -> None:
    g, root, size = cfg.gatys, dataset_root(cfg.data.dataset), cfg.data.image_size
    content, style = (_load(root / pair[k], size, device) for k in ("content", "style"))
    # the noise start of an image depends on the seed and the photo only: a resumed run redoes it alike
    noise = torch.Generator().manual_seed(zlib.crc32(f"{cfg.seed}/{pair['content']}".encode()))
    result = stylise(net, content, style, content_layer=g.content_layer, style_layers=g.style_layers,
                     alpha=g.content_weight, beta=beta, iterations=g.iterations, init=g.init,
                     history=g.lbfgs_history, generator=noise)
    with atomic_path(out) as tmp:
        to_image(result.image[0]).save(tmp, format="PNG")


@contextmanager
def _threads(n: int | None):
    """torch's intra-op threads set to ``n`` inside the block (None: left alone)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def plan(cfg) -> list[dict]:
    """One entry per test photo: its file, the painting drawn as its style, the output's name."""
    from ..translate import output_names

    root = dataset_root(cfg.data.dataset)
    photos = scan_images(root / CONTENT_SPLIT).good[:cfg.data.max_images or None]
    paintings = scan_images(root / STYLE_SPLIT).good
    for split, found in ((CONTENT_SPLIT, photos), (STYLE_SPLIT, paintings)):
        if not found:
            raise DataError(f"style-transferred reals need images in {root / split} "
                            f"({CONTENT_SPLIT}: real photos, {STYLE_SPLIT}: paintings)")
    drawn = np.random.default_rng(cfg.seed).integers(len(paintings), size=len(photos))
    names = output_names(photos)
    return [{"content": f"{CONTENT_SPLIT}/{p.name}", "style": f"{STYLE_SPLIT}/{paintings[i].name}",
             "output": names[p]} for p, i in zip(photos, drawn)]


def _load(path: Path, size: int, device) -> torch.Tensor:
    image = load_rgb(path).resize((size, size), Image.Resampling.BICUBIC)
    return to_tensor(image)[None].to(device)


def _plain(obj):
    """As the settings read back from JSON (tuples become lists)."""
    return json.loads(json.dumps(obj, default=str))
