"""Hostile handling of run folders: changed settings on resume, clashing dataset names, starting over, broken
checkpoints, two trainers at once, kills during a write, and the user's umask."""
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import yaml

from art2real.config import get_config
from art2real.runs import Run, setting_key
from art2real.semantic import artefacts_dir
from art2real.train import trainer as trainer_module
from art2real.train.checkpoint import load_checkpoint
from art2real.train.trainer import Trainer

from .conftest import REPO
from .hostile import cli, modes, one_error_line, random_png, smoke_train


def _iterations(run) -> list[int]:
    return [int(line.split(",")[0]) for line in (run / "losses.csv").read_text().splitlines()[1:]]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dataset(root, seed=0):
    for split, n in (("trainA", 3), ("trainB", 3), ("testA", 1), ("testB", 1)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            random_png(root / split / f"{i}.png", seed=seed * 100 + i)
    return root


# ------------------------------------------------------------------------------------------------ D4
def test_d4_resume_with_other_settings_stops_then_continues_when_forced(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert smoke_train(capsys, tiny_dataset, run)[0] == 0
    saved = (run / "config.yaml").read_text()
    code, _, err = smoke_train(capsys, tiny_dataset, run, "--set", "train.lr=0.5", iterations=2)
    assert code == 2 and "train.lr: 0.0002 -> 0.5" in err and "--force" in err and "Traceback" not in err
    assert (run / "config.yaml").read_text() == saved  # still describes the run
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 1 and _iterations(run) == [1]

    code, _, err = smoke_train(capsys, tiny_dataset, run, "--set", "train.lr=0.5", "--force", iterations=2)
    assert code == 0, err
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == 0.5
    changes = yaml.safe_load((run / "config_changes.yaml").read_text())
    assert [c["iteration"] for c in changes] == [1]
    assert changes[0]["changes"] == {"train.lr": {"was": 0.0002, "now": 0.5}}
    # it trains with what config.yaml says: iteration 2 (epoch 1 of the schedule, factor 1) at lr 0.5
    rows = (run / "losses.csv").read_text().splitlines()
    lr = rows[0].split(",").index("lr")
    assert [float(r.split(",")[lr]) for r in rows[1:]] == [0.0002, 0.5]
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["method"]["optimizers"]["G"]["param_groups"][0]["lr"] == 0.5
    assert state["method"]["schedulers"]["G"]["base_lrs"] == [0.5]


def test_d4_a_forced_change_that_cannot_apply_is_not_recorded(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert smoke_train(capsys, tiny_dataset, run)[0] == 0
    saved = (run / "config.yaml").read_text()
    code, _, err = smoke_train(capsys, tiny_dataset, run, "--set", "model.ngf=8", "--force", iterations=2)
    assert code == 2 and "does not fit these settings" in err
    assert (run / "config.yaml").read_text() == saved and not (run / "config_changes.yaml").exists()


def test_d4_forcing_another_method_into_a_run_is_refused(tiny_dataset, tmp_path, capsys):
    from art2real.methods.cyclegan import CycleGAN

    run = tmp_path / "run"
    assert smoke_train(capsys, tiny_dataset, run)[0] == 0
    cfg = get_config("smoke", {"data.dataset": str(tiny_dataset), "train.max_iterations": 2})  # art2real
    # the same networks (Art2Real is Cycle-GAN plus a loss), so only the settings can tell them apart
    impostor = CycleGAN(get_config("smoke", {"data.dataset": str(tiny_dataset)}, method="cyclegan"),
                        torch.device("cpu"))
    with pytest.raises(ValueError, match=r"method: 'cyclegan' -> 'art2real'"):
        Trainer(cfg, run, method=impostor, progress=False).fit(progress=False, force=True)
    assert yaml.safe_load((run / "config.yaml").read_text())["method"] == "cyclegan"


# ------------------------------------------------------------------------------------------------ D5
def test_d5_two_dataset_folders_with_one_name_get_their_own_runs_and_caches(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path / "results"))
    a, b = _dataset(tmp_path / "a" / "demo", 1), _dataset(tmp_path / "b" / "demo", 2)
    assert setting_key(a) != setting_key(b) and "demo" not in (setting_key(a), setting_key(b))
    assert setting_key(tmp_path / "a" / ".." / "a" / "demo") == setting_key(a)  # keyed by the resolved path
    cfgs = [get_config("smoke", {"data.dataset": str(d)}) for d in (a, b)]
    assert artefacts_dir(cfgs[0]) != artefacts_dir(cfgs[1])
    for d in (a, b):
        code, _, err = cli(capsys, "train", "--dataset", d, "--preset", "smoke", "--method", "cyclegan",
                           "--device", "cpu", "--set", "train.max_iterations=1")
        assert code == 0, err
    runs = [Run.of(get_config("smoke", {"data.dataset": str(d)}, method="cyclegan")) for d in (a, b)]
    assert runs[0].dir != runs[1].dir
    for run, d in zip(runs, (a, b)):
        assert yaml.safe_load((run.dir / "config.yaml").read_text())["data"]["dataset"] == str(d)
        assert load_checkpoint(run.dir / "checkpoints" / "last.pt")["iteration"] == 1


# ------------------------------------------------------------------------------------------------ D7
def test_d7_starting_a_finished_run_over_and_killing_it_loses_nothing(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli(capsys, "train", "--dataset", tiny_dataset, "--preset", "smoke", "--method", "cyclegan",
               "--device", "cpu", "--run-dir", run)[0] == 0
    old = {name: _sha(run / name) for name in ("losses.csv", "config.yaml", "checkpoints/last.pt",
                                               "checkpoints/previous.pt", "samples/epoch_002.png")}
    assert _iterations(run) == list(range(1, 9))
    argv = [sys.executable, "-m", "art2real.cli", "train", "--dataset", str(tiny_dataset), "--preset", "smoke",
            "--method", "cyclegan", "--device", "cpu", "--run-dir", str(run), "--no-resume",
            "--set", "train.epochs_constant=50", "--set", "train.checkpoint_every=1"]
    proc = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        # the new run's config is written once the old run is set aside whole, so a log row after it is the new
        # run's own (the old losses.csv may still be in the folder while the set-aside moves files)
        config = run / "config.yaml"
        started = config.exists() and "epochs_constant: 50" in config.read_text() and (run / "losses.csv").exists()
        if started and len((run / "losses.csv").read_text().splitlines()) > 1:  # the new run's first row
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait() == -signal.SIGKILL, "the new run ended before it could be killed"
    aside = sorted(tmp_path.glob("run.replaced-*"))
    assert len(aside) == 1
    assert {name: _sha(aside[0] / name) for name in old} == old  # the old run, whole
    new = _iterations(run)
    assert new == list(range(1, len(new) + 1)) and len(new) < 8  # the new run's own log
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs_constant"] == 50


def test_d7_starting_over_twice_in_one_second_keeps_both_old_runs(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module.time, "strftime", lambda fmt, *args: "20250101-000000")
    cfg = get_config("smoke", {"data.dataset": str(tiny_dataset), "train.max_iterations": 1}, method="cyclegan")
    run = tmp_path / "run"
    for _ in range(3):
        Trainer(cfg, run, progress=False).fit(resume=False, progress=False)
    aside = sorted(tmp_path.glob("run.replaced-*"))
    assert len(aside) == 2 and all((p / "checkpoints" / "last.pt").exists() for p in aside)


# ------------------------------------------------------------------------------------------------ D10
def test_d10_an_empty_last_pt_falls_back_to_previous_pt(tiny_dataset, tmp_path, capsys, caplog):
    run = tmp_path / "run"
    assert smoke_train(capsys, tiny_dataset, run, iterations=2)[0] == 0
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    code, _, err = smoke_train(capsys, tiny_dataset, run, iterations=3)
    assert code == 0, err
    said = caplog.text + err
    assert "last.pt is empty" in said and "resuming from" in said and "previous.pt" in said
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 3
    assert _iterations(run) == [1, 2, 3]  # iteration 2 redone from previous.pt, logged once
    # the empty file was moved aside, so the good checkpoint it fell back to became previous.pt, not the empty one
    assert load_checkpoint(run / "checkpoints" / "previous.pt")["iteration"] == 2
    assert [p.stat().st_size for p in (run / "checkpoints").glob("last.pt.unreadable-*")] == [0]


@pytest.mark.parametrize("last, previous", [(b"", b"\x00" * 100), (b"PK\x03\x04 truncated", b"")],
                         ids=["empty+zeros", "truncated+empty"])
def test_d10_both_checkpoints_broken_is_a_clear_error(tiny_dataset, tmp_path, capsys, last, previous):
    run = tmp_path / "run"
    assert smoke_train(capsys, tiny_dataset, run, iterations=2)[0] == 0
    (run / "checkpoints" / "last.pt").write_bytes(last)
    (run / "checkpoints" / "previous.pt").write_bytes(previous)
    code, _, err = smoke_train(capsys, tiny_dataset, run, iterations=3)
    assert code == 2 and one_error_line(err)
    line = next(line for line in err.splitlines() if line.startswith("error: "))
    assert "last.pt" in line and "previous.pt" in line and "--no-resume" in line


# ------------------------------------------------------------------------------------------------ locks, kills
HOLD = textwrap.dedent("""
    import sys, time
    from art2real.train.checkpoint import RunLock
    with RunLock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(120)
""")


def test_a_second_training_of_a_run_stops_at_once_naming_the_holder(tiny_dataset, tmp_path, capsys,
                                                                    monkeypatch):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"

        def no_banks(*args, **kwargs):
            raise AssertionError("memory banks built while another process trains the run")

        monkeypatch.setattr("art2real.semantic.build_context", no_banks)
        code, _, err = smoke_train(capsys, tiny_dataset, run, method="art2real")
        assert code == 2 and one_error_line(err)
        assert f"pid {holder.pid}" in err and "train.lock" in err
        assert sorted(p.name for p in run.iterdir()) == ["train.lock"]  # nothing written beside the lock
    finally:
        holder.kill()
        holder.wait()
    monkeypatch.undo()
    assert smoke_train(capsys, tiny_dataset, run)[0] == 0  # the lock went with its holder


def test_a_run_folder_that_is_a_file_is_a_user_error(tiny_dataset, tmp_path, capsys):
    (tmp_path / "taken").write_text("not a folder")
    for run in (tmp_path / "taken", tmp_path / "taken" / "run"):
        code, _, err = smoke_train(capsys, tiny_dataset, run)
        assert code == 2 and one_error_line(err) and "is a file" in err
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_a_temporary_file_left_by_a_killed_write_is_removed_by_the_next_run(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert smoke_train(capsys, tiny_dataset, run)[0] == 0
    (run / "checkpoints" / ".last.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")  # left by a kill mid-write
    (run / ".config.yaml.a1b2c3.tmp").write_text("preset: sm")
    assert smoke_train(capsys, tiny_dataset, run, iterations=2)[0] == 0
    assert not list(run.rglob(".*.tmp"))
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 2


# ------------------------------------------------------------------------------------------------ umask
@pytest.mark.parametrize("mask", [0o022, 0o002], ids=["umask-022", "umask-002"])
def test_results_and_checkpoints_follow_the_umask(tiny_dataset, tmp_path, capsys, mask):
    old = os.umask(mask)
    try:
        run = tmp_path / "run"
        assert smoke_train(capsys, tiny_dataset, run, iterations=6)[0] == 0  # a sample grid too
        code, _, err = cli(capsys, "translate", "--checkpoint", run / "checkpoints" / "last.pt", "--input",
                           tiny_dataset / "testA", "--output", tmp_path / "out" / "translations", "--device", "cpu")
        assert code == 0, err
    finally:
        os.umask(old)
    for folder in (run, tmp_path / "out"):
        assert modes(folder) == {"files": {0o666 & ~mask}, "dirs": {0o777 & ~mask}}, folder
