"""CUT, FastCUT and both with memory banks as methods of the kit: presets, networks at the paper size, one step,
exact resume after SIGKILL, translators and files, whole-image decay epochs.

The networks and PatchNCE themselves are tested against the authors' code in test_cut.py."""

import numpy as np
import pytest
import torch
from PIL import Image

from art2real import methods
from art2real.config import Config, get_config, to_dict
from art2real.data.dataset import UnpairedDataset
from art2real.errors import CheckpointError, ConfigError
from art2real.nn.cut import CutTranslator
from art2real.nn.networks import ResnetGenerator, count_parameters
from art2real.train.trainer import Trainer, build_method, config_changes
from art2real.translate import load_translator

from .conftest import REPO, assert_same_nets, kill_and_resume, six_a_side
from .test_cut import _official_layout_file

CUT_FAMILY = ("cut", "cut_banks", "fastcut", "fastcut_banks")


def smoke(dataset, method="cut", **overrides):
    return get_config("smoke", {"data.dataset": str(dataset), **overrides}, method=method)


# ---------------------------------------------------------------- registry and presets

def test_registered_after_art2real_beyond_the_paper():
    names = methods.names()
    assert names[names.index("art2real") + 1:][:4] == ["cut", "cut_banks", "fastcut", "fastcut_banks"]
    rows = {k: methods.get(k).row for k in CUT_FAMILY}
    assert rows == {"cut": "CUT", "cut_banks": "CUT + memory banks", "fastcut": "FastCUT",
                    "fastcut_banks": "FastCUT + memory banks"}
    assert not any(methods.get(k).in_paper for k in CUT_FAMILY)
    assert [k for k in CUT_FAMILY if methods.get(k).uses_banks] == ["cut_banks", "fastcut_banks"]


def test_the_chain_trains_cut_by_default_and_its_variants_when_named():
    from art2real.chain import chain_methods

    default = chain_methods()
    assert {"cyclegan", "art2real", "cut"} <= set(default)  # `make demo`: the paper's rows and CUT
    assert not {"cut_banks", "fastcut", "fastcut_banks"} & set(default)
    assert chain_methods(["cut_banks", "art2real"]) == ["cut_banks", "art2real"]
    with pytest.raises(KeyError, match="unknown method"):
        chain_methods(["cut_bank"])


def test_paper_preset_is_the_authors_cut_and_fastcut():
    cut, fast = get_config("paper", method="cut"), get_config("paper", method="fastcut")
    # their --CUT_mode CUT: lambda_NCE 1, identity NCE, no flip equivariance, 200 + 200 epochs
    assert (cut.cut.lambda_nce, cut.cut.nce_idt, cut.cut.flip_equivariance) == (1.0, True, False)
    assert (cut.train.epochs_constant, cut.train.epochs_decay) == (200, 200)
    # --CUT_mode FastCUT: lambda_NCE 10, no identity NCE, flip equivariance, 150 + 50 epochs
    assert (fast.cut.lambda_nce, fast.cut.nce_idt, fast.cut.flip_equivariance) == (10.0, False, True)
    assert (fast.train.epochs_constant, fast.train.epochs_decay) == (150, 50)
    for c in (cut, fast):
        assert (c.model.ngf, c.model.n_blocks, c.model.ndf, c.model.n_layers_d) == (64, 9, 64, 3)
        assert (c.cut.nce_layers, c.cut.nce_t, c.cut.num_patches, c.cut.netf_nc) == ((0, 4, 8, 12, 16), 0.07, 256, 256)
        assert not c.cut.nce_includes_all_negatives_from_minibatch
        assert (c.train.lr, c.train.betas, c.train.batch_size, c.train.pool_size) == (2e-4, (0.5, 0.999), 1, 0)
        # load 286, crop 256, flip; whole images in the decay epochs
        assert (c.data.image_size, c.data.crop_margin, c.data.flip, c.data.crop_in_decay) == (256, 30, True, False)
    # the bank variants differ from their base only in the method
    for base, banks in (("cut", "cut_banks"), ("fastcut", "fastcut_banks")):
        for preset in ("smoke", "demo", "cpu", "paper"):
            a, b = to_dict(get_config(preset, method=base)), to_dict(get_config(preset, method=banks))
            assert {k for k in a if a[k] != b[k]} == {"method"}, preset
    # other methods keep the kit's data and pool settings
    assert get_config("paper", method="art2real").data.crop_in_decay


def test_nce_layers_must_lie_in_the_encoder():
    with pytest.raises(ConfigError, match=r"cut.nce_layers.*n_blocks >= 5"):
        get_config("smoke", {"model.n_blocks": 4}, method="cut")
    with pytest.raises(ConfigError, match="strictly increasing"):
        get_config("smoke", {"cut.nce_layers": [4, 0]}, method="fastcut")
    get_config("smoke", {"model.n_blocks": 4, "cut.nce_layers": [0, 4, 8, 12]}, method="cut")
    get_config("smoke", {"model.n_blocks": 1}, method="cyclegan")  # other methods do not care


def test_a_run_made_before_new_settings_existed_resumes():
    saved = to_dict(get_config("smoke", method="cyclegan"))
    del saved["cut"], saved["data"]["crop_in_decay"]
    assert config_changes(saved, to_dict(get_config("smoke", method="cyclegan"))) == {}
    changes = config_changes(saved, to_dict(get_config("smoke", {"data.crop_in_decay": False}, method="cyclegan")))
    assert changes == {"data.crop_in_decay": (True, False)}  # the old run had the default: a change
    assert Config().data.crop_in_decay


# ---------------------------------------------------------------- networks through the methods, paper size

@pytest.mark.parametrize("key", ["cut", "fastcut"])
def test_parameter_counts_and_keys_at_paper_size(key, official_shapes):
    cfg = get_config("paper", method=key, device="cpu")
    method = methods.get(key)(cfg, torch.device("cpu"))
    counts = {name: count_parameters(net) for name, net in method.nets.items()}
    assert counts == {"G": 11_378_179, "D": 2_764_737, "F": 560_384}  # the authors' CUTModel at its defaults
    # F exists from the start: its optimiser and the checkpoint hold every parameter before any step
    assert sum(p.numel() for g in method.opt_F.param_groups for p in g["params"]) == 560_384
    for name in "GDF":
        state = method.state_dict()["nets"][name]
        assert {k: list(v.shape) for k, v in state.items()} == official_shapes[name], name
    assert {k: list(v.shape) for k, v in method.translator_state().items()} == official_shapes["G"]
    assert set(method.schedulers) == set(method.optimizers) == {"G", "D", "F"}


@pytest.fixture(scope="module")
def official_shapes() -> dict:
    import json

    return json.loads((REPO / "tests" / "data" / "cut_official_shapes.json").read_text())


# ---------------------------------------------------------------- one step

def _method(cfg):
    return build_method(cfg, progress=False)


def _batch(dataset, cfg, index=0):
    from torch.utils.data import default_collate

    data = UnpairedDataset(dataset, cfg.data.image_size, max_images=cfg.data.max_images,
                           crop_margin=cfg.data.crop_margin, flip=cfg.data.flip, seed=cfg.seed)
    return default_collate([data.item(0, index)])


def _params(method):
    return {name: {k: v.detach().clone() for k, v in net.state_dict().items()} for name, net in method.nets.items()}


@pytest.mark.parametrize("key", CUT_FAMILY)
def test_one_step_changes_G_D_and_F(key, tiny_dataset):
    cfg = smoke(tiny_dataset, key)
    method = _method(cfg)
    before = _params(method)
    losses = method.train_step(_batch(tiny_dataset, cfg))
    expected = {"G_GAN", "NCE", "D"} | ({"NCE_Y"} if key.startswith("cut") else set()) | \
        ({"cx"} if key.endswith("_banks") else set())
    assert set(losses) == expected == set(method.loss_names)
    assert all(np.isfinite(v) for v in losses.values())
    after = _params(method)
    for name in ("G", "D", "F"):
        changed = [k for k in before[name] if not torch.equal(before[name][k], after[name][k])]
        learnable = [k for k in before[name] if not k.endswith(".filt")]  # blur kernels are fixed
        assert len(changed) >= len(learnable) // 2, name
        assert not any(k.endswith(".filt") for k in changed)


@pytest.mark.parametrize("base", ["cut", "fastcut"])
def test_the_contextual_loss_moves_G_and_only_G(base, tiny_dataset):
    """The same seed, batch and draws, with and without memory banks: D steps first and F learns from PatchNCE
    alone, so both end equal; G differs, by the contextual loss of G(x)."""
    plain, banks = (_method(smoke(tiny_dataset, key)) for key in (base, f"{base}_banks"))
    batch = _batch(tiny_dataset, plain.cfg)
    start = _params(plain)
    assert all(torch.equal(start[n][k], _params(banks)[n][k]) for n in start for k in start[n])
    plain_losses, bank_losses = plain.train_step(batch), banks.train_step(batch)
    assert bank_losses["cx"] > 0 and "cx" not in plain_losses
    assert {k: v for k, v in bank_losses.items() if k != "cx"} == pytest.approx(plain_losses, rel=0, abs=0)
    a, b = _params(plain), _params(banks)
    for name in ("D", "F"):
        assert all(torch.equal(a[name][k], b[name][k]) for k in a[name]), name
    # Adam's first step moves each weight by about lr * sign(gradient): where the contextual term flips a sign
    # the two runs part by about 2 lr
    assert max((a["G"][k] - b["G"][k]).abs().max().item() for k in a["G"]) > plain.cfg.train.lr


def test_fastcut_mirrors_some_steps_from_the_seeded_rng(tiny_dataset):
    cfg = smoke(tiny_dataset, "fastcut")
    batch = _batch(tiny_dataset, cfg)
    x = batch["A"]

    def mirrored() -> list[bool]:
        method = _method(cfg)  # seeded by the run's seed
        inputs = []
        method.G.register_forward_pre_hook(lambda module, args: inputs.append(args[0].clone()))
        for _ in range(12):
            method.train_step(batch)
        assert all(torch.equal(i, x) or torch.equal(i, x.flip(3)) for i in inputs)  # x alone: no identity pass
        return [torch.equal(i, x.flip(3)) for i in inputs]

    first = mirrored()
    assert len(first) == 12 and 0 < sum(first) < 12
    assert mirrored() == first
    cut = _method(smoke(tiny_dataset, "cut"))
    inputs = []
    cut.G.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    cut.train_step(batch)
    assert torch.equal(inputs[0], torch.cat([x, batch["B"]]))  # CUT: x and y through G together


# ---------------------------------------------------------------- resume after SIGKILL

RESUMED = {"data.max_images": 6, "train.epochs_constant": 2, "train.epochs_decay": 2, "train.checkpoint_every": 4,
           "cx.mask_schedule": "paper", "cx.mask_start": 1, "cx.mask_every": 1}


@pytest.mark.parametrize("key", ["cut", "cut_banks"])
def test_sigkill_mid_epoch_then_resume_gives_identical_weights(key, tiny_dataset, tmp_path):
    six_a_side(tiny_dataset)
    a, at_kill, b = kill_and_resume(key, RESUMED, tiny_dataset, tmp_path, 10, timeout=300)
    assert at_kill["epoch_iter"] > 0, "killed mid-epoch, after a mid-epoch checkpoint"
    assert a["iteration"] == b["iteration"] == 24
    assert set(a["method"]["nets"]) == {"G", "D", "F"}
    if key == "cut_banks":
        assert a["method"]["context"]["masks_from"] == b["method"]["context"]["masks_from"] == "G(x) at epoch 3"
    assert_same_nets(a, b)
    for name in ("G", "D", "F"):  # the optimisers' moments too
        for (i, s), (_, t) in zip(a["method"]["optimizers"][name]["state"].items(),
                                  b["method"]["optimizers"][name]["state"].items()):
            assert torch.equal(s["exp_avg"], t["exp_avg"]), f"{name} moment {i}"
    rows = [line.split(",")[0] for line in (tmp_path / "killed" / "losses.csv").read_text().splitlines()[1:]]
    assert rows == [str(i) for i in range(1, 25)]


# ---------------------------------------------------------------- translators and files

def test_translator_shape_range_and_last_checkpoint(tiny_dataset, tmp_path):
    cfg = smoke(tiny_dataset, "fastcut")
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    trainer.fit(progress=False)
    translator = trainer.method.translator()
    assert isinstance(translator, CutTranslator) and translator.model is trainer.method.G.model
    loaded = load_translator(tmp_path / "run" / "checkpoints" / "last.pt")
    assert isinstance(loaded, CutTranslator) and not loaded.training
    torch.manual_seed(1)
    with torch.no_grad():
        for shape in ((2, 3, 32, 32), (1, 3, 30, 45)):
            x = torch.rand(*shape) * 2 - 1
            y = loaded(x)
            assert y.shape == x.shape and -1 <= y.min() and y.max() <= 1
            torch.testing.assert_close(y, translator(x), rtol=0, atol=0)
    grid = tmp_path / "run" / "samples" / "epoch_002.png"
    load = cfg.data.load_size  # whole paintings at the training scale
    assert Image.open(grid).size == (2 * load, 2 * load)  # painting | G(x), two sample paintings
    assert trainer.method.sample_titles == ("painting", "G(x)")


def test_an_official_file_loads_through_the_method(tmp_path, official_shapes):
    path = tmp_path / "latest_net_G.pth"
    state = _official_layout_file(path, official_shapes["G"])
    translator = load_translator(path, method="cut")
    assert isinstance(translator, CutTranslator) and translator.name == "CUT"
    for key, value in translator.state_dict().items():
        assert torch.equal(value, state[key]), key
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(translator(x), load_translator(path, method="fastcut")(x), rtol=0, atol=0)
    # the other way round, each layout names the method that reads it
    with pytest.raises(CheckpointError, match="looks like a CUT generator .blur filters.: use --method cut"):
        load_translator(path)
    torch.save(ResnetGenerator(ngf=4, n_blocks=2).state_dict(), tmp_path / "cyclegan.pth")
    with pytest.raises(CheckpointError, match="method 'cyclegan'"):
        load_translator(tmp_path / "cyclegan.pth", method="cut")


# ---------------------------------------------------------------- whole images in the decay epochs

def test_decay_epochs_see_whole_images_and_masks_follow(tmp_path):
    from art2real.data.dataset import Placement

    for split in ("trainA", "trainB"):
        (tmp_path / split).mkdir()
        for i in range(3):
            arr = np.zeros((50, 50, 3), np.uint8)
            arr[..., 2] = 255
            arr[4 * i:4 * i + 20, 3 + 6 * i:28 + 6 * i] = (255, 0, 0)
            Image.fromarray(arr).save(tmp_path / split / f"{split}_{i}.png")
    data = UnpairedDataset(tmp_path, 32, crop_margin=8, flip=True, seed=0, crop_until=2)
    whole = {p.name: torch.from_numpy(np.array(Image.open(p).resize((32, 32), Image.Resampling.BICUBIC)))
             .permute(2, 0, 1) / 127.5 - 1 for p in (tmp_path / "trainA").iterdir()}
    for epoch in range(4):
        for i in range(len(data)):
            item = data.item(epoch, i)
            place = Placement.from_tensor(item["A_place"])
            assert (place.load == 40) == (epoch < 2), (epoch, place)
            if epoch >= 2:  # the whole painting, resized straight to 32 px (and maybe mirrored)
                expected = whole[item["A_name"]].flip(2) if place.flip else whole[item["A_name"]]
                torch.testing.assert_close(item["A"], expected, rtol=0, atol=1e-6)
            # a mask stored at the cropping load size (40) is resized with the painting in whole-image epochs
            stored = torch.from_numpy(np.asarray(Image.open(tmp_path / "trainA" / item["A_name"])
                                                 .resize((40, 40), Image.Resampling.NEAREST))[..., 0] > 127).long()
            labels = place.labels(stored)
            truth = (item["A"][0] > 0).long()
            assert labels.shape == truth.shape == (32, 32)
            assert (labels == truth).float().mean() > 0.93, (epoch, i)
