"""Stand-in translation folders for demos and tests: simple image transforms of the paintings, NOT model outputs.

They exist so the study can be built, served and analysed where no Cycle-GAN, UNIT or DRIT translations exist
(the demo data). Every table made from them must say so; the notebook does.
"""
from __future__ import annotations

from pathlib import Path

from PIL import ImageEnhance, ImageFilter, ImageOps

from ..data.images import list_images, load_rgb
from ..errors import DataError
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


def resolve(path: str | Path) -> Path:
    """A path from a notebook parameter: relative paths start at the repository root, not the working folder."""
    from ..paths import repo_root

    path = Path(path)
    return path if path.is_absolute() else repo_root() / path


def prepare_study(study: str | Path, votes: str, paintings_dir: str | Path, art2real_dir: str,
                  competitor_dirs: dict[str, str], **build_options) -> tuple[Path, bool]:
    """The study folder for notebook 08: (folder, whether its translations are stand-ins).

    ``votes="existing"``: the folder must hold a study; nothing is built. ``votes="simulated"``: the study is
    (re)built there: with stand-ins of every method when ``art2real_dir`` is empty, else from the given
    folders, competitors with an empty folder left out. ``study=""`` means ``results/user_study``."""
    from ..paths import results_dir
    from .build import build_study
    from .manifest import MANIFEST

    if votes not in ("simulated", "existing"):
        raise ValueError(f"votes must be 'simulated' or 'existing', got {votes!r}")
    study_dir = resolve(study) if study else results_dir() / "user_study"
    if votes == "existing":
        if not (study_dir / MANIFEST).is_file():
            raise DataError(f"no study in {study_dir}: build one (`art2real study build`) and collect votes "
                                    "(`art2real study serve` or `import`), or set votes = 'simulated'")
        return study_dir, False
    paintings = resolve(paintings_dir)
    if not art2real_dir:
        folders = stand_in_translations(paintings, study_dir.with_name(study_dir.name + "_stand_ins"),
                                        (ART2REAL, *competitor_dirs))
        art2real, competitors, stand_in = folders.pop(ART2REAL), folders, True
    else:
        competitors = {name: resolve(d) for name, d in competitor_dirs.items() if d}
        if not competitors:
            raise ValueError("art2real_dir is given but no competitor folder is: give at least one (e.g. "
                             "cyclegan_dir), or leave art2real_dir empty for the stand-in demo")
        art2real, stand_in = resolve(art2real_dir), False
    build_study(study_dir, paintings, art2real, competitors, overwrite=True, **build_options)
    return study_dir, stand_in
