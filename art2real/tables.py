"""Tables 1 and 3 as DataFrames: one row per image set (real photos, paintings, each registered method in table
order, released generators), metric cells holding outcomes. Rows of runs over several seeds hold the mean, the
spread and the per-seed values; only :mod:`art2real.report` turns them into text.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import methods, report
from .config import Config, pick_device
from .data.registry import dataset_root, get_setting
from .io import write_json
from .outcomes import Measured, NotAvailable
from .pretrained import releases_for
from .runs import Run, release_translations, runs_of


@dataclass(frozen=True)
class ImageSet:
    """The images of one table row: a folder per seed, where they came from, or why there are none."""

    row: str
    folders: tuple[Path, ...] = ()
    source: str = ""
    in_paper: bool = True
    missing: NotAvailable | None = None
    seeds: tuple[int, ...] = field(default=())
    of_paintings: bool = True  # one image per test painting (False: style-transferred photos)
    substitute: str = ""  # what stood in for the paper's network, when something did (source.json "substitute")

    @property
    def label(self) -> str:
        """The row as tables and figures name it: the paper's row, and what makes it differ from the paper's."""
        return (self.row + ("" if self.in_paper else " (not in the paper)")
                + (f" [{self.substitute}]" if self.substitute else ""))


def paper_column(cfg: Config) -> str | None:
    """The paper's column of this setting (Monet, Landscapes...), or None for the demo and other folders."""
    try:
        artist = get_setting(str(cfg.data.dataset)).artist
    except ValueError:
        return None
    return artist if artist in report.PAPER_FID["Art2Real"] else None


def _source(folder: Path, key: str = "summary") -> str:
    meta = folder / "source.json"
    return json.loads(meta.read_text()).get(key, "") if meta.exists() else ""


def method_sets(cfg: Config, split: str = "testA", seeds: list[int] | None = None) -> list[ImageSet]:
    """The translations of every registered method's runs (this preset), then of released generators."""
    runs = runs_of(cfg.data.dataset, cfg.preset)
    sets = []
    for key in methods.names():
        cls = methods.get(key)
        mine = [r for r in runs if r.method == key and (seeds is None or r.seed in seeds)]
        done = [r for r in mine if (r.translations(split) / "source.json").exists()]
        if done:
            sources = sorted({_source(r.translations(split)) for r in done})
            substitutes = sorted({_source(r.translations(split), "substitute") for r in done} - {""})
            sets.append(ImageSet(cls.row, tuple(r.translations(split) for r in done), "; ".join(sources),
                                 cls.in_paper, seeds=tuple(r.seed for r in done),
                                 of_paintings=cls.translates_paintings, substitute="; ".join(substitutes)))
            continue
        run = Run(cfg.data.dataset, key, cfg.preset, (seeds or [cfg.seed])[0])
        if not cls.trained:
            sets.append(ImageSet(cls.row, in_paper=cls.in_paper, missing=_not_produced(run, split)))
            continue
        reason = (f"{cls.row} run at {run.dir} not translated yet" if mine else
                  f"no {cls.row} run of the {cfg.preset} preset at {run.dir.parent}")
        fix = (f"art2real train --dataset {cfg.data.dataset} --preset {cfg.preset} --method {key}, then "
               "03_translate" if not mine else "run 03_translate (or `art2real chain --start 03`)")
        sets.append(ImageSet(cls.row, in_paper=cls.in_paper, missing=NotAvailable(reason, fix)))
    for release in releases_for(get_setting(str(cfg.data.dataset)).name) if paper_column(cfg) else []:
        folder = release_translations(cfg.data.dataset, release.name, split)
        row = f"{methods.get(release.method).row} (release: {release.name})"
        if (folder / "source.json").exists():
            sets.append(ImageSet(row, (folder,), _source(folder)))
        elif (why := _status(folder)) is not None:
            sets.append(ImageSet(row, missing=why))
    return sets


def record_failure(folder: Path, error: Exception, fix: str) -> str:
    """Keep why a folder's images could not be made (``status.json`` beside it, read by the tables); returns the
    line for the stage's own table."""
    write_json(folder.parent / "status.json", {"reason": str(error).splitlines()[0][:400], "fix": fix})
    return f"not available: {error}"[:200]


def _status(folder: Path) -> NotAvailable | None:
    """What the last attempt to make a folder's images said when it could not (``status.json`` beside it)."""
    status = folder.parent / "status.json"
    if not status.exists():
        return None
    why = json.loads(status.read_text())
    return NotAvailable(why["reason"], why.get("fix", ""))


def _not_produced(run: Run, split: str) -> NotAvailable:
    """Why a method without training has no images: what its last attempt said (status.json), or not yet run."""
    return _status(run.translations(split)) or NotAvailable(
        f"{methods.get(run.method).row} images not produced yet at {run.translations(split)}",
        "run 03_translate (or `art2real chain --start 03`)")


def _data_set(cfg: Config, row: str, split: str) -> ImageSet:
    return ImageSet(row, (dataset_root(cfg.data.dataset) / split,), f"{split} of {cfg.data.dataset}")


def _over_seeds(outcomes: list) -> Measured | NotAvailable:
    missing = [o for o in outcomes if isinstance(o, NotAvailable)]
    return missing[0] if missing else Measured.over_seeds(outcomes)


def fid_table(cfg: Config, seeds: list[int] | None = None, split: str = "testA") -> pd.DataFrame:
    """Table 1: FID and KID of each image set against the setting's real photos (trainB), at the model
    resolution."""
    from .metrics.fid import FID_MIN_IMAGES, fid, kid
    from .metrics.inception import cached_features

    size, device = cfg.data.image_size, pick_device(cfg.device)
    reference = cached_features(dataset_root(cfg.data.dataset) / "trainB", device, size=size)
    column = paper_column(cfg)
    rows = []
    for image_set in [_data_set(cfg, "Original paintings", split)] + method_sets(cfg, split, seeds):
        fids, kids = [], []
        for folder in image_set.folders:
            feats = cached_features(folder, device, size=size)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the small-set caveat goes into the row instead
                note = f"FID on {len(feats)} < {FID_MIN_IMAGES} images: biased upwards" \
                    if len(feats) < FID_MIN_IMAGES else ""
                fids.append(Measured(fid(feats, reference), "Inception-v3 pool3 (FID weights)", len(feats),
                                     note=note))
            k_mean, k_std = kid(feats, reference, seed=cfg.seed)
            kids.append(Measured(1000 * k_mean, "Inception-v3 pool3 (FID weights)", len(feats), 1000 * k_std))
        paper_row = image_set.row.split(" (release")[0]
        paper = report.PAPER_FID.get(paper_row, {}).get(column) if column else None
        fid_value = _over_seeds(fids) if fids else image_set.missing
        rows.append({"method": image_set.label,
                     "paper FID": paper, "FID": fid_value, "KID x1000": _over_seeds(kids) if kids else None,
                     "seeds": len(image_set.seeds) or None,
                     "status": report.comparison(fid_value, paper,
                                                 image_set.substitute or _fid_conditions(cfg, fid_value)),
                     "source": image_set.source})
    table = pd.DataFrame(rows).astype({"seeds": "Int64"})  # a count, also where a row has none
    table.attrs["title"] = (f"Table 1: FID, {column or cfg.data.dataset}, {cfg.preset} preset, {size} px; "
                            f"reference: {len(reference)} real photos (trainB); lower is better")
    table.attrs["notes"] = ["KID x1000 is unbiased on small sets; FID below 2048 images is biased upwards. "
                            "Seeds: runs averaged (mean ± std [95% interval])."]
    return table


def _fid_conditions(cfg: Config, outcome) -> str | None:
    """Why a FID is not comparable with the paper's, or None."""
    if paper_column(cfg) is None:
        return f"{cfg.data.dataset} is not one of the paper's settings"
    if cfg.preset != "paper":
        return f"{cfg.preset} preset (the paper's networks and schedule: preset paper)"
    return None


def entropy_table(cfg: Config, classifier: str = "auto", seeds: list[int] | None = None,
                  split: str = "testA") -> pd.DataFrame:
    """Table 3: mean entropy of a classifier, the segmenter and a detector on each image set."""
    from .metrics.entropy import classification_entropy, detection_entropy, segmentation_entropy
    from .semantic import fit_segmenter

    size, device = cfg.data.image_size, pick_device(cfg.device)
    segmenter = fit_segmenter(cfg)
    sets = [_data_set(cfg, "Real photos", "testB"), _data_set(cfg, "Original paintings", split)]
    rows, models = [], {}
    for image_set in sets + method_sets(cfg, split, seeds):
        row = {"method": image_set.label}
        paper = report.PAPER_ENTROPY.get(image_set.row.split(" (release")[0], (None,) * 3)
        results = [[classification_entropy(f, classifier, size, device=device),
                    segmentation_entropy(f, segmenter, size, device=device),
                    detection_entropy(f, size, device=device)] for f in image_set.folders]
        statuses = []
        for i, col in enumerate(report.ENTROPY_COLUMNS):
            outcome = _over_seeds([r[i] for r in results]) if results else image_set.missing
            row[f"paper {col}"], row[col] = paper[i], outcome
            if isinstance(outcome, Measured):
                models[col] = outcome.model
                statuses.append(f"{col}: " + report.comparison(
                    outcome, paper[i], image_set.substitute or _entropy_conditions(cfg, col, outcome)))
        row["seeds"] = len(image_set.seeds) or None
        row["status"] = "; ".join(statuses)
        rows.append(row)
    table = pd.DataFrame(rows).astype({"seeds": "Int64"})
    table.attrs["title"] = (f"Table 3: mean entropy (nats), {paper_column(cfg) or cfg.data.dataset}, "
                            f"{cfg.preset} preset, {size} px; lower = more confident")
    table.attrs["notes"] = [f"{col}: computed with {models.get(col, 'nothing available')}; the paper: "
                            f"{report.PAPER_MODELS[col]}." for col in report.ENTROPY_COLUMNS]
    return table


def _entropy_conditions(cfg: Config, column: str, outcome: Measured) -> str | None:
    if column == "classification" and not outcome.model.startswith("resnet152 (IMAGENET1K_V1)"):
        return f"computed with {outcome.model.split(' (')[0]}, the paper with ResNet-152"
    if column == "segmentation":
        return f"computed with {outcome.model}, the paper with its own segmentation model"
    if column == "detection":
        return "computed with a COCO Faster R-CNN, the paper with one trained on Visual Genome"
    if cfg.preset != "paper" or paper_column(cfg) is None:
        return f"{cfg.preset} preset on {cfg.data.dataset}"
    return None
