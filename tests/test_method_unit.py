"""UNIT as a method of the kit: built from the config, trained by the one Trainer, resumed exactly, translated.

The network-level checks against the authors' code are in test_unit.py; here the numbers at the paper size are
the same reference (the authors' VAEGen / MsImageDis at configs/unit_summer2winter_yosemite256_folder.yaml), reached
through ``methods.get("unit")`` and the config.
"""
import copy

import pytest
import torch

from art2real import methods
from art2real.config import get_config, to_dict
from art2real.errors import CheckpointError, ConfigError
from art2real.nn.unit import (
    discriminator_losses,
    generator_losses,
    save_official_generators,
)
from art2real.train.checkpoint import load_checkpoint, save_checkpoint
from art2real.train.trainer import Trainer
from art2real.translate import load_translator, translate_tensor

from .conftest import assert_same_nets, kill_and_resume, six_a_side

CPU = torch.device("cpu")


def smoke(dataset, **overrides):
    return get_config("smoke", {"data.dataset": str(dataset), **overrides}, method="unit", device="cpu")


def batch(size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.rand(1, 3, size, size, generator=g) * 2 - 1,
            "B": torch.rand(1, 3, size, size, generator=g) * 2 - 1}


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_registered_in_table_order_before_cycle_gan():
    names = methods.names()
    assert names.index("unit") < names.index("cyclegan") < names.index("art2real")
    assert methods.by_row("UNIT") is methods.get("unit")
    assert methods.get("unit").trained and not methods.get("unit").uses_banks


def test_paper_config_builds_the_authors_networks_and_optimisers():
    cfg = get_config("paper", method="unit", device="cpu")
    method = methods.get("unit")(cfg, CPU)
    assert set(method.nets) == {"gen_a", "gen_b", "dis_a", "dis_b"}
    # the authors' VAEGen: 11,140,483 parameters, 48 keys; MsImageDis: 8,271,171, 30 keys
    for name in ("gen_a", "gen_b"):
        state = method.nets[name].state_dict()
        assert n_params(method.nets[name]) == 11_140_483 and len(state) == 48
        assert (list(state)[0], list(state)[-1]) == ("enc.model.0.conv.weight", "dec.model.5.conv.bias")
    for name in ("dis_a", "dis_b"):
        state = method.nets[name].state_dict()
        assert n_params(method.nets[name]) == 8_271_171 and len(state) == 30
        assert (list(state)[0], list(state)[-1]) == ("cnns.0.0.conv.weight", "cnns.2.4.bias")
    # one Adam for both generators, one for both discriminators: lr 1e-4, betas (0.5, 0.999), weight decay 1e-4
    for key, nets in (("gen", ("gen_a", "gen_b")), ("dis", ("dis_a", "dis_b"))):
        group = method.optimizers[key].param_groups[0]
        assert (group["lr"], group["betas"], group["weight_decay"]) == (1e-4, (0.5, 0.999), 1e-4)
        assert sum(p.numel() for p in group["params"]) == sum(n_params(method.nets[n]) for n in nets)
    # the translator: domain A's encoder and B's decoder, with a generator's keys, shared with the trained nets
    translator = method.translator()
    assert translator.enc is method.nets["gen_a"].enc and translator.dec is method.nets["gen_b"].dec
    built = methods.get("unit").build_translator(cfg)
    assert list(built.state_dict()) == list(method.translator_state()) == list(method.nets["gen_a"].state_dict())
    # the schedule: the authors' 1M iterations, lr halved every 100k, the final model (no validation)
    t, u = cfg.train, cfg.unit
    assert (t.max_iterations, u.step_size, u.gamma, t.validate_every, t.patience) == (1_000_000, 100_000, 0.5, 0,
                                                                                      None)
    assert t.epochs_constant + t.epochs_decay >= t.max_iterations  # the iteration cap ends the run
    assert (cfg.data.image_size, cfg.data.crop_margin, cfg.data.flip, t.batch_size) == (256, 0, True, 1)


def test_one_step_is_the_authors_update_in_their_order(tiny_dataset):
    """train_step = a discriminator update, then a generator update, with the config's weights and Adams."""
    cfg = smoke(tiny_dataset, **{"unit.recon_kl_w": 0.5, "unit.gan_w": 2.0})
    torch.manual_seed(0)
    method = methods.get("unit")(cfg, CPU)
    nets = copy.deepcopy(method.networks)
    adam = dict(lr=1e-4, betas=(0.5, 0.999), weight_decay=1e-4)
    opt_d = torch.optim.Adam(nets.discriminator_parameters(), **adam)
    opt_g = torch.optim.Adam(nets.generator_parameters(), **adam)
    b = batch()
    torch.manual_seed(1)
    losses = method.train_step(b)
    torch.manual_seed(1)
    opt_d.zero_grad()
    d = discriminator_losses(nets, b["A"], b["B"], gan_w=2.0)
    d["total"].backward()
    opt_d.step()
    opt_g.zero_grad()
    g = generator_losses(nets, b["A"], b["B"], gan_w=2.0, recon_kl_w=0.5)
    g["total"].backward()
    opt_g.step()
    for name, net in method.nets.items():
        theirs = dict(getattr(nets, name).named_parameters())
        for key, p in net.named_parameters():
            assert torch.allclose(p, theirs[key], atol=1e-7), f"{name}.{key}"
    assert list(losses) == list(method.loss_names)
    assert losses["dis_a"] == pytest.approx(2.0 * d["dis_a"].item())  # logged as parts of the objectives
    assert losses["kl_b"] == pytest.approx(0.5 * g["kl_b"].item())
    assert losses["cyc_x_a"] == pytest.approx(10.0 * g["cyc_x_a"].item())


def test_a_training_step_changes_every_network(tiny_dataset):
    method = methods.get("unit")(smoke(tiny_dataset), CPU)
    before = {k: {n: p.clone() for n, p in net.named_parameters()} for k, net in method.nets.items()}
    losses = method.train_step(batch())
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    for k, net in method.nets.items():
        changed = [n for n, p in net.named_parameters() if not torch.equal(p, before[k][n])]
        assert changed, f"{k} did not change"
        # every weight changes (biases right before an instance norm have no gradient, as in the authors' nets)
        weights = [n for n, _ in net.named_parameters() if n.endswith("weight")]
        assert set(weights) <= set(changed), f"{k}: {sorted(set(weights) - set(changed))[:3]} did not change"


def test_lr_halves_per_iteration_as_the_authors_and_resumes(tiny_dataset):
    """Their StepLR steps at the start of each iteration: 0-based iteration i runs at lr * 0.5 ** ((i+1) // 3)."""
    cfg = smoke(tiny_dataset, **{"unit.step_size": 3})
    method = methods.get("unit")(cfg, CPU)
    used = []
    for i in range(4):
        method.train_step(batch(seed=i))
        used.append(method.lr)
        method.end_epoch(0)  # an epoch end changes nothing: the lr follows iterations
    state = copy.deepcopy(method.state_dict())
    resumed = methods.get("unit")(cfg, CPU)
    resumed.load_state_dict(state)
    for i in range(4, 9):
        resumed.train_step(batch(seed=i))
        used.append(resumed.lr)
    assert used == pytest.approx([1e-4 * 0.5 ** ((i + 1) // 3) for i in range(9)])
    for opt in resumed.optimizers.values():
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-4 * 0.5 ** (10 // 3))  # the next iteration's


def test_trainer_run_translator_and_last_checkpoint_agree(tiny_dataset, tmp_path):
    cfg = smoke(tiny_dataset)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    summary = trainer.fit(progress=False)
    run = tmp_path / "run"
    assert summary["iterations"] == 8 and summary["epochs_done"] == 2  # smoke: 4 images a domain
    header = (run / "losses.csv").read_text().splitlines()[0].split(",")
    assert header == ["iteration", "epoch", *methods.get("unit").loss_names, "lr", "seconds"]
    from PIL import Image

    grid = Image.open(run / "samples" / "epoch_002.png")
    assert grid.size == (3 * 32, 2 * 32)  # painting | A->B | A->B->A, two paintings
    assert not (run / "checkpoints" / "best.pt").exists()  # the final model: no validation

    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ours = trainer.method.translator()(x)
        again = trainer.method.translator()(x)
        n = trainer.method.networks
        direct = n.gen_b.dec(n.gen_a.enc(x))
    assert ours.shape == x.shape and ours.abs().max() <= 1
    assert torch.equal(ours, again) and torch.equal(ours, direct)  # the latent mean: deterministic
    loaded = load_translator(run / "checkpoints" / "last.pt")
    with torch.no_grad():
        assert torch.equal(loaded(x), ours)
        odd = torch.rand(1, 3, 30, 37) * 2 - 1  # the kit pads to the 4-px grid UNIT needs
        assert translate_tensor(loaded, odd).shape == odd.shape


def test_official_layout_file_loads_through_load_translator(tiny_dataset, tmp_path):
    torch.manual_seed(3)
    method = methods.get("unit")(smoke(tiny_dataset), CPU)
    method.train_step(batch())
    path = tmp_path / "gen_00000001.pt"
    save_official_generators(path, method.nets["gen_a"], method.nets["gen_b"])
    net = load_translator(path, method="unit")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(net(x), method.translator()(x))
    torch.save({"a": method.nets["dis_a"].state_dict(), "b": method.nets["dis_b"].state_dict()},
               tmp_path / "dis_00000001.pt")
    with pytest.raises(CheckpointError, match="discriminators"):
        load_translator(tmp_path / "dis_00000001.pt", method="unit")
    torch.save(method.nets["gen_a"].state_dict(), tmp_path / "one_generator.pt")
    with pytest.raises(CheckpointError, match=r"one_generator.pt is not a UNIT generator file"):
        load_translator(tmp_path / "one_generator.pt", method="unit")


def test_unit_settings_are_checked():
    with pytest.raises(ConfigError, match="unit.gan_type must be one of lsgan, nsgan"):
        get_config("smoke", {"unit.gan_type": "wgan"}, method="unit")
    with pytest.raises(ConfigError, match="unit.n_downsample must be >= 1 and <= 2"):
        get_config("smoke", {"unit.n_downsample": 3}, method="unit")
    with pytest.raises(ConfigError, match="needs images of at least 64 px.*unit.dis_num_scales"):
        get_config("smoke", {"unit.dis_num_scales": 3, "unit.dis_n_layer": 4}, method="unit")
    get_config("smoke", {"unit.dis_num_scales": 3, "unit.dis_n_layer": 4}, method="cyclegan")  # not UNIT's rule


def test_a_run_saved_before_the_unit_section_resumes(tiny_dataset, tmp_path):
    cfg = get_config("smoke", {"data.dataset": str(tiny_dataset), "train.max_iterations": 2}, method="cyclegan")
    Trainer(cfg, tmp_path / "run").fit(progress=False)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    del state["config"]["unit"]
    save_checkpoint(last.parent, state)
    cfg.train.max_iterations = 3
    assert Trainer(cfg, tmp_path / "run").fit(progress=False)["iterations"] == 3
    assert "unit" in to_dict(cfg)


RESUMED = {"data.max_images": 6, "train.epochs_constant": 4, "train.checkpoint_every": 4, "unit.step_size": 5,
           "data.crop_margin": 8, "data.flip": True}


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tiny_dataset, tmp_path):
    six_a_side(tiny_dataset)
    a, at_kill, b = kill_and_resume("unit", RESUMED, tiny_dataset, tmp_path, 10)  # killed at 10, saved at 8
    assert at_kill["epoch_iter"] > 0, "killed mid-epoch, after a mid-epoch checkpoint"
    assert a["iteration"] == b["iteration"] == 24
    assert set(a["method"]["nets"]) == {"gen_a", "gen_b", "dis_a", "dis_b"}
    assert_same_nets(a, b)
    log = tmp_path / "killed" / "losses.csv"
    rows = [line.split(",") for line in log.read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == [str(i) for i in range(1, 25)]  # the loss log has each iteration once
    # the lr column across the kill: iteration n (1-based) ran at 1e-4 * 0.5 ** (n // 5)
    lr = log.read_text().splitlines()[0].split(",").index("lr")
    assert [float(r[lr]) for r in rows] == pytest.approx([1e-4 * 0.5 ** (n // 5) for n in range(1, 25)])


def test_tables_name_the_iteration_of_an_iteration_counted_run():
    from art2real.chain import _summary
    from art2real.methods.unit import DEMO_EPOCHS
    from art2real.runs import Run

    state = {"config": to_dict(get_config("paper", method="unit")), "iteration": 1234, "epoch": 3}
    assert _summary(Run("demo", "unit", "paper"), "last.pt", state) == \
        "paper seed 0: last.pt, iteration 1234 of 1000000 (no validation)"
    state["config"] = to_dict(get_config("demo", method="unit"))
    assert _summary(Run("demo", "unit", "demo"), "last.pt", state).endswith(f"epoch 3 of {DEMO_EPOCHS} (no validation)")
