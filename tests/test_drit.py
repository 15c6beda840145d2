import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from art2real.config import get_config
from art2real.nn import drit as D
from art2real.nn.networks import count_parameters

OFFICIAL = json.loads((Path(__file__).parent / "data" / "drit_official_state.json").read_text())

# Parameter counts of the authors' networks at their defaults, measured by instantiating DRIT(opts) from
# github.com/HsinYingLee/DRIT (commit dbfa804, src/model.py; unchanged at HEAD) and summing p.numel() over
# each network's parameters. Spectral norm does not change them (weight_orig replaces weight).
OFFICIAL_PARAMS = {"disA": 8_271_171, "disB": 8_271_171, "disA2": 8_271_171, "disB2": 8_271_171,
                   "disContent": 10_683_649, "enc_c": 9_018_112, "enc_a": 2_688_160, "gen": 9_564_710}

SMOKE = get_config("smoke", method="drit")
TINY, CROP = SMOKE.drit, SMOKE.data.image_size


def tiny(**changes) -> D.DritConfig:
    return dataclasses.replace(TINY, **changes)

SIZES = ("nz", "enc_dim", "enc_res", "gen_res", "attr_dim", "attr_blocks", "attr_max_mult", "dis_dim", "dis_layers",
         "dis_scale", "dis_spectral_norm", "dis_content_dim", "dis_content_kernel", "dis_content_layers")


def paper_net(name: str, sn: bool) -> nn.Module:
    cfg = D.DritConfig(dis_spectral_norm=sn)
    if name.startswith("dis") and name != "disContent":
        return D.MultiScaleDiscriminator(3, cfg.dis_scale, cfg.dis_layers, cfg.dis_dim, sn)
    return {"disContent": lambda: D.ContentDiscriminator(256, cfg.dis_content_dim, cfg.dis_content_kernel,
                                                         cfg.dis_content_layers),
            "enc_c": lambda: D.ContentEncoder(3, 3, cfg.enc_dim, cfg.enc_res),
            "enc_a": lambda: D.AttributeEncoder(3, 3, cfg.nz, cfg.attr_dim, cfg.attr_blocks, cfg.attr_max_mult),
            "gen": lambda: D.Generator(3, 3, cfg.nz, 4 * cfg.enc_dim, cfg.gen_res)}[name]()


# Outputs of the authors' networks (commit dbfa804, src/networks.py, run on CPU) at paper size, when state_dict entry
# number i (in order) holds 0.05 * sin(0.37 k + i), k the flat index, and the input sin(0.37 k + offset):
# [sum, sum of |.|, first two values]. Image discriminator with spectral norm, in training mode (one power iteration);
# its "weight" buffers are left alone (theirs alias weight_orig, ours are unused in training).
GOLDEN = {
    "enc_c.forward_a": [7073.4363, 27644.902, 1.6234205, -0.68442547],
    "enc_a.forward_b.mu": [0.15494449, 1.258344, -0.21076898, -0.18819338],
    "enc_a.forward_b.logvar": [0.79659225, 1.1066518, 0.096520729, 0.17465849],
    "gen.forward_b": [-12.163001, 29.249446, 0.0086092837, 0.0082146954],
    "disA_sn.scale0": [1.5863294, 1.5863294, 0.099145576, 0.099145599],
    "disA_sn.scale1": [0.25280683, 0.25280683, 0.063201733, 0.06320174],
    "disA_sn.scale2": [0.093167216, 0.093167216, 0.093167216],
    "disContent": [0.11491484, 0.11491484, 0.11491484]
}


def pattern(shape, offset, scale=1.0):
    k = torch.arange(math.prod(shape), dtype=torch.float64)
    return (scale * torch.sin(k * 0.37 + offset)).float().reshape(shape)


def filled(net: nn.Module) -> nn.Module:
    state = net.state_dict()
    with torch.no_grad():
        for i, (key, value) in enumerate(state.items()):
            if key + "_orig" not in state:
                value.copy_(pattern(value.shape, i, 0.05))
    return net


def test_paper_size_outputs_equal_the_authors_networks():
    def check(name, t):
        t = t.detach().double()
        got = [t.sum().item(), t.abs().sum().item(), *t.flatten()[:2].tolist()][:len(GOLDEN[name])]
        assert got == pytest.approx(GOLDEN[name], rel=1e-4, abs=1e-6), name

    check("enc_c.forward_a", filled(paper_net("enc_c", True)).eval().forward_a(pattern((1, 3, 32, 32), 0.5)))
    mu, logvar = filled(paper_net("enc_a", True)).forward_b(pattern((1, 3, 32, 32), 1.5))
    check("enc_a.forward_b.mu", mu)
    check("enc_a.forward_b.logvar", logvar)
    gen = filled(paper_net("gen", True))
    check("gen.forward_b", gen.forward_b(pattern((1, 256, 8, 8), 2.5), pattern((1, 8), 3.5)))
    for i, out in enumerate(filled(paper_net("disA", True)).train()(pattern((1, 3, 64, 64), 4.5))):
        check(f"disA_sn.scale{i}", out)
    check("disContent", filled(paper_net("disContent", True))(pattern((1, 256, 54, 54), 5.5))[0])


@pytest.mark.parametrize("sn", [False, True])
def test_paper_size_parameter_counts_and_state_dict_layout_equal_the_authors(sn):
    section = OFFICIAL["spectral_norm" if sn else "no_spectral_norm"]
    for name in ("disA", "disContent", "enc_c", "enc_a", "gen"):
        net = paper_net(name, sn)
        assert count_parameters(net) == OFFICIAL_PARAMS[name], name
        official = section.get(name, OFFICIAL["no_spectral_norm"][name])  # only disA differs with spectral norm
        assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == official, name


def test_paper_defaults_and_all_eight_networks():
    cfg = get_config("paper", method="drit")
    d, t = cfg.drit, cfg.train
    assert (t.lr, d.dis_content_lr_div, t.betas, d.weight_decay) == (1e-4, 2.5, (0.5, 0.999), 1e-4)
    # n_ep 1200 with the decay from epoch 600; Resize 256 then RandomCrop 216, flipped
    assert (t.epochs_constant + t.epochs_decay, t.epochs_constant, d.d_iter, t.batch_size) == (1200, 600, 3, 2)
    assert (cfg.data.image_size, cfg.data.load_size, cfg.data.flip) == (216, 256, True)
    assert d == D.DritConfig() and d.dis_spectral_norm and not d.mode_seeking
    nets = D.DritNets(TINY)
    assert [n for n, _ in nets.named_children()] == list(D.NETWORKS)
    opts = D.build_optimizers(nets, 1e-4, (0.5, 0.999))
    assert opts["disContent"].param_groups[0]["lr"] == 1e-4 / 2.5 and opts["gen"].param_groups[0]["lr"] == 1e-4
    assert opts["gen"].param_groups[0]["weight_decay"] == 1e-4


def test_spectral_norm_only_in_the_image_discriminators_when_on():
    for sn in (False, True):
        nets = D.DritNets(tiny(dis_spectral_norm=sn))
        for name in D.NETWORKS:
            sn_convs = [m for m in getattr(nets, name).modules() if isinstance(m, D.SpectralNormConv2d)]
            convs = [m for m in getattr(nets, name).modules() if isinstance(m, nn.Conv2d)]
            image_dis = name in ("disA", "disB", "disA2", "disB2")
            assert len(sn_convs) == (len(convs) if sn and image_dis else 0), name
        keys = nets.disA.state_dict()
        assert any(k.endswith("weight_orig") for k in keys) == sn
        assert not any(k.endswith("weight_v") for k in keys)  # the authors' pre-1.0 layout has no weight_v


def test_spectral_norm_divides_by_the_largest_singular_value():
    conv = D.SpectralNormConv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight_orig.copy_(torch.tensor([[3.0, 0, 0], [0, 1.0, 0]]).view(2, 3, 1, 1))
    x = torch.randn(1, 3, 2, 2)
    for _ in range(30):  # one power iteration per training forward
        conv(x)
    assert torch.allclose(conv.weight, conv.weight_orig / 3, atol=1e-5)
    assert torch.linalg.matrix_norm(conv.weight.view(2, 3), ord=2).item() == pytest.approx(1, abs=1e-5)
    conv.eval()  # eval uses the stored normalised weight, as the authors' hook does
    assert torch.allclose(conv(x), nn.functional.conv2d(x, conv.weight_orig / 3, conv.bias), atol=1e-5)


def test_content_discriminator_names_a_too_small_input():
    dc = D.ContentDiscriminator(8, 8)  # paper kernels: 53 is the smallest content map (216 px crops give 54)
    assert dc.min_size() == 53
    assert dc(torch.randn(1, 8, 54, 54))[0].shape == (1,)
    with pytest.raises(ValueError, match="content map"):
        dc(torch.randn(1, 8, 52, 52))


@pytest.mark.parametrize("legacy", [False, True])
def test_official_layout_file_loads_into_nets_and_translator(tmp_path, legacy):
    torch.manual_seed(0)
    nets = D.DritNets(TINY)
    opts = D.build_optimizers(nets)
    images = torch.rand(2, 3, CROP, CROP) * 2 - 1
    f = D.drit_forward(nets, images, images.flip(0))
    D.update_discriminators(nets, opts, f, TINY)  # optimiser state and spectral-norm buffers are not empty
    path = tmp_path / "00599.pth"
    # legacy = the pre-1.6 file format PyTorch 0.4 wrote
    torch.save(D.official_checkpoint_state(nets, opts, ep=599, total_it=1234), path,
               _use_new_zipfile_serialization=not legacy)
    state = D.read_official_checkpoint(path)
    assert set(state) == {*D.NETWORKS, *(f"{n}_opt" for n in D.NETWORKS), "ep", "total_it"}

    fresh = D.DritNets(TINY)
    fresh_opts = D.build_optimizers(fresh)
    assert D.load_official_state(fresh, state, optimizers=fresh_opts) == (599, 1234)
    for key, value in nets.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    assert fresh_opts["disA"].state_dict()["state"][0]["step"] == 1

    inferred = D.infer_config(state)
    assert all(getattr(inferred, k) == getattr(TINY, k) for k in SIZES)
    translator = D.DritTranslator.from_checkpoint(path)
    reference = D.DritTranslator(nets.enc_c, nets.gen, TINY.nz)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    translator.reseed("a"), reference.reseed("a")
    assert torch.equal(translator(x), reference(x))


def test_mismatched_checkpoints_are_refused_with_the_reason():
    state = D.official_checkpoint_state(D.DritNets(tiny(dis_spectral_norm=False)))
    with pytest.raises(ValueError, match="dis_spectral_norm=False"):
        D.load_official_state(D.DritNets(TINY), state)
    with pytest.raises(ValueError, match="shape mismatches"):
        D.load_official_state(D.DritNets(tiny(enc_dim=4)), state, ("enc_c",))
    del state["gen"]
    with pytest.raises(KeyError, match="gen"):
        D.load_official_state(D.DritNets(TINY), state, ("enc_c", "gen"))
    with pytest.raises(KeyError, match="not a DRIT checkpoint"):
        D.DritTranslator.from_checkpoint(state)
    with pytest.raises(FileNotFoundError, match="example.pth"):
        D.read_official_checkpoint("/nonexistent/drit.pth")


def test_translator_shape_range_and_one_attribute_per_key():
    torch.manual_seed(0)
    nets = D.DritNets(TINY)
    translator = D.DritTranslator(nets.enc_c, nets.gen, TINY.nz, seed=7)
    x = torch.rand(2, 3, 24, 32) * 2 - 1
    first = translator.reseed("monet_0001").clone()
    y = translator(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert torch.equal(translator(x), y)  # pinned: every call (every tile) of one painting shares z
    assert torch.allclose(y[0], translator(x[:1])[0], atol=1e-6)  # the same z for every item of the batch
    translator.reseed("monet_0002")
    assert not torch.allclose(translator(x), y)
    other = D.DritTranslator(nets.enc_c, nets.gen, TINY.nz, seed=7)
    assert torch.equal(other.reseed("monet_0001"), first) and torch.equal(other(x), y)
    assert not torch.equal(D.DritTranslator(nets.enc_c, nets.gen, TINY.nz, seed=8).reseed("monet_0001"), first)
    with pytest.raises(ValueError, match="divisible by 4"):
        translator(torch.zeros(1, 3, 30, 32))


def test_translator_without_key_draws_one_attribute_per_image_and_keeps_the_training_mode():
    nets = D.DritNets(TINY).train()
    x = (torch.rand(1, 3, 16, 16) * 2 - 1).expand(2, -1, -1, -1)
    y = D.DritTranslator(nets.enc_c, nets.gen, TINY.nz, seed=1)(x)
    assert not torch.allclose(y[0], y[1])  # two images, two attributes
    # a seeded stream, and no content noise although the networks were in training mode
    assert torch.equal(D.DritTranslator(nets.enc_c, nets.gen, TINY.nz, seed=1)(x), y)
    assert nets.enc_c.training  # a translator sharing training networks gives their mode back


def test_adversarial_losses_closed_form():
    assert D.bce_on_sigmoid(torch.zeros(5), 1.0).item() == pytest.approx(math.log(2))
    assert D.bce_on_sigmoid(torch.full((3,), math.log(3)), 1.0).item() == pytest.approx(-math.log(0.75))
    assert D.bce_on_sigmoid(torch.full((3,), math.log(3)), 0.0).item() == pytest.approx(-math.log(0.25))

    class TwoScales(nn.Module):  # logits = w * scale * mean(x) at two scales
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, x):
            return [self.w * x.mean() * torch.ones(1, 1, 2, 2), self.w * 2 * x.mean() * torch.ones(1, 1, 1, 1)]

    real, fake = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4, requires_grad=True)
    assert D.discriminator_loss(TwoScales(), real, fake).item() == pytest.approx(4 * math.log(2))
    D.discriminator_loss(TwoScales(), real, fake).backward()
    assert fake.grad is None  # the discriminator step does not reach the generator
    assert D.generator_adversarial_loss(TwoScales(), fake).item() == pytest.approx(2 * math.log(2))

    def mean_dc(c):  # a content discriminator whose logit is the mean of the code
        return [c.mean().view(1)]

    z = torch.zeros(1, 2, 4, 4, requires_grad=True)
    loss = D.content_adversarial_loss(mean_dc, z)  # BCE against 0.5 is smallest (log 2) at logit 0
    assert loss.item() == pytest.approx(math.log(2))
    loss.backward()
    assert z.grad.abs().max() < 1e-7
    za, zb = torch.full((1, 2, 4, 4), math.log(3)), torch.full((1, 2, 4, 4), -math.log(3))
    # B's codes should read 1 (p = 0.25: -log 0.25), A's codes 0 (p = 0.75: -log 0.25)
    assert D.content_discriminator_loss(mean_dc, za, zb).item() == pytest.approx(-2 * math.log(0.25))


def test_regularisers_closed_form():
    mu, logvar = torch.zeros(2, 8), torch.zeros(2, 8)
    assert D.kl_attribute(mu, logvar).item() == 0
    assert D.kl_attribute(torch.ones(2, 8), logvar).item() == pytest.approx(0.5 * 16)  # a sum over 16 entries
    half = 0.5 * (1 - math.log(2))  # KL(N(0, 2) || N(0, 1)) = (2 - 1 - log 2) / 2 per entry
    assert D.kl_attribute(mu, torch.full((2, 8), math.log(2))).item() == pytest.approx(16 * half)
    assert D.kl_content(torch.full((1, 4, 3, 3), 2.0)).item() == 4
    assert D.l1(torch.zeros(2, 3), torch.tensor([[1.0, -2, 3], [0, 0, 0]])).item() == 1
    assert D.latent_regression(torch.ones(1, 8), torch.full((1, 8), -1.0)).item() == 2
    fake1, fake2 = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    z1, z2 = torch.zeros(1, 8), torch.full((1, 8), 2.0)
    assert D.mode_seeking(fake1, fake2, z1, z2).item() == pytest.approx(1 / (0.25 + 1e-5))
    mu, logvar = torch.full((4, 8), 3.0), torch.full((4, 8), math.log(4))
    torch.manual_seed(0)
    eps = torch.randn(4, 8)
    torch.manual_seed(0)
    assert torch.allclose(D.reparameterize(mu, logvar), 3 + 2 * eps)  # mu + sigma * eps, sigma = exp(logvar / 2)


def test_update_alternation():
    full = [D.is_full_update(it, 10, 3) for it in range(10)]
    # every third batch, and the last two of the epoch
    assert full == [False, False, True, False, False, True, False, False, True, True]


@pytest.mark.parametrize("mode_seeking", [False, True])
def test_one_iteration_in_the_authors_order_trains_every_network(mode_seeking):
    torch.manual_seed(0)
    cfg = tiny(mode_seeking=mode_seeking)
    nets = D.DritNets(cfg).train()
    opts = D.build_optimizers(nets, 1e-4, (0.5, 0.999), cfg)
    before = {k: v.clone() for k, v in nets.state_dict().items()}
    a = torch.rand(2, 3, CROP, CROP) * 2 - 1
    b = torch.rand(2, 3, CROP, CROP) * 2 - 1

    # batch 0 of an epoch: the content discriminator alone
    assert not D.is_full_update(0, 9, cfg.d_iter)
    D.update_content_discriminator(nets, opts, a, b, cfg)
    changed = {k.split(".")[0] for k, v in nets.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"disContent"}

    # a full iteration: one forward, then the five discriminator steps, then the two E/G steps
    f = D.drit_forward(nets, a, b, mode_seeking)
    assert f.fake_B_random.shape == (1, 3, CROP, CROP)
    assert (f.fake_A_random2 is not None) == mode_seeking
    d_losses = D.update_discriminators(nets, opts, f, cfg)
    assert set(d_losses) == {"disA", "disA2", "disB", "disB2", "disContent"}
    sn_buffers = [b.clone() for b in nets.buffers()]
    loss_eg, _ = D.encoder_generator_loss(nets, f, cfg)
    expected_enc_a = torch.autograd.grad(loss_eg, list(nets.enc_a.parameters()), retain_graph=True)
    with torch.no_grad():  # undo the power iterations of that extra pass, so the step sees the same sigmas
        for b, saved in zip(nets.buffers(), sn_buffers):
            b.copy_(saved)
    terms = D.update_encoders_generator(nets, opts, f, cfg)
    assert all(math.isfinite(v) for v in terms.values()) and ("ms_ab" in terms) == mode_seeking
    # E^a is stepped on the EG objective only (latent regression trains E^c and G, not E^a) ...
    for p, g in zip(nets.enc_a.parameters(), expected_enc_a):
        assert torch.allclose(p.grad, g, atol=1e-6)
    # ... while E^c and G took two Adam steps
    assert opts["gen"].state_dict()["state"][0]["step"] == 2 and opts["enc_a"].state_dict()["state"][0]["step"] == 1
    for name in D.NETWORKS:
        net = getattr(nets, name)
        assert all(not torch.equal(p, before[f"{name}.{k}"]) for k, p in net.named_parameters()), name


def test_tiled_translation_of_one_painting_is_reproducible():
    from art2real.translate import translate_tensor

    torch.manual_seed(0)
    nets = D.DritNets(TINY)
    translator = D.DritTranslator(nets.enc_c, nets.gen, TINY.nz)
    x = torch.rand(1, 3, 37, 53) * 2 - 1  # odd sides: translate_tensor pads to a multiple of 4
    translator.reseed("cezanne_0042")
    y = translate_tensor(translator, x, tile=24, overlap=8)
    assert y.shape == x.shape and y.abs().max() <= 1
    translator.reseed("other")
    translator.reseed("cezanne_0042")
    assert torch.equal(translate_tensor(translator, x, tile=24, overlap=8), y)


def test_a_batch_of_keys_pins_each_key_its_own_attribute():
    torch.manual_seed(0)
    nets = D.DritNets(TINY)
    translator = D.DritTranslator(nets.enc_c, nets.gen, TINY.nz, seed=3)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    z = translator.reseed(["a.jpg", "b.jpg"])
    assert torch.equal(z, torch.cat([translator.reseed("a.jpg"), translator.reseed("b.jpg")]))
    translator.reseed(["a.jpg", "b.jpg"])
    both = translator(x)
    translator.reseed("b.jpg")
    assert torch.allclose(both[1:], translator(x[1:]), atol=1e-6)  # as if translated alone
    with pytest.raises(ValueError, match="2 attributes are pinned for a batch of 3"):
        translator.reseed(["a.jpg", "b.jpg"]) is not None and translator(torch.zeros(3, 3, 16, 16))
    assert translator.pin(None) is None and translator(x).shape == x.shape  # back to the seeded stream
