import pytest
import torch

from art2real.nn.networks import NLayerDiscriminator, ResnetGenerator, count_parameters, load_generator_state
from art2real.methods.cyclegan import infer_architecture
from art2real.translate import load_translator, translate_image, translate_tensor


def test_parameter_counts_match_cyclegan():
    assert count_parameters(ResnetGenerator(ngf=64, n_blocks=9)) == 11_378_179
    assert count_parameters(ResnetGenerator(ngf=32, n_blocks=6)) == 1_965_059
    assert count_parameters(NLayerDiscriminator(ndf=64, n_layers=3)) == 2_764_737


def test_cyclegan_layout_loads_strictly_and_old_running_stats_are_dropped():
    src = ResnetGenerator(ngf=8, n_blocks=2)
    state = dict(src.state_dict())
    assert "model.1.weight" in state and "model.10.conv_block.1.weight" in state
    assert "model.10.conv_block.5.weight" in state
    state["model.2.running_mean"] = torch.zeros(8)  # what pre-0.4 CycleGAN checkpoints carry
    state["module.model.2.running_var"] = torch.ones(8)
    net = load_generator_state(ResnetGenerator(ngf=8, n_blocks=2), state)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(net(x), src(x))
    assert infer_architecture(state) == (8, 2)


def test_wrong_architecture_is_named():
    state = ResnetGenerator(ngf=8, n_blocks=2).state_dict()
    with pytest.raises(ValueError, match="missing keys"):
        load_generator_state(ResnetGenerator(ngf=8, n_blocks=3), state)
    with pytest.raises(ValueError, match="shape mismatches"):
        load_generator_state(ResnetGenerator(ngf=16, n_blocks=2), state)
    with pytest.raises(ValueError, match="not a CycleGAN ResNet generator"):
        load_translator({"conv.weight": torch.zeros(1)})


def test_translation_keeps_odd_sizes_and_tiles():
    torch.manual_seed(0)
    G = ResnetGenerator(ngf=4, n_blocks=1).eval()
    x = torch.rand(1, 3, 37, 53) * 2 - 1
    y = translate_tensor(G, x)
    assert y.shape == x.shape
    tiled = translate_tensor(G, x, tile=24, overlap=8)
    assert tiled.shape == x.shape and tiled.abs().max() <= 1
    # where tiles cover the image with one tile, tiling changes nothing
    assert torch.allclose(translate_tensor(G, x, tile=64), y)
    from PIL import Image
    assert translate_image(G, Image.new("RGB", (30, 22)), size=None).size == (30, 22)


@pytest.mark.parametrize("padding", [(3, 3, 3, 3), (1, 1, 1, 1), (0, 2, 1, 0)])
def test_reflection_padding_from_slices_equals_torchs(padding):
    """The deterministic form used on CUDA under train.deterministic: same values, same gradient."""
    from art2real.nn.networks import reflect_pad

    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn_like(torch.nn.functional.pad(x, padding, mode="reflect"))
    ours = reflect_pad(x, padding)
    theirs = torch.nn.functional.pad(x, padding, mode="reflect")
    assert torch.equal(ours, theirs)
    assert torch.allclose(torch.autograd.grad((ours * weight).sum(), x)[0],
                          torch.autograd.grad((theirs * weight).sum(), x)[0], atol=1e-12)


def test_generator_pads_by_slices_on_cuda_in_deterministic_mode(cuda_stand_in, monkeypatch):
    from art2real.nn import networks

    calls = []
    monkeypatch.setattr(networks, "reflect_pad", lambda x, p: calls.append(p) or
                        torch.nn.functional.pad(x, p, mode="reflect"))
    G = ResnetGenerator(ngf=4, n_blocks=1).to("cuda")
    x = torch.rand(1, 3, 16, 16, device="cuda")
    G(x)
    assert not calls  # the fast kernel by default
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        G(x)
    finally:
        torch.use_deterministic_algorithms(False)
    assert calls == [(3, 3, 3, 3), (1, 1, 1, 1), (1, 1, 1, 1), (3, 3, 3, 3)]
