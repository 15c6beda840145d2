"""Evaluate a folder of images against a reference folder: FID, KID, entropies; JSON and CSV out.

Inputs are checked before any network runs: both folders must hold enough readable images for the metrics
asked for (FID and KID need two per set; below 2048, FID is biased upwards and says so).
"""
from __future__ import annotations

import csv
import dataclasses
import warnings
from pathlib import Path

from ..data.images import scan_images
from ..errors import ConfigError, DataError
from ..io import atomic_path, write_json
from ..outcomes import NotAvailable
from .entropy import classification_entropy
from .fid import FID_MIN_IMAGES, fid, kid
from .inception import cached_features

METRICS = ("fid", "kid", "entropy")
MIN_IMAGES = {"fid": 2, "kid": 2, "entropy": 1}


def _readable(folder: Path, role: str, need: int) -> int:
    if not folder.is_dir():
        raise DataError(f"{role} folder not found: {folder}")
    report = scan_images(folder)
    if len(report.good) < need:
        raise DataError(f"{role} folder {folder} has {len(report.good)} readable image(s); the metrics asked for "
                        f"need at least {need}" + (f" ({report.summary()})" if report.bad or report.ignored else ""))
    return len(report.good)


def evaluate(images: str | Path, reference: str | Path, metrics=("fid", "kid"), size: int | None = None,
             out: str | Path | None = None, device="cpu", progress: bool = True, seed: int = 0) -> dict:
    """Metrics of ``images`` against ``reference`` (real photos). ``size`` resizes both sets first."""
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ConfigError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(METRICS)}")
    images, reference = Path(images), Path(reference)
    need = max(MIN_IMAGES[m] for m in metrics)
    n_images = _readable(images, "images", need)
    if {"fid", "kid"} & set(metrics):
        _readable(reference, "reference", need)
    result: dict = {"images": str(images), "reference": str(reference), "size": size, "n_images": n_images}
    if {"fid", "kid"} & set(metrics):
        a = cached_features(images, device, progress, size)
        b = cached_features(reference, device, progress, size)
        result.update(n_images=len(a), n_reference=len(b))
        if "fid" in metrics:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result["fid"] = fid(a, b)
            if min(len(a), len(b)) < FID_MIN_IMAGES:
                result["fid_note"] = (f"FID on {min(len(a), len(b))} images (< {FID_MIN_IMAGES}): biased upwards, "
                                      "not comparable to the paper's; prefer KID for small sets")
        if "kid" in metrics:
            result["kid"], result["kid_std"] = kid(a, b, seed=seed)
    if "entropy" in metrics:
        outcome = classification_entropy(images, device=device)
        result["classification_entropy"] = ({"not_available": outcome.reason, "fix": outcome.fix}
                                            if isinstance(outcome, NotAvailable) else dataclasses.asdict(outcome))
    if out:
        out = Path(out)
        write_json(out.with_suffix(".json"), result)
        with atomic_path(out.with_suffix(".csv")) as tmp, open(tmp, "w", newline="") as f:
            flat = {k: v for k, v in result.items() if not isinstance(v, dict)}
            writer = csv.DictWriter(f, list(flat))
            writer.writeheader()
            writer.writerow(flat)
    return result
