"""UNIT networks and losses against the authors' code (mingyuliutw/UNIT, master @ 28d5982).

Reference numbers were measured by instantiating the authors' ``VAEGen`` and ``MsImageDis`` with
``configs/unit_summer2winter_yosemite256_folder.yaml`` (the 256 px folder config); ``tests/data/unit_reference.pt``
holds a tiny generator and discriminator built and run by their ``networks.py`` (``tests/data/make_unit_reference.py``),
so the forward passes here are compared with theirs, not with ours.
"""
from pathlib import Path

import pytest
import torch

from art2real.nn.unit import (Conv2dBlock, LayerNorm, MultiScaleDiscriminator, UnitGenerator, UnitNetworks,
                              UnitTranslator, discriminator_losses, gan_dis_loss, gan_gen_loss, generator_losses,
                              generator_sizes, kl_loss, load_generator_state, load_official_generators,
                              recon_loss, save_official_generators, stretch_like_authors)

REFERENCE = Path(__file__).parent / "data" / "unit_reference.pt"
PAPER_GEN = dict(dim=64, n_downsample=2, n_res=4)  # gen: block of the 256 px folder config
PAPER_DIS = dict(dim=64, n_layer=4, num_scales=3)  # dis: block of the same config


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def tiny_nets(**kw):
    sizes = dict(dim=4, n_res=1, dis_dim=4, dis_n_layer=2, dis_num_scales=2)
    return UnitNetworks(**{**sizes, **kw})


def test_parameter_counts_at_the_paper_size_equal_the_authors():
    gen = UnitGenerator(**PAPER_GEN)
    # authors' VAEGen(3, gen): 11,140,483 = enc 5,385,856 + dec 5,754,627; MsImageDis(3, dis): 8,271,171
    assert n_params(gen) == 11_140_483
    assert (n_params(gen.enc), n_params(gen.dec)) == (5_385_856, 5_754_627)
    assert n_params(MultiScaleDiscriminator(**PAPER_DIS)) == 8_271_171


def test_state_dict_keys_at_the_paper_size_equal_the_authors():
    gen = UnitGenerator(**PAPER_GEN).state_dict()
    dis = MultiScaleDiscriminator(**PAPER_DIS).state_dict()
    assert (len(gen), len(dis)) == (48, 30)  # the authors' VAEGen / MsImageDis state_dicts
    gen_keys, dis_keys = list(gen), list(dis)
    assert gen_keys[:4] == ["enc.model.0.conv.weight", "enc.model.0.conv.bias", "enc.model.1.conv.weight",
                            "enc.model.1.conv.bias"]
    assert gen_keys[20:24] == ["enc.model.3.model.3.model.1.conv.weight", "enc.model.3.model.3.model.1.conv.bias",
                               "dec.model.0.model.0.model.0.conv.weight", "dec.model.0.model.0.model.0.conv.bias"]
    assert gen_keys[-6:] == ["dec.model.4.norm.gamma", "dec.model.4.norm.beta", "dec.model.4.conv.weight",
                             "dec.model.4.conv.bias", "dec.model.5.conv.weight", "dec.model.5.conv.bias"]
    assert dis_keys[:2] == ["cnns.0.0.conv.weight", "cnns.0.0.conv.bias"]
    assert dis_keys[-4:] == ["cnns.2.3.conv.weight", "cnns.2.3.conv.bias", "cnns.2.4.weight", "cnns.2.4.bias"]
    shapes = {"enc.model.0.conv.weight": (64, 3, 7, 7), "enc.model.2.conv.weight": (256, 128, 4, 4),
              "dec.model.2.norm.gamma": (128,), "dec.model.2.conv.weight": (128, 256, 5, 5),
              "dec.model.5.conv.weight": (3, 64, 7, 7)}
    assert {k: tuple(gen[k].shape) for k in shapes} == shapes
    assert tuple(dis["cnns.0.3.conv.weight"].shape) == (512, 256, 4, 4)
    assert tuple(dis["cnns.1.4.weight"].shape) == (1, 512, 1, 1)


def test_forward_passes_equal_the_authors_networks():
    ref = torch.load(REFERENCE, weights_only=True)
    g, d = ref["gen_sizes"], ref["dis_sizes"]
    gen = UnitGenerator(dim=g["dim"], n_downsample=g["n_downsample"], n_res=g["n_res"])
    load_generator_state(gen, ref["gen"])
    dis = MultiScaleDiscriminator(dim=d["dim"], n_layer=d["n_layer"], num_scales=d["num_scales"])
    dis.load_state_dict(ref["dis_a"], strict=True)
    with torch.no_grad():
        h = gen.enc(ref["x"])
        assert torch.allclose(h, ref["h"], atol=1e-5)
        assert torch.allclose(gen.dec(h), ref["x_recon"], atol=1e-5)
        assert torch.allclose(gen.dec(h[:1]), ref["x_recon_first"], atol=1e-5)  # their batch-1 LayerNorm branch
        outs = dis(ref["x"])
    assert len(outs) == len(ref["dis_a_outputs"])
    for ours, theirs in zip(outs, ref["dis_a_outputs"]):
        assert torch.allclose(ours, theirs, atol=1e-5)


def test_layer_norm_uses_one_unbiased_std_per_sample():
    torch.manual_seed(0)
    ln = LayerNorm(3)
    x = torch.randn(2, 3, 4, 5) * 3 + 1
    y = ln(x)
    flat = x[1].flatten()
    expected = (x[1] - flat.mean()) / (flat.std(unbiased=True) + 1e-5)
    assert torch.allclose(y[1], expected * ln.gamma.view(3, 1, 1) + ln.beta.view(3, 1, 1), atol=1e-6)
    assert 0 <= ln.gamma.min() and ln.gamma.max() < 1 and ln.beta.abs().sum() == 0


def test_official_file_layout_loads_into_the_translator(tmp_path):
    torch.manual_seed(0)
    nets = tiny_nets()
    path = tmp_path / "gen_00010000.pt"
    save_official_generators(path, nets.gen_a, nets.gen_b)
    state = torch.load(path, weights_only=True)
    assert set(state) == {"a", "b"} and "enc.model.0.conv.weight" in state["a"]
    translator = UnitTranslator.from_file(path)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = nets.gen_b.dec(nets.gen_a.enc(x))  # A -> B from the latent mean
        assert torch.equal(translator(x), expected)
        assert torch.equal(UnitTranslator.from_generators(nets.gen_a, nets.gen_b)(x), expected)
        assert torch.equal(UnitTranslator.from_file(path, a2b=False)(x), nets.gen_a.dec(nets.gen_b.enc(x)))
    assert generator_sizes(state["a"]) == {"in_ch": 3, "dim": 4, "n_downsample": 2, "n_res": 1}
    other = UnitGenerator(in_ch=1, dim=2, n_downsample=3, n_res=0).state_dict()
    assert generator_sizes(other) == {"in_ch": 1, "dim": 2, "n_downsample": 3, "n_res": 0}


def test_pytorch03_instance_norm_statistics_are_dropped_and_mismatches_named(tmp_path):
    nets = tiny_nets()
    state = {"a": dict(nets.gen_a.state_dict()), "b": dict(nets.gen_b.state_dict())}
    for side in state.values():  # what the authors' PyTorch 0.3 files carry (their pytorch03_to_pytorch04)
        side["enc.model.0.norm.running_mean"] = torch.zeros(4)
        side["dec.model.0.model.0.model.1.norm.running_var"] = torch.ones(16)
    gen_a, gen_b = UnitGenerator(dim=4, n_res=1), UnitGenerator(dim=4, n_res=1)
    load_official_generators(state, gen_a, gen_b)
    assert all(torch.equal(v, gen_b.state_dict()[k]) for k, v in nets.gen_b.state_dict().items())
    with pytest.raises(ValueError, match=r"missing keys.*'n_res': 1"):
        load_official_generators(state, UnitGenerator(dim=4, n_res=2), UnitGenerator(dim=4, n_res=2))
    with pytest.raises(ValueError, match=r"shape mismatches.*'dim': 4"):
        load_official_generators(state, UnitGenerator(dim=8, n_res=1), UnitGenerator(dim=8, n_res=1))
    state["a"]["dec.model.2.norm.running_mean"] = torch.zeros(8)  # LayerNorm has no such buffer: refused
    with pytest.raises(ValueError, match="unexpected keys"):
        load_official_generators(state, gen_a, gen_b)
    with pytest.raises(ValueError, match="discriminators"):
        load_official_generators({"a": nets.dis_a.state_dict(), "b": nets.dis_b.state_dict()}, gen_a, gen_b)
    torch.save({"gen": {}, "dis": {}}, tmp_path / "optimizer.pt")
    with pytest.raises(ValueError, match="not a UNIT generator file"):
        UnitTranslator.from_file(tmp_path / "optimizer.pt")


def test_translator_output_shape_range_and_determinism():
    torch.manual_seed(0)
    nets = tiny_nets()
    translator = UnitTranslator.from_generators(nets.gen_a, nets.gen_b)
    x = torch.rand(1, 3, 20, 28) * 2 - 1
    with torch.no_grad():
        y = translator(x)
        assert torch.equal(y, translator(x))  # no latent noise at test time
    assert y.shape == x.shape and y.abs().max() <= 1
    with pytest.raises(ValueError, match="multiples of 4"):
        translator(torch.zeros(1, 3, 18, 28))
    from art2real.translate import translate_tensor  # the kit's inference pads odd sizes, as it does for CycleGAN
    assert translate_tensor(translator, torch.zeros(1, 3, 18, 29)).shape == (1, 3, 18, 29)
    with pytest.raises(ValueError, match="at least 8 px"):
        nets.dis_a(torch.zeros(1, 3, 4, 4))


def test_losses_on_closed_form_cases():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert recon_loss(x, x) == 0
    assert torch.isclose(recon_loss(torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)), torch.tensor(0.5))
    assert kl_loss(torch.zeros(2, 16, 4, 4)) == 0
    assert torch.isclose(kl_loss(torch.full((2, 16, 4, 4), 3.0)), torch.tensor(9.0))  # mean(h^2), their scaling
    ones, zeros = [torch.ones(1, 1, 4, 4), torch.ones(1, 1, 2, 2)], [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
    assert gan_dis_loss(zeros, ones) == 0 and gan_gen_loss(ones) == 0  # perfect D / perfect G
    assert gan_dis_loss(ones, zeros) == 4  # 1 + 1 per scale, summed over the two scales
    assert gan_gen_loss(zeros) == 2
    half = [torch.zeros(1, 1, 3, 3)]
    assert torch.isclose(gan_dis_loss(half, half, "nsgan"), 2 * torch.log(torch.tensor(2.0)))


def test_generator_objective_is_the_authors_weighted_sum():
    torch.manual_seed(0)
    nets = tiny_nets()
    x_a, x_b = torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16) * 2 - 1
    t = generator_losses(nets, x_a, x_b)
    expected = (t["adv_a"] + t["adv_b"] + 10 * (t["recon_x_a"] + t["recon_x_b"] + t["cyc_x_a"] + t["cyc_x_b"])
                + 0.01 * (t["kl_a"] + t["kl_b"] + t["kl_cyc_aba"] + t["kl_cyc_bab"]))
    assert torch.isclose(t["total"], expected)
    only_gan = generator_losses(nets, x_a, x_b, recon_x_w=0, recon_kl_w=0, recon_x_cyc_w=0, recon_kl_cyc_w=0)
    assert torch.isclose(only_gan["total"], only_gan["adv_a"] + only_gan["adv_b"])


def test_one_training_step_changes_every_network():
    torch.manual_seed(0)
    nets = tiny_nets()
    adam = dict(lr=1e-4, betas=(0.5, 0.999), weight_decay=1e-4)  # the authors' optimiser settings
    opt_d = torch.optim.Adam(nets.discriminator_parameters(), **adam)
    opt_g = torch.optim.Adam(nets.generator_parameters(), **adam)
    before = {k: v.clone() for k, v in nets.state_dict().items()}
    x_a, x_b = torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16) * 2 - 1
    opt_d.zero_grad()  # the authors' order: dis_update, then gen_update, each with its own forward
    discriminator_losses(nets, x_a, x_b)["total"].backward()
    opt_d.step()
    opt_g.zero_grad()
    generator_losses(nets, x_a, x_b)["total"].backward()
    opt_g.step()
    after = nets.state_dict()
    # a conv bias right before an instance norm is subtracted out again: its gradient is zero up to rounding, so
    # whether Adam moves it is not a property of the method
    cancelled = {f"{name}.conv.bias" for name, m in nets.named_modules()
                 if isinstance(m, Conv2dBlock) and isinstance(m.norm, torch.nn.InstanceNorm2d)}
    for name in ("gen_a.enc", "gen_a.dec", "gen_b.enc", "gen_b.dec", "dis_a", "dis_b"):
        keys = [k for k in before if k.startswith(name + ".") and k not in cancelled]
        assert keys and all(not torch.equal(before[k], after[k]) for k in keys), name


def test_stretch_like_authors_maps_each_image_to_the_full_range():
    y = torch.stack([torch.linspace(-0.5, 0.25, 12).view(3, 2, 2), torch.linspace(0, 0.5, 12).view(3, 2, 2)])
    s = stretch_like_authors(y)
    assert torch.allclose(s.flatten(1).min(1).values, torch.tensor([-1.0, -1.0]))
    assert torch.allclose(s.flatten(1).max(1).values, torch.tensor([1.0, 1.0]))
