"""DRIT as a method of the kit: its networks at paper size, the authors' update order inside the one training loop,
exact resume after SIGKILL, the translator through translate and load_translator, the authors' file layout, and
the best epoch kept by FID validation."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from art2real import methods
from art2real.config import get_config
from art2real.data.dataset import UnpairedDataset
from art2real.errors import CheckpointError, ConfigError
from art2real.metrics.validation import Validator
from art2real.nn import drit as D
from art2real.train.checkpoint import load_checkpoint
from art2real.train.trainer import Trainer, build_method
from art2real.translate import load_translator, translate_folder

from .conftest import kill_and_resume

OFFICIAL = json.loads((Path(__file__).parent / "data" / "drit_official_state.json").read_text())
# the authors' DRIT(opts) at their defaults, summed per network (tests/test_drit.py says how they were measured)
OFFICIAL_PARAMS = {"disA": 8_271_171, "disB": 8_271_171, "disA2": 8_271_171, "disB2": 8_271_171,
                   "disContent": 10_683_649, "enc_c": 9_018_112, "enc_a": 2_688_160, "gen": 9_564_710}


def smoke(dataset, **overrides):
    return get_config("smoke", {"data.dataset": str(dataset), **overrides}, method="drit", device="cpu")


def add_images(dataset: Path, paintings: int, photos: int) -> None:
    """Copies of the first image, so the tiny dataset has more items an epoch."""
    for split, n in (("trainA", paintings), ("trainB", photos)):
        for i in range(n):
            (dataset / split / f"extra_{i}.png").write_bytes((dataset / split / f"{split}_0.png").read_bytes())


def pair_batch(cfg, **position) -> dict:
    d = cfg.data
    data = UnpairedDataset(d.dataset, d.image_size, "train", d.max_images, d.crop_margin, d.flip, cfg.seed)
    return {**default_collate([data.item(0, 0), data.item(0, 1)]),
            **{k: torch.tensor([v, v + 1] if k == "index" else [v, v]) for k, v in position.items()}}


def test_paper_size_networks_through_the_method_equal_the_authors():
    cfg = get_config("paper", method="drit", device="cpu")
    method = methods.get("drit")(cfg, torch.device("cpu"))
    assert list(method.nets) == list(D.NETWORKS) and list(method.optimizers) == list(D.NETWORKS)
    for name, net in method.nets.items():
        assert sum(p.numel() for p in net.parameters()) == OFFICIAL_PARAMS[name], name
        layout = "disA" if name in ("disB", "disA2", "disB2") else name  # the file lists disA for all four
        official = OFFICIAL["spectral_norm"].get(layout, OFFICIAL["no_spectral_norm"][layout])
        assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == official, name
        spectral = [k for k in net.state_dict() if k.endswith("weight_orig")]
        # spectral norm on every conv of the image discriminators (the Art2Real paper), never elsewhere
        assert len(spectral) == (15 if name in ("disA", "disB", "disA2", "disB2") else 0), name
    translator = method.translator_state()
    assert {k.split(".")[0] for k in translator} == {"enc_c", "gen"}
    assert sum(v.numel() for v in translator.values()) == 18_582_822
    assert method.optimizers["disContent"].param_groups[0]["lr"] == 1e-4 / 2.5


def test_a_full_update_trains_every_network_and_a_content_only_update_the_content_discriminator(tiny_dataset):
    cfg = smoke(tiny_dataset)
    method = build_method(cfg, progress=False)
    before = {n: {k: v.clone() for k, v in net.state_dict().items()} for n, net in method.nets.items()}

    losses = method.train_step(pair_batch(cfg, index=0, epoch_size=20))  # batch 0 of 10: content only
    assert list(losses) == ["disContent"] and method.total_it == 0
    changed = {n for n, net in method.nets.items()
               if any(not torch.equal(v, before[n][k]) for k, v in net.state_dict().items())}
    assert changed == {"disContent"}

    losses = method.train_step(pair_batch(cfg))  # no position: a full update
    assert set(losses) == set(method.loss_names) and all(np.isfinite(v) for v in losses.values())
    assert method.total_it == 1
    for name, net in method.nets.items():
        assert all(not torch.equal(p, before[name][k]) for k, p in net.named_parameters()), name
    with pytest.raises(ValueError, match=">= 2 paintings"):
        method.train_step({"A": torch.zeros(1, 3, 28, 28), "B": torch.zeros(1, 3, 28, 28)})


def test_learning_rates_follow_the_authors_schedule(tiny_dataset):
    cfg = smoke(tiny_dataset, **{"train.epochs_constant": 3, "train.epochs_decay": 4})
    method = build_method(cfg, progress=False)
    n_ep, n_ep_decay = 7, 3  # their options: n_ep epochs in all, decay from epoch n_ep_decay

    def lambda_rule(ep):  # networks.get_scheduler of the authors' code
        return 1.0 - max(0, ep - n_ep_decay) / float(n_ep - n_ep_decay + 1)

    for epoch in range(n_ep):
        for name, opt in method.optimizers.items():
            base = 1e-4 / 2.5 if name == "disContent" else 1e-4
            assert opt.param_groups[0]["lr"] == pytest.approx(base * lambda_rule(epoch)), (name, epoch)
        for opt in method.optimizers.values():
            opt.step()  # no gradients: nothing moves, and the scheduler sees the usual order
        method.end_epoch(epoch)


def test_the_trainer_updates_in_the_authors_order(tiny_dataset, tmp_path):
    add_images(tiny_dataset, 4, 3)  # 8 paintings, 8 photos: 4 batches an epoch
    cfg = smoke(tiny_dataset, **{"data.max_images": 8, "train.epochs_constant": 1, "train.epochs_decay": 1})
    summary = Trainer(cfg, tmp_path / "run").fit(progress=False)
    assert summary["iterations"] == 8 and summary["epochs_done"] == 2
    rows = (tmp_path / "run" / "losses.csv").read_text().splitlines()
    header = rows[0].split(",")
    full = [line.split(",")[header.index("gan_a")] != "" for line in rows[1:]]
    # batch b is content-only unless (b + 1) % 3 == 0 or b is one of the last two batches
    assert full == [False, False, True, True] * 2
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert state["method"]["extra"] == {"total_it": 4}
    grid = Image.open(tmp_path / "run" / "samples" / "epoch_002.png")
    load = cfg.data.load_size  # whole test paintings at the training scale, four columns
    assert grid.size == (4 * load, cfg.train.sample_images * load)


RESUMED = {"data.max_images": 8, "train.epochs_constant": 2, "train.epochs_decay": 1, "train.checkpoint_every": 6}


def test_sigkill_between_a_content_only_and_a_full_update_then_resume_gives_identical_weights(tiny_dataset,
                                                                                             tmp_path):
    add_images(tiny_dataset, 4, 3)  # 4 batches an epoch: content, content, full, full
    a, state, b = kill_and_resume("drit", RESUMED, tiny_dataset, tmp_path, 7)  # iteration 7: last checkpoint at 6
    # the checkpoint of iteration 6 (epoch 2, batch 1: content only); batch 2, a full update, comes next
    assert (state["iteration"], state["epoch_iter"], state["method"]["extra"]["total_it"]) == (6, 4, 2)
    assert a["iteration"] == b["iteration"] == 12 and a["method"]["extra"] == b["method"]["extra"] == {"total_it": 6}
    for group in ("nets", "optimizers"):
        for net in a["method"][group]:
            flat_a, flat_b = _flat(a["method"][group][net]), _flat(b["method"][group][net])
            assert flat_a.keys() == flat_b.keys()
            for key in flat_a:
                assert _equal(flat_a[key], flat_b[key]), f"{group}.{net}.{key} differs after resume"
    rows = [line.split(",")[0] for line in (tmp_path / "killed" / "losses.csv").read_text().splitlines()[1:]]
    assert rows == [str(i) for i in range(1, 13)]  # the loss log has each iteration once


def _flat(tree, prefix=""):
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, value in enumerate(tree) for k, v in _flat(value, f"{prefix}{i}.").items()}
    return {prefix: tree}


def _equal(x, y) -> bool:
    return torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y


def test_translations_at_full_size_one_attribute_per_file_name(tiny_dataset, tmp_path):
    cfg = smoke(tiny_dataset)
    Trainer(cfg, tmp_path / "run").fit(progress=False)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    translator = load_translator(last)
    assert isinstance(translator, D.DritTranslator) and not translator.training

    paintings = tmp_path / "paintings"
    paintings.mkdir()
    source = tiny_dataset / "testA" / "testA_0.png"
    for name in ("first.png", "second.png"):  # one painting under two names: two attributes
        (paintings / name).write_bytes(source.read_bytes())
    Image.open(source).crop((0, 0, 37, 53)).save(paintings / "odd.png")  # not square, sides not multiples of 4
    out1 = translate_folder(translator, paintings, tmp_path / "out1", progress=False)
    out2 = translate_folder(load_translator(last), paintings, tmp_path / "out2", progress=False)
    images = {p.name: np.asarray(Image.open(p)) for p in out1}
    assert images["odd.png"].shape == (53, 37, 3) and images["first.png"].shape == (64, 64, 3)  # whole images
    for p, q in zip(out1, out2):  # the same file name gives the same attribute in any process
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(q))), p.name
    assert not np.array_equal(images["first.png"], images["second.png"])

    # the loaded translator is the trained one: same weights, same attribute for a name, outputs in [-1, 1]
    state = load_checkpoint(last)
    method = build_method(cfg, progress=False)
    method.load_state_dict(state["method"])
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    ours, loaded = method.translator(), load_translator(last)
    ours.reseed("first.png"), loaded.reseed("first.png")
    y = loaded(x)
    assert y.shape == x.shape and y.abs().max() <= 1 and torch.equal(ours(x), y)


@pytest.mark.parametrize("legacy", [False, True])
def test_a_file_in_the_authors_layout_loads_as_a_translator(tiny_dataset, tmp_path, legacy):
    method = build_method(smoke(tiny_dataset), progress=False)
    method.train_step(pair_batch(method.cfg))
    path = tmp_path / "drit.pth"
    torch.save(method.official_state(epoch=4), path, _use_new_zipfile_serialization=not legacy)
    state = torch.load(path, weights_only=True)
    assert set(state) == {*D.NETWORKS, *(f"{n}_opt" for n in D.NETWORKS), "ep", "total_it"}
    assert (state["ep"], state["total_it"]) == (4, 1)

    translator = load_translator(path, method="drit")
    x = torch.rand(2, 3, 36, 44) * 2 - 1
    translator.reseed(["a.jpg", "b.jpg"])
    method.translator().reseed(["a.jpg", "b.jpg"])
    assert torch.equal(translator(x), method.translator()(x))

    del state["gen"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"drit.pth.*not a DRIT checkpoint"):
        load_translator(path, method="drit")


def test_best_epoch_by_fid_is_kept(tiny_dataset, tmp_path):
    cfg = smoke(tiny_dataset, **{"train.epochs_constant": 1, "train.epochs_decay": 1, "train.validate_every": 1,
                                 "train.val_metric": "fid", "train.val_images": 4})
    assert cfg.train.patience is None  # as the paper preset: the whole schedule runs
    real = Validator(cfg)
    seen = []

    def validator(translator):  # the real FID, recorded with the weights it judged
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FID on 4 images
            value = real(translator)
        seen.append((value, {k: v.clone() for k, v in translator.state_dict().items()}))
        return value

    summary = Trainer(cfg, tmp_path / "run", validator=validator).fit(progress=False)
    assert summary["epochs_done"] == 2 and not summary["stopped_early"] and len(seen) == 2
    values = [v for v, _ in seen]
    assert [h["fid"] for h in summary["history"]] == values and all(np.isfinite(values))
    best_epoch = int(np.argmin(values)) + 1
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert (best["epoch"], best["metric"], best["value"]) == (best_epoch, "fid", min(values))
    weights = seen[best_epoch - 1][1]
    assert all(torch.equal(best["translator"][k], weights[k]) for k in weights)
    # the same attribute for a painting whatever was translated before: a validation repeats exactly
    translator = load_translator(tmp_path / "run" / "checkpoints" / "best.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        translator(torch.zeros(3, 3, 32, 32))  # draws from the unpinned stream first
        assert real(translator) == pytest.approx(min(values), rel=1e-9)


def test_best_epoch_is_kept_when_a_later_epoch_is_worse(tiny_dataset, tmp_path):
    scores = iter([5.0, 2.0, 4.0])
    cfg = smoke(tiny_dataset, **{"train.epochs_constant": 2, "train.epochs_decay": 1, "train.validate_every": 1})
    states = []

    def validator(translator):
        states.append({k: v.clone() for k, v in translator.state_dict().items()})
        return next(scores)

    summary = Trainer(cfg, tmp_path / "run", validator=validator).fit(progress=False)
    assert summary["epochs_done"] == 3 and summary["best_epoch"] == 2
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["epoch"] == 2 and all(torch.equal(best["translator"][k], states[1][k]) for k in states[1])
    assert not all(torch.equal(best["translator"][k], states[2][k]) for k in states[2])


def test_paper_preset_and_settings_that_cannot_train_are_refused():
    cfg = get_config("paper", method="drit", device="cpu")
    t = cfg.train
    assert (t.validate_every, t.val_metric, t.val_images, t.patience) == (1, "fid", None, None)
    assert (cfg.data.image_size, cfg.data.crop_margin, t.batch_size) == (216, 40, 2)
    with pytest.raises(ConfigError, match="batch_size >= 2"):
        get_config("smoke", {"train.batch_size": 1}, method="drit")
    with pytest.raises(ConfigError, match="crops of at least 212 px"):
        get_config("paper", {"data.image_size": 200}, method="drit")
    with pytest.raises(ConfigError, match="do not fit crops of 28 px"):
        get_config("smoke", {"drit.dis_layers": 4}, method="drit")
