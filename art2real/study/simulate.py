"""A SIMULATED rater, for demos where no human has voted. Its votes are stored with ``simulated = 1`` and every
table made from them says "simulated rater, not human votes". It measures what Inception features measure,
nothing about human preference.

Rule: each image gets a distance in Inception pool3 feature space (``art2real.metrics.inception``, the FID
network):

* realism: Euclidean distance of the image's feature to the mean feature of the real photos (the per-image
  analogue of the mean term of FID);
* coherence: Euclidean distance of the image's feature to the feature of the painting it translates.

The simulated rater prefers the image with the lower distance. With ``noise > 0`` it chooses left with
probability sigmoid((d_right - d_left) / (noise * s)), s being the test's median |d_left - d_right| over its
pairs: at noise 1 a median-sized difference is followed 73% of the time; noise 0 is deterministic.

Gold pairs are not judged by distance: they are built to be obvious to a person, and the distance is no such
judge (on the demo data the photo-mean distance prefers the degraded image in 2 of the 8 realism gold pairs).
Instead a simulated rater is *attentive* with probability ``attention``: attentive raters answer gold pairs
right and vote by the rule above; the others click at random everywhere, as the gold gate expects careless
raters to do, and are excluded by it (unless all their random gold answers happen to be right).

Each simulated rater goes through the same path as a web rater: bound to a test, gold gate first, then up to
``pairs_per_rater`` pairs, until every pair has its votes.
"""
from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..data.images import list_images, load_rgb
from .manifest import IMAGES, Item, Manifest
from .store import VoteStore

Features = Callable[[list[Path]], np.ndarray]  # image paths -> (N, D) features


def inception_image_features(paths: list[Path], device: str = "cpu", batch_size: int = 32) -> np.ndarray:
    """(N, 2048) Inception pool3 features, pytorch-fid preprocessing; images of one size are batched together."""
    import torch

    from ..metrics.inception import inception_features

    images = [np.asarray(load_rgb(p)) for p in paths]
    out = np.zeros((len(paths), 2048))
    by_size: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        by_size.setdefault(im.shape, []).append(i)
    for idx in by_size.values():
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            batch = torch.from_numpy(np.stack([images[i] for i in chunk])).permute(0, 3, 1, 2).to(device)
            out[chunk] = inception_features(batch)
    return out


class InceptionJudge:
    """Per-image distances of a study's images (see the module docstring)."""

    def __init__(self, study_dir: str | Path, photos_dir: str | Path, features: Features | None = None,
                 device: str = "cpu"):
        self.manifest = Manifest.load(study_dir)
        self.images = Path(study_dir) / IMAGES
        if features is None:
            from ..metrics.inception import cached_features

            photo_mean = cached_features(photos_dir, device=device, progress=False).mean(axis=0)
            features = lambda paths: inception_image_features(paths, device)
        else:
            photo_mean = features(list_images(photos_dir)).mean(axis=0)
        self.photo_mean = photo_mean
        self._features = self._study_features(features)

    def _study_features(self, features: Features) -> dict[str, np.ndarray]:
        """Feature of every image file of the study, computed once per distinct content (sides are copies)."""
        names = sorted({n for it in self.manifest.items.values()
                        for n in (it.left.image, it.right.image, it.painting_image) if n})
        digests = {n: hashlib.sha256((self.images / n).read_bytes()).hexdigest() for n in names}
        unique = {d: n for n, d in digests.items()}
        feats = features([self.images / n for n in unique.values()])
        by_digest = dict(zip(unique, feats))
        return {n: by_digest[d] for n, d in digests.items()}

    def distance(self, item: Item, side: str) -> float:
        f = self._features[item.side(side).image]
        target = self.photo_mean if item.test == "realism" else self._features[item.painting_image]
        return float(np.linalg.norm(f - target))

    def margin(self, item: Item) -> float:
        """d_right - d_left: positive when the left image is closer (preferred)."""
        return self.distance(item, "right") - self.distance(item, "left")


def simulate_votes(study_dir: str | Path, photos_dir: str | Path, *, noise: float = 1.0, attention: float = 0.9,
                   seed: int = 0, pairs_per_rater: int = 20, features: Features | None = None, device: str = "cpu",
                   max_raters: int | None = None) -> dict:
    """Fill the study with simulated votes until every pair has its raters; returns a summary."""
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if not 0 < attention <= 1:
        raise ValueError(f"attention must be in (0, 1], got {attention}")
    judge = InceptionJudge(study_dir, photos_dir, features, device)
    manifest = judge.manifest
    margins = {it.id: judge.margin(it) for it in manifest.items.values()}
    scale = {t: float(np.median([abs(margins[p.id]) for p in manifest.pairs_of(t)]) or 1.0) for t in manifest.tests}
    rng = np.random.default_rng(seed)

    def choose(item: Item, attentive: bool) -> str:
        if not attentive:
            return "left" if rng.random() < 0.5 else "right"
        if item.gold:
            return item.answer
        m = margins[item.id]
        if noise == 0:
            return "left" if m > 0 or (m == 0 and rng.random() < 0.5) else "right"
        p_left = 1.0 / (1.0 + math.exp(-np.clip(m / (noise * scale[item.test]), -50, 50)))
        return "left" if rng.random() < p_left else "right"

    store = VoteStore(study_dir, manifest, pairs_per_rater=pairs_per_rater, durable=False)
    need = manifest.raters_per_pair * len(manifest.pairs)
    max_raters = max_raters or 20 * math.ceil(need / pairs_per_rater) + 20
    start = sum(c["votes"] for c in store.counts().values())
    raters = failed = 0
    for k in itertools.count(1):
        if _outstanding(store) == 0:
            break
        if raters >= max_raters:
            raise RuntimeError(f"{raters} simulated raters did not complete the study ({failed} failed the gold "
                               f"gate): raise the attention (now {attention})")
        rater_id = f"sim-{seed}-{k:05d}"
        if store.connection().execute("SELECT 1 FROM raters WHERE rater_id = ?", (rater_id,)).fetchone():
            continue  # a previous run's rater
        raters += 1
        attentive = rng.random() < attention
        while (nxt := store.next_item(rater_id, source="simulated", simulated=True)).item is not None:
            store.answer(rater_id, nxt.item.id, choose(nxt.item, attentive))
        failed += store.connection().execute("SELECT gold_passed = 0 FROM raters WHERE rater_id = ?",
                                             (rater_id,)).fetchone()[0]
    settings = {"rule": "lower Inception distance (realism: to the photos' mean feature; coherence: to the "
                        "painting's feature)", "photos": str(Path(photos_dir).resolve()), "noise": noise,
                "attention": attention,
                "seed": seed, "scale": scale, "features": "inception pool3" if features is None else "custom"}
    store.set_meta("simulation", settings)
    votes = sum(c["votes"] for c in store.counts().values()) - start
    store.close()
    return {"simulated_raters": raters, "failed_gate": failed, "votes": votes, **settings}


def _outstanding(store: VoteStore) -> int:
    """Votes still missing over all pairs."""
    need = store.manifest.raters_per_pair
    row = store.connection().execute("""SELECT COALESCE(SUM(MAX(0, ? - n)), 0) FROM (SELECT COUNT(v.rater_id) n
                                        FROM items i LEFT JOIN votes v USING (item_id) WHERE i.gold = 0
                                        GROUP BY i.item_id)""", (need,)).fetchone()
    return row[0]
