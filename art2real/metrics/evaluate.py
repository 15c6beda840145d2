"""Evaluate a folder of images against a reference folder: FID, KID, entropies; JSON and CSV out."""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

from ..io import atomic_path, write_json
from .entropy import classification_entropy
from .fid import fid, kid
from .inception import cached_features

METRICS = ("fid", "kid", "entropy")


def evaluate(images: str | Path, reference: str | Path, metrics=("fid", "kid"), size: int | None = None,
             out: str | Path | None = None, device="cpu", progress: bool = True, seed: int = 0) -> dict:
    """Metrics of ``images`` against ``reference`` (real photos). ``size`` resizes both sets first."""
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(METRICS)}")
    result: dict = {"images": str(images), "reference": str(reference), "size": size}
    if {"fid", "kid"} & set(metrics):
        a = cached_features(images, device, progress, size)
        b = cached_features(reference, device, progress, size)
        result.update(n_images=len(a), n_reference=len(b))
        if "fid" in metrics:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result["fid"] = fid(a, b)
            result["fid_note"] = "; ".join(str(w.message) for w in caught) or None
        if "kid" in metrics:
            result["kid"], result["kid_std"] = kid(a, b, seed=seed)
    if "entropy" in metrics:
        result["classification_entropy"] = classification_entropy(images, device=device)
    if out:
        out = Path(out)
        write_json(out.with_suffix(".json"), result)
        with atomic_path(out.with_suffix(".csv")) as tmp, open(tmp, "w", newline="") as f:
            flat = {k: v for k, v in result.items() if not isinstance(v, dict)}
            writer = csv.DictWriter(f, list(flat))
            writer.writeheader()
            writer.writerow(flat)
    return result
