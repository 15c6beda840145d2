"""Stand-in translation folders for demos and tests: simple image transforms of the paintings, NOT model outputs.

They exist so the study can be built, served and analysed where no Cycle-GAN, UNIT or DRIT translations exist
(the demo data). Every table made from them must say so; the notebook does.
"""
from __future__ import annotations

from pathlib import Path

from PIL import ImageEnhance, ImageFilter, ImageOps

from ..data.images import list_images, load_rgb
from .manifest import ART2REAL

STAND_IN_NOTE = "stand-in translations (image transforms of the paintings), not model outputs"

# name -> transform of the painting (PIL image -> PIL image)
TRANSFORMS = {
    ART2REAL: lambda im: ImageEnhance.Color(im.filter(ImageFilter.UnsharpMask(2, 80, 2))).enhance(0.85),
    "Cycle-GAN": lambda im: im.filter(ImageFilter.GaussianBlur(1.5)),
    "UNIT": lambda im: ImageOps.posterize(im, 3),
    "DRIT": lambda im: ImageEnhance.Contrast(ImageOps.solarize(im, 200)).enhance(1.3),
}


def stand_in_translations(paintings_dir: str | Path, out_dir: str | Path,
                          methods=tuple(TRANSFORMS)) -> dict[str, Path]:
    """Write ``<out_dir>/<method>/<painting stem>.png`` for each method; returns method -> folder."""
    out = {}
    paintings = list_images(paintings_dir)
    for method in methods:
        folder = Path(out_dir) / method.lower().replace("-", "")
        folder.mkdir(parents=True, exist_ok=True)
        for p in paintings:
            TRANSFORMS[method](load_rgb(p)).save(folder / f"{p.stem}.png", compress_level=1)
        out[method] = folder
    return out


def study_inputs(art2real_dir: str, competitor_dirs: dict[str, str], paintings_dir: str | Path,
                 scratch: str | Path) -> tuple[Path, dict[str, Path], bool]:
    """Translation folders for a study from notebook parameters: (Art2Real folder, competitor folders,
    whether they are stand-ins). An empty ``art2real_dir`` makes stand-ins of every method under ``scratch``;
    otherwise the competitors with an empty folder are left out. Relative paths start at the repository root."""
    from ..paths import repo_root

    def resolve(p) -> Path:
        p = Path(p)
        return p if p.is_absolute() else repo_root() / p

    if not art2real_dir:
        folders = stand_in_translations(resolve(paintings_dir), resolve(scratch), (ART2REAL, *competitor_dirs))
        art2real = folders.pop(ART2REAL)
        return art2real, folders, True
    competitors = {name: resolve(d) for name, d in competitor_dirs.items() if d}
    if not competitors:
        raise ValueError("art2real_dir is given but no competitor folder is: give at least one (e.g. cyclegan_dir), "
                         "or leave art2real_dir empty for the stand-in demo")
    return resolve(art2real_dir), competitors, False
