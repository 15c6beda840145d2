"""The Art2Real training path: masks follow augmentation, the paper's mask schedule, early stopping and the best
generator, and exact resume after SIGKILL with the memory banks in the loop."""

import numpy as np
import pytest
import torch
from PIL import Image

from art2real.bank.memory import MemoryBanks
from art2real.bank.patches import class_fractions, patch_assignment
from art2real.config import get_config
from art2real.data.dataset import UnpairedDataset
from art2real.runs import Run
from art2real.semantic import SemanticContext, painting_masks
from art2real.train.checkpoint import load_checkpoint
from art2real.train.trainer import Trainer

from .conftest import DEMO, assert_same_nets, kill_and_resume


class ColourSegmenter:
    """Class 0 where red dominates, 1 where blue does: commutes with crops and flips, so the mask of an augmented
    painting must equal the segmentation of the augmented painting itself."""

    class_names = ["red", "blue"]
    name = "colour"

    def labels(self, images):
        return (images[:, 0] <= images[:, 2]).long()


@pytest.fixture
def quadrants(tmp_path):
    """Paintings with a red block at a different place in each; photos of noise."""
    rng = np.random.default_rng(0)
    for split, n in (("trainA", 3), ("trainB", 3), ("testA", 1), ("testB", 1)):
        (tmp_path / split).mkdir()
        for i in range(n):
            arr = np.zeros((40, 40, 3), np.uint8)
            arr[..., 2] = 255
            arr[3 * i:3 * i + 15, 2 + 5 * i:25 + 5 * i] = (255, 0, 0)
            if split.endswith("B"):
                arr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / split / f"{split}_{i}.png")
    return tmp_path


def test_masks_are_cropped_and_flipped_with_their_painting(quadrants, tmp_path):
    cfg = get_config("smoke", {"data.dataset": str(quadrants), "data.crop_margin": 8, "data.flip": True})
    segmenter = ColourSegmenter()
    patches = {(p, s): {c: np.zeros((2, 3 * p * p), np.uint8) for c in (0, 1, -1)} for p, s in cfg.bank.scales}
    banks = MemoryBanks.from_arrays(patches, tmp_path / "banks", cfg.bank)
    context = SemanticContext(cfg, banks, segmenter, painting_masks(cfg, segmenter, progress=False))
    data = UnpairedDataset(quadrants, 32, crop_margin=8, flip=True, seed=1)
    flips, offsets = set(), set()
    for epoch in range(3):
        for i in range(len(data)):
            item = data.item(epoch, i)
            labels = context.labels([item["A_name"]], item["A_place"][None])
            truth = segmenter.labels(item["A"][None])
            assert torch.equal(labels, truth), (epoch, i)
            for size, stride in cfg.bank.scales:  # so the 50% rule assigns the same patch classes
                assert torch.equal(patch_assignment(class_fractions(labels, 2, size, stride)),
                                   patch_assignment(class_fractions(truth, 2, size, stride)))
            flips.add(int(item["A_place"][4]))
            offsets.add(tuple(item["A_place"][2:4].tolist()))
    assert flips == {0, 1} and len(offsets) > 3  # augmentation really happened


def test_paper_mask_schedule_recomputes_masks_from_G(tmp_path, monkeypatch):
    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path))
    cfg = get_config("smoke", {"data.dataset": str(DEMO), "cx.mask_schedule": "paper", "cx.mask_start": 1,
                               "cx.mask_every": 1})
    trainer = Trainer(cfg, progress=False)
    before = {k: v.clone() for k, v in trainer.method.context.masks.items()}
    trainer.fit(progress=False)
    state = load_checkpoint(Run.of(cfg).checkpoints / "last.pt")["method"]["context"]
    assert state["masks_from"] == "G(x) at epoch 1"
    assert set(state["masks"]) == set(before)  # every training painting
    load = cfg.data.image_size + cfg.data.crop_margin
    assert all(m.shape == (load, load) for m in state["masks"].values())
    assert any(not torch.equal(state["masks"][k].long(), before[k]) for k in before)  # really from G(x)


def test_early_stopping_keeps_the_best_generator(tiny_dataset, tmp_path):
    scores = iter([5.0, 3.0, 4.0, 4.5, 1.0, 1.0])
    cfg = get_config("smoke", {"data.dataset": str(tiny_dataset), "train.epochs_constant": 3,
                               "train.epochs_decay": 3, "train.validate_every": 1, "train.patience": 2},
                     method="cyclegan")
    translators = []

    def validator(translator):
        translators.append({k: v.clone() for k, v in translator.state_dict().items()})
        return next(scores)

    summary = Trainer(cfg, tmp_path / "run", validator=validator).fit(progress=False)
    assert summary["stopped_early"] and summary["epochs_done"] == 4  # epochs 3 and 4 did not beat epoch 2
    assert summary["best"] == 3.0 and summary["best_epoch"] == 2
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["epoch"] == 2 and best["metric"] == "kid" and best["value"] == 3.0
    assert all(torch.equal(best["translator"][k], translators[1][k]) for k in best["translator"])
    assert not all(torch.equal(best["translator"][k], translators[-1][k]) for k in best["translator"])
    again = Trainer(cfg, tmp_path / "run", validator=validator).fit(progress=False)  # resumed: the stop holds
    assert again["stopped_early"] and again["epochs_done"] == 4 and again["iterations"] == summary["iterations"]


RESUMED = {"train.checkpoint_every": 3, "data.crop_margin": 4, "cx.mask_schedule": "paper", "cx.mask_start": 1,
           "cx.mask_every": 1}


def test_art2real_resumes_after_sigkill_with_identical_weights(tmp_path):
    # killed past iteration 4: the checkpoint at 3, in epoch 2
    a, _, b = kill_and_resume("art2real", RESUMED, DEMO, tmp_path, 5, timeout=300)
    assert a["iteration"] == b["iteration"] == 8
    assert a["method"]["context"]["masks_from"] == b["method"]["context"]["masks_from"] == "G(x) at epoch 1"
    assert_same_nets(a, b)
