"""Memory banks: the 20% / background rules, the 50% rule, index round trips, exact re-ranking, builds."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from art2real.bank.index import build_index, search
from art2real.bank.memory import MemoryBanks, build_banks
from art2real.bank.patches import (bank_membership, class_fractions, extract_patches, patch_assignment, to_u8,
                                   to_unit)
from art2real.config import get_config


def test_twenty_percent_rule_and_background_on_hand_made_masks():
    labels = torch.full((1, 8, 8), -1)  # one 8x8 image = one 8x8 patch; -1 = no class
    labels[0, :2, :] = 0  # 16 px of class 0 (25%)
    labels[0, 2:3, :] = 1  # 8 px of class 1 (12.5%)
    labels[0, 3:5, :5] = 2  # 10 px of class 2 (15.6%)
    frac = class_fractions(labels, 3, 8, 8)[0, 0]
    assert frac.tolist() == pytest.approx([16 / 64, 8 / 64, 10 / 64, 30 / 64])
    assert bank_membership(frac, 0.2).tolist() == [True, False, False, False]
    # a patch 20% class 0 and 20% class 1 enters both banks; one with no class >= 20% goes to background
    labels = torch.full((1, 10, 10), -1)
    labels[0, :2], labels[0, 2:4] = 0, 1
    assert bank_membership(class_fractions(labels, 2, 10, 10)[0, 0], 0.2).tolist() == [True, True, False]
    labels[0, :4] = -1
    labels[0, 0, :5] = 0
    assert bank_membership(class_fractions(labels, 2, 10, 10)[0, 0], 0.2).tolist() == [False, False, True]


def test_fifty_percent_rule_at_the_edges():
    labels = torch.full((1, 4, 8), -1)
    labels[0, :2, :4] = 0  # left 4x4 patch: exactly 8 of 16 px in class 0 -> class 0, and 8 background -> bg
    labels[0, :2, 4:7] = 1  # right 4x4 patch: 6 of 16 px in class 1 -> not class 1; 10 background -> bg
    member = patch_assignment(class_fractions(labels, 2, 4, 4)[0], 0.5)
    assert member.tolist() == [[True, False, True], [False, False, True]]
    labels[0, 2, 4] = 1  # 7 of 16: still below half
    assert not patch_assignment(class_fractions(labels, 2, 4, 4)[0], 0.5)[1, 1]
    labels[0, 2, 5] = 1  # 8 of 16: exactly half counts
    assert patch_assignment(class_fractions(labels, 2, 4, 4)[0], 0.5)[1, 1]


def test_patch_layout_is_channel_first_per_window():
    img = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    p = extract_patches(img, 2, 2)
    assert p.shape == (2, 4, 12)
    assert p[0, 1].tolist() == img[0, :, 0:2, 2:4].reshape(-1).tolist()  # second window, (C, p, p) order


def test_uint8_round_trip_is_lossless():
    u8 = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).repeat(1, 3, 1, 1)
    assert torch.equal(to_u8(torch.from_numpy(to_unit(u8.numpy()))), u8)


def _bank_cfg(**kw):
    return get_config("smoke", {f"bank.{k}": v for k, v in kw.items()}).bank


def _exact(data_u8, queries, k):
    d = ((to_unit(data_u8)[None] - queries[:, None]) ** 2).sum(-1)
    return np.argsort(d, 1, kind="stable")[:, :k]


def _exact_cosine(data_u8, queries, mean, k):
    unit = lambda v: (v - mean) / np.linalg.norm(v - mean, axis=-1, keepdims=True)  # noqa: E731
    return np.argsort(-(unit(queries) @ unit(to_unit(data_u8)).T), 1, kind="stable")[:, :k]


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("kind", ["flat", "ivf", "pcasq"])
def test_indexes_find_exact_neighbours_after_reranking(kind, metric):
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 256, (40, 48))
    data = np.clip(centres[rng.integers(0, 40, 3000)] + rng.normal(0, 20, (3000, 48)), 0, 255).astype(np.uint8)
    queries = to_unit(np.clip(centres[rng.integers(0, 40, 50)] + rng.normal(0, 20, (50, 48)), 0, 255))
    cfg = _bank_cfg(metric=metric, index=kind, nprobe=64, rerank=256, pca_dim=16, train_size=3000)
    mean = to_unit(data).mean(0)
    index, spec = build_index(data, cfg, mean=mean)
    assert spec.startswith({"flat": "Flat", "ivf": "IVF", "pcasq": "PCA16,IVF"}[kind])
    ids = search(index, data, queries, 5, cfg, mean)
    exact = _exact(data, queries, 5) if metric == "l2" else _exact_cosine(data, queries, mean, 5)
    assert (ids == exact).mean() >= 0.99
    if metric == "cosine":  # the two metrics rank differently here, so the test tells them apart
        assert (_exact(data, queries, 5) != exact).any()


def test_bank_round_trip_and_small_bank_padding(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {(4, 4): {0: rng.integers(0, 256, (30, 48), dtype=np.uint8),
                       -1: rng.integers(0, 256, (3, 48), dtype=np.uint8)}}
    cfg = _bank_cfg()
    banks = MemoryBanks.from_arrays(arrays, tmp_path / "b", cfg)
    again = MemoryBanks.load(tmp_path / "b", cfg)
    assert np.array_equal(again.banks[0][0].patches, arrays[(4, 4)][0])
    assert np.allclose(again.mean(0, 0), to_unit(arrays[(4, 4)][0]).mean(0), atol=1e-6)
    q = to_unit(arrays[(4, 4)][0][:4])
    assert again.search(0, 0, q, 1)[:, 0].tolist() == [0, 1, 2, 3]  # each patch finds itself
    assert (again.search(0, -1, q, 5)[:, 3:] == -1).all()  # 3 patches in the bank: padded with -1
    assert banks.resolve(0, 7) == -1  # an unknown class falls back to the background bank


class StripesSegmenter:
    """Class = which third of the image (top, middle, bottom); a stand-in with a known answer."""
    class_names = ["top", "middle", "bottom"]
    name = "stripes"

    def labels(self, images):
        n, _, h, w = images.shape
        rows = torch.arange(h).view(1, h, 1).expand(n, h, w)
        return (rows * 3 // h).long()


def test_build_is_streaming_idempotent_and_atomic(tiny_dataset, tmp_path, monkeypatch):
    cfg = _bank_cfg(scales=((4, 4), (8, 5)))
    root = tmp_path / "out" / "banks"
    banks = build_banks(tiny_dataset / "trainB", StripesSegmenter(), root, cfg, size=24, progress=False)
    meta = json.loads((root / "meta.json").read_text())
    # 24 px: 36 windows of 4x4 per photo, none straddles a stripe: 12 per class, 5 photos
    assert meta["counts"]["s4_4"] == {"0": 60, "1": 60, "2": 60, "-1": 0}
    assert banks.banks[0][1].patches.shape == (60, 48)
    stamp = (root / "meta.json").stat().st_mtime_ns
    with monkeypatch.context() as m:
        m.setattr("art2real.bank.memory.ImageFolder", None)  # the check must not open the photos
        build_banks(tiny_dataset / "trainB", StripesSegmenter(), root, cfg, size=24, progress=False)
    assert (root / "meta.json").stat().st_mtime_ns == stamp  # same inputs: no rebuild

    class Crashes(StripesSegmenter):
        name = "crashes"

        def labels(self, images):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_banks(tiny_dataset / "trainB", Crashes(), root, cfg, size=24, progress=False)
    assert json.loads((root / "meta.json").read_text())["segmenter"] == "stripes"  # the old banks survive
    assert [p.name for p in root.parent.iterdir()] == ["banks"]  # and no half-written folder is left


def test_import_of_the_authors_layout(tmp_path):
    import faiss

    from art2real.bank.memory import import_authors

    rng = np.random.default_rng(4)
    src = tmp_path / "data_for_patch_retrieval" / "patch_size_4"
    for sub in ("memory_bank_patches_binary", "means", "faiss_indexes"):
        (src / sub).mkdir(parents=True)
    u8 = {"0": rng.integers(0, 256, (20, 48), dtype=np.uint8), "3": rng.integers(0, 256, (30, 48), dtype=np.uint8)}
    for cls, patches in u8.items():
        (patches.astype(np.float32) / 255).tofile(src / "memory_bank_patches_binary" / f"{cls}.bin")
        np.save(src / "means" / f"{cls}.npy", to_unit(patches).mean(0))
    theirs = faiss.IndexFlatL2(48)
    theirs.add(to_unit(u8["3"]))
    faiss.write_index(theirs, str(src / "faiss_indexes" / "3.index"))  # class 0 comes without an index
    banks = import_authors(src.parent, tmp_path / "imported", _bank_cfg(), scales=((4, 4),))
    assert sorted(banks.banks[0]) == [-1, 3]  # their class 0 is the background bank
    assert np.array_equal(banks.banks[0][3].patches, u8["3"]) and np.array_equal(banks.banks[0][-1].patches, u8["0"])
    assert banks.search(0, 3, to_unit(u8["3"][:3]), 1)[:, 0].tolist() == [0, 1, 2]
    assert banks.search(0, -1, to_unit(u8["0"][:3]), 1)[:, 0].tolist() == [0, 1, 2]


def test_new_index_settings_rebuild_only_the_indexes(tiny_dataset, tmp_path):
    cfg = _bank_cfg(scales=((4, 4),))
    root = tmp_path / "banks"
    build_banks(tiny_dataset / "trainB", StripesSegmenter(), root, cfg, size=24, progress=False)
    patches = root / "s4_4" / "c0.u8"
    written = patches.stat().st_mtime_ns
    cfg.ivf_min, cfg.nprobe = 10, 64  # 60-patch banks become IVF
    banks = build_banks(tiny_dataset / "trainB", StripesSegmenter(), root, cfg, size=24, progress=False)
    assert patches.stat().st_mtime_ns == written  # patches kept
    specs = json.loads((root / "meta.json").read_text())["index_specs"]["s4_4"]
    assert specs["0"].startswith("IVF") and type(banks.banks[0][0].index).__name__ == "IndexIVFScalarQuantizer"
    q = to_unit(np.asarray(banks.banks[0][0].patches[:5]))
    assert banks.search(0, 0, q, 1)[:, 0].tolist() == [0, 1, 2, 3, 4]
    manifest = (root / "manifest.json").read_text()
    build_banks(tiny_dataset / "trainB", StripesSegmenter(), root, cfg, size=24, progress=False)
    assert (root / "manifest.json").read_text() == manifest  # and that is a no-op next time
