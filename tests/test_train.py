"""The trainer: a smoke run, exact resume after SIGKILL, and bad input stopped before training."""

import pytest
import torch

from art2real.config import get_config
from art2real.train.checkpoint import load_checkpoint
from art2real.train.trainer import Trainer

from .conftest import assert_same_nets, kill_and_resume, six_a_side


def smoke(dataset, **overrides):
    return get_config("smoke", {"data.dataset": str(dataset), **overrides}, method="cyclegan")


def test_smoke_run_writes_logs_samples_checkpoint(tiny_dataset, tmp_path):
    summary = Trainer(smoke(tiny_dataset), tmp_path / "run").fit(progress=False)
    run = tmp_path / "run"
    assert summary["iterations"] == 8 and summary["epochs_done"] == 2
    rows = (run / "losses.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,epoch,G_gan") and len(rows) == 9
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert {"method", "translator", "rng", "config", "epoch", "iteration"} <= set(state)
    assert set(state["method"]["nets"]) == {"G", "F", "D_Y", "D_X"}
    assert set(state["method"]["extra"]) == {"pool_Y", "pool_X"}
    assert state["method"]["schedulers"]["G"]["last_epoch"] == 2 and state["iteration"] == 8
    assert (run / "config.yaml").exists() and (run / "checkpoints" / "previous.pt").exists()


def test_linear_decay_schedule(tiny_dataset, tmp_path):
    cfg = smoke(tiny_dataset, **{"train.epochs_constant": 2, "train.epochs_decay": 3})
    method = Trainer(cfg, tmp_path / "run").method
    lrs = []
    for epoch in range(5):
        lrs.append(method.lr)
        method.opt_G.step()
        method.end_epoch(epoch)
    assert lrs == pytest.approx([2e-4, 2e-4, 1.5e-4, 1e-4, 0.5e-4])


RESUMED = {"data.image_size": 64, "data.max_images": 6, "train.epochs_constant": 2, "train.epochs_decay": 2,
           "train.checkpoint_every": 4, "data.crop_margin": 8, "data.flip": True}


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tiny_dataset, tmp_path):
    six_a_side(tiny_dataset)
    a, at_kill, b = kill_and_resume("cyclegan", RESUMED, tiny_dataset, tmp_path, 10)  # killed at 10, saved at 8
    assert at_kill["epoch_iter"] > 0, "killed mid-epoch, after a mid-epoch checkpoint"
    assert a["iteration"] == b["iteration"] == 24
    assert_same_nets(a, b)
    log = tmp_path / "killed" / "losses.csv"
    rows = [line.split(",")[0] for line in log.read_text().splitlines()[1:]]
    assert rows == [str(i) for i in range(1, 25)]  # the loss log has each iteration once


def test_a_method_drawing_from_the_global_torch_rng_resumes_its_stream(tiny_dataset, tmp_path):
    """Steps that sample with torch's global RNG (noise, patch locations) see the same draws after a mid-epoch
    resume as without it: nothing between the checkpoint and the next step draws from it."""
    def draws(run, caps):
        seen = []
        for cap in caps:
            trainer = Trainer(smoke(tiny_dataset, **{"train.max_iterations": cap}), run, progress=False)
            step = trainer.method.train_step
            trainer.method.train_step = lambda batch: (seen.append(torch.rand(()).item()), step(batch))[1]
            trainer.fit(progress=False)
        return seen

    straight = draws(tmp_path / "straight", [None])
    resumed = draws(tmp_path / "resumed", [6, None])  # checkpoint at iteration 6, mid-epoch 2
    assert len(straight) == len(resumed) == 8 and resumed == straight


def test_missing_or_empty_dataset_stops_before_training(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here is missing trainA.*Put the images in"):
        Trainer(smoke(tmp_path / "nothing_here"), tmp_path / "run")
    for split in ("trainA", "trainB", "testA", "testB"):
        (tmp_path / "empty" / split).mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no readable images"):
        Trainer(smoke(tmp_path / "empty"), tmp_path / "run")


def test_resume_with_another_architecture_is_refused(tiny_dataset, tmp_path):
    Trainer(smoke(tiny_dataset, **{"train.max_iterations": 1}), tmp_path / "run").fit(progress=False)
    other = Trainer(smoke(tiny_dataset, **{"model.ngf": 8}), tmp_path / "run")
    with pytest.raises(ValueError, match=r"trained with other settings:\n  model.ngf: 4 -> 8"):
        other.fit(progress=False)
    with pytest.raises(RuntimeError, match="does not fit these settings"):  # not even when forced
        other.fit(progress=False, force=True)


def test_art2real_without_context_is_refused(tiny_dataset):
    from art2real import methods

    cfg = get_config("smoke", {"data.dataset": str(tiny_dataset)})
    with pytest.raises(ValueError, match="memory banks and masks"):
        methods.get("art2real")(cfg, torch.device("cpu"), None)
