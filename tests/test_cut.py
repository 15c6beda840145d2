"""CUT / FastCUT networks and PatchNCE against the authors' code and the paper's definition.

Reference data in tests/data/ were produced by running the authors' code (taesungp/contrastive-unpaired-translation
at commit b3ac297) outside this repository; the script is in the CUT spec note (make_reference.py):
- cut_official_shapes.json: state_dict keys and shapes of their G, D and F at the default (paper) size;
- cut_reference.pt: their networks at ngf 2 / 6 blocks / ndf 2 / netF_nc 8, seeded with torch.manual_seed(0): the
  initial weights, G(x), G's NCE features, D(y), and one step's losses and G / F gradients, for CUT (batch 2,
  identity NCE) and FastCUT (batch 1, mirrored input); patch locations drawn by torch.randperm from a generator
  seeded with ``ids_seed`` (their np.random.permutation replaced by it), the flip coin fixed.
"""
import json
from pathlib import Path

import pytest
import torch

from art2real.errors import CheckpointError
from art2real.nn.cut import (NCE_LAYERS, CutDiscriminator, CutGenerator, CutTranslator, PatchNCELoss, PatchSampleF,
                             build_cut_networks, check_nce_layers, discriminator_loss, generator_input,
                             generator_losses, load_cut_generator)
from art2real.nn.networks import ResnetGenerator, count_parameters

DATA = Path(__file__).parent / "data"
SMALL = dict(ngf=2, n_blocks=6, ndf=2, n_layers_d=3, nc=8, image_size=24)  # the reference networks' size


@pytest.fixture(scope="module")
def official_shapes() -> dict:
    return json.loads((DATA / "cut_official_shapes.json").read_text())


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(DATA / "cut_reference.pt", weights_only=True)


def _shapes(state: dict) -> dict:
    return {k: list(v.shape) for k, v in state.items()}


def _small_networks(init: dict):
    G, D, F = build_cut_networks(**SMALL)
    for name, net in zip("GDF", (G, D, F)):
        net.load_state_dict(init[name], strict=True)
    return G, D, F


# ---------------------------------------------------------------- layout at the paper size

def test_parameter_counts_at_paper_size_equal_the_authors():
    # measured by instantiating the authors' CUTModel at its defaults (ngf 64, 9 blocks, ndf 64, netF_nc 256)
    G = CutGenerator(ngf=64, n_blocks=9)
    F = PatchSampleF(256, [3, 128, 256, 256, 256])
    assert count_parameters(G) == 11_378_179
    assert count_parameters(CutDiscriminator(ndf=64, n_layers=3)) == 2_764_737
    assert count_parameters(F) == 560_384
    # the blur resampling leaves the count of CycleGAN's generator unchanged but not its layout
    assert count_parameters(ResnetGenerator(ngf=64, n_blocks=9)) == count_parameters(G)
    assert set(ResnetGenerator().state_dict()) != set(G.state_dict())


def test_state_dict_keys_and_shapes_at_paper_size_equal_the_authors(official_shapes):
    G, D, F = CutGenerator(ngf=64, n_blocks=9), CutDiscriminator(ndf=64), PatchSampleF(256, [3, 128, 256, 256, 256])
    for name, net in zip("GDF", (G, D, F)):
        assert list(net.state_dict()) == list(official_shapes[name]), name  # same keys, same order
        assert _shapes(net.state_dict()) == official_shapes[name], name


def test_feature_layers_give_the_authors_shapes_at_paper_size():
    # the authors' netG(x, [0, 4, 8, 12, 16], encode_only=True) on a 256 px image: the reflect-padded input, the
    # first conv before blur-downsampling, the second conv at 128 px, residual blocks 1 and 5 at 64 px
    expected = [(1, 3, 262, 262), (1, 128, 256, 256), (1, 256, 128, 128), (1, 256, 64, 64), (1, 256, 64, 64)]
    with torch.device("meta"):  # shapes only: no arithmetic
        G = CutGenerator(ngf=64, n_blocks=9)
        x = torch.zeros(1, 3, 256, 256)
        assert [tuple(f.shape) for f in G.encode(x, NCE_LAYERS)] == expected
        assert tuple(G(x).shape) == (1, 3, 256, 256)
        assert tuple(CutDiscriminator()(x).shape) == (1, 1, 30, 30)


def test_feature_layers_are_checked():
    G = CutGenerator(ngf=2, n_blocks=1)
    with pytest.raises(ValueError, match="strictly increasing"):
        G.encode(torch.zeros(1, 3, 16, 16), [4, 0])
    with pytest.raises(ValueError, match="module indices"):
        G.encode(torch.zeros(1, 3, 16, 16), [0, len(G.model)])
    check_nce_layers(NCE_LAYERS, 5)
    with pytest.raises(ValueError, match="reach past the encoder"):  # with 1 block, layer 16 is in the decoder
        check_nce_layers(NCE_LAYERS, 1)


# ---------------------------------------------------------------- numbers of the authors' code

def test_seeded_init_draws_the_authors_weights(reference):
    # same module order and the same order of random draws (G, D, then F's MLPs) as the authors' code
    torch.manual_seed(0)
    nets = build_cut_networks(**SMALL)
    for name, net in zip("GDF", nets):
        ref = reference["CUT"]["init"][name]
        assert list(net.state_dict()) == list(ref)
        for key, value in net.state_dict().items():
            assert torch.equal(value, ref[key]), (name, key)


def test_forward_and_features_equal_the_authors(reference):
    ref = reference["CUT"]
    G, D, _ = _small_networks(ref["init"])
    x = ref["A"][:1]
    with torch.no_grad():
        torch.testing.assert_close(G(x), ref["G_out"], rtol=0, atol=1e-6)
        for own, theirs in zip(G.encode(x), ref["G_feats"], strict=True):
            torch.testing.assert_close(own, theirs, rtol=0, atol=1e-6)
        torch.testing.assert_close(D(ref["B"]), ref["D_out"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["CUT", "FastCUT"])
def test_one_step_losses_and_gradients_equal_the_authors(reference, mode):
    ref = reference[mode]
    nce_idt, lambda_nce, flipped = (True, 1.0, False) if mode == "CUT" else (False, 10.0, True)
    assert ref["flipped"] == flipped
    G, D, F = _small_networks(reference["CUT"]["init"])
    A, B = ref["A"], ref["B"]
    fake = G(generator_input(A, B, nce_idt, flipped))
    fake_B, idt_B = fake[:len(A)], (fake[len(A):] if nce_idt else None)
    loss_D = discriminator_loss(D, B, fake_B)
    D.requires_grad_(False)
    losses = generator_losses(G, D, F, PatchNCELoss(0.07), A, B, fake_B, idt_B, num_patches=16,
                              lambda_nce=lambda_nce, flipped=flipped,
                              generator=torch.Generator().manual_seed(int(ref["ids_seed"])))
    losses["G"].backward()
    torch.testing.assert_close(loss_D.detach(), ref["loss_D"], rtol=1e-6, atol=0)
    for name in ("G_GAN", "NCE", "G") + (("NCE_Y",) if nce_idt else ()):
        torch.testing.assert_close(losses[name].detach(), ref[f"loss_{name}"], rtol=1e-5, atol=0)
    for net, grads in ((G, ref["grads_G"]), (F, ref["grads_F"])):
        scale = max(g.nan_to_num(0.0).abs().max() for g in grads.values())  # biases before InstanceNorm: ~0
        for key, p in net.named_parameters():
            assert p.grad.isfinite().all(), key
            # at this tiny width some of their projections are all-zero vectors, whose norm has a NaN gradient
            # that fills the last layer of that MLP; ours gives them a zero gradient (see l2_normalize)
            if grads[key].isfinite().all():
                torch.testing.assert_close(p.grad, grads[key], rtol=0, atol=1e-5 * scale)


# ---------------------------------------------------------------- loading their files

def _official_layout_file(path: Path, shapes: dict) -> dict:
    """A generator file as the authors' save_networks writes it: state_dict of random weights and the blur
    kernels, [1, 2, 1] (x) [1, 2, 1] / 16 for downsampling, [1, 3, 3, 1] (x) [1, 3, 3, 1] / 64 * 4 for upsampling."""
    gen = torch.Generator().manual_seed(3)
    down, up = torch.tensor([1.0, 2, 1]), torch.tensor([1.0, 3, 3, 1])
    kernels = {3: torch.outer(down, down) / 16, 4: torch.outer(up, up) / 64 * 4}
    state = {}
    for key, shape in shapes.items():
        if key.endswith(".filt"):
            state[key] = kernels[shape[-1]].expand(*shape).clone()
        else:
            state[key] = torch.randn(*shape, generator=gen) * 0.02
    torch.save(state, path)
    return state


def test_a_file_in_the_official_layout_loads_strictly(tmp_path, official_shapes):
    path = tmp_path / "latest_net_G.pth"
    state = _official_layout_file(path, official_shapes["G"])
    G = load_cut_generator(path)
    assert (G.n_blocks, G.model[1].out_channels) == (9, 64)
    for key, value in G.state_dict().items():
        assert torch.equal(value, state[key]), key  # blur kernels included: ours equal theirs
    assert not G.training


def test_mismatched_files_are_refused_clearly(tmp_path):
    state = CutGenerator(ngf=4, n_blocks=2).state_dict()
    del state["model.12.conv_block.1.weight"]
    with pytest.raises(ValueError, match="missing keys.*model.12.conv_block.1.weight"):
        load_cut_generator(state)
    state = CutGenerator(ngf=4, n_blocks=2).state_dict()
    state["model.15.weight"] = torch.zeros(4, 8, 4, 4)  # the conv after blur-upsampling, 4x4 instead of 3x3
    with pytest.raises(ValueError, match="shape mismatches.*model.15.weight"):
        load_cut_generator(state)
    with pytest.raises(CheckpointError, match="CycleGAN-layout"):
        load_cut_generator(ResnetGenerator(ngf=4, n_blocks=2).state_dict())
    with pytest.raises(CheckpointError, match="absent.pth"):
        load_cut_generator(tmp_path / "absent.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(CheckpointError, match="holds a Tensor"):
        load_cut_generator(tmp_path / "tensor.pth")


# ---------------------------------------------------------------- translator

def test_translator_keeps_shape_and_range_and_shares_G(tmp_path):
    torch.manual_seed(0)
    G, _, _ = build_cut_networks(ngf=4, n_blocks=5, ndf=4, n_layers_d=2, nc=8, image_size=32)
    shared = CutTranslator(G)
    assert list(shared.state_dict()) == list(G.state_dict())  # the authors' keys: a file in their layout
    assert shared.model[1].weight is G.model[1].weight  # training G trains the translator
    torch.save(shared.state_dict(), tmp_path / "latest_net_G.pth")
    translator = CutTranslator.from_file(tmp_path / "latest_net_G.pth", name="FastCUT")
    assert not translator.training and translator.name == "FastCUT"
    with torch.no_grad():
        x = torch.rand(2, 3, 37, 53) * 2 - 1  # not a multiple of 4: padded and cropped back
        y = translator(x)
        assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
        torch.testing.assert_close(y[1:], translator(x[1:]))  # images are translated independently
        x = torch.rand(2, 3, 32, 48) * 2 - 1  # a multiple of 4: the batch in one pass, as G alone
        torch.testing.assert_close(translator(x), G.eval()(x))
    with pytest.raises(ValueError, match="N, 3, H, W"):
        translator(x[0])


# ---------------------------------------------------------------- PatchNCE from the paper's definition

def patch_nce_transcribed(q: torch.Tensor, k: torch.Tensor, batch: int, tau: float, whole_batch: bool) -> torch.Tensor:
    """Eq. 2 of the paper, one patch at a time: l = -log( exp(v.v+/tau) / (exp(v.v+/tau) + sum_n exp(v.v-_n/tau)) ),
    v the query, v+ the key at the same location, v- the keys at the other locations of the same image (of the
    whole batch when ``whole_batch``). Rows are ordered image by image."""
    per_image = q.shape[0] // batch
    losses = []
    for i in range(q.shape[0]):
        if whole_batch:
            others = [j for j in range(q.shape[0]) if j != i]
        else:
            start = i // per_image * per_image
            others = [j for j in range(start, start + per_image) if j != i]
        pos = torch.exp(q[i] @ k[i] / tau)
        neg = sum(torch.exp(q[i] @ k[j] / tau) for j in others)
        losses.append(-torch.log(pos / (pos + neg)))
    return torch.stack(losses)


@pytest.mark.parametrize("whole_batch", [False, True])
def test_patch_nce_equals_its_definition_in_value_and_gradient(whole_batch):
    gen = torch.Generator().manual_seed(0)
    batch, patches, dim, tau = 2, 5, 4, 0.5  # a mild temperature keeps the exponentials of the transcription finite
    q = torch.nn.functional.normalize(torch.randn(batch * patches, dim, generator=gen), dim=1)
    k = torch.nn.functional.normalize(q.detach() + 0.5 * torch.randn(batch * patches, dim, generator=gen), dim=1)
    q1, q2 = q.clone().requires_grad_(), q.clone().requires_grad_()
    ours = PatchNCELoss(tau, all_negatives_from_minibatch=whole_batch)(q1, k, batch)
    theirs = patch_nce_transcribed(q2, k, batch, tau, whole_batch)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    ours.sum().backward()
    theirs.sum().backward()
    torch.testing.assert_close(q1.grad, q2.grad, rtol=1e-5, atol=1e-6)


def test_patch_nce_keys_get_no_gradient_and_tau_matters():
    q = torch.nn.functional.normalize(torch.randn(6, 3), dim=1)
    k = torch.nn.functional.normalize(torch.randn(6, 3), dim=1).requires_grad_()
    loss = PatchNCELoss(0.07)(q.requires_grad_(), k, 2)
    loss.sum().backward()
    assert k.grad is None and q.grad.abs().sum() > 0
    assert not torch.allclose(PatchNCELoss(0.07)(q, k, 2), PatchNCELoss(1.0)(q, k, 2))


# ---------------------------------------------------------------- the sampling head

def test_patch_sample_f_is_reproducible_and_eager_equals_lazy():
    feats = [torch.randn(2, 3, 10, 10), torch.randn(2, 8, 5, 5)]
    torch.manual_seed(1)
    eager = PatchSampleF(16, [3, 8])
    torch.manual_seed(1)
    lazy = PatchSampleF(16)
    assert not list(lazy.parameters())  # before its first forward, an optimiser would see nothing
    lazy(feats, 4)
    assert list(lazy.state_dict()) == list(eager.state_dict())
    for key, value in eager.state_dict().items():
        assert torch.equal(value, lazy.state_dict()[key])
    out1, ids1 = eager(feats, 7, generator=torch.Generator().manual_seed(5))
    out2, ids2 = eager(feats, 7, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(ids1 + out1, ids2 + out2))
    assert [o.shape for o in out1] == [(14, 16), (14, 16)]  # B * S rows of unit vectors
    # unit vectors up to the authors' eps on the norm, which is not negligible for the small outputs of an MLP
    # initialised with gain 0.02
    torch.testing.assert_close(out1[0].norm(dim=1), torch.ones(14), rtol=0, atol=2e-2)
    assert ids1[1].unique().numel() == 7  # locations without repetition
    out3, _ = eager([f.flip(0) for f in feats], 7, patch_ids=ids1)  # the same locations in every image
    torch.testing.assert_close(out3[0], torch.cat([out1[0][7:], out1[0][:7]]))
    fresh = PatchSampleF(64)
    fresh.load_state_dict(eager.state_dict())  # a saved head loads before any forward, with the saved width
    assert torch.equal(fresh.mlp_1[2].weight, eager.mlp_1[2].weight)


# ---------------------------------------------------------------- a training step

def test_one_training_step_changes_G_D_and_F():
    torch.manual_seed(0)
    G, D, F = build_cut_networks(ngf=4, n_blocks=5, ndf=4, n_layers_d=2, nc=16, image_size=32)
    opt_G, opt_D, opt_F = (torch.optim.Adam(n.parameters(), 2e-4, betas=(0.5, 0.999)) for n in (G, D, F))
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in zip("GDF", (G, D, F))}
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1

    fake = G(generator_input(x, y, nce_idt=True, flipped=False))
    fake_B, idt_B = fake[:1], fake[1:]
    opt_D.zero_grad()
    discriminator_loss(D, y, fake_B).backward()
    opt_D.step()
    D.requires_grad_(False)
    opt_G.zero_grad()
    opt_F.zero_grad()
    losses = generator_losses(G, D, F, PatchNCELoss(0.07), x, y, fake_B, idt_B, num_patches=32)
    losses["G"].backward()
    opt_G.step()
    opt_F.step()
    D.requires_grad_(True)

    assert set(losses) == {"G_GAN", "NCE", "NCE_Y", "G"} and torch.isfinite(losses["G"])
    for name, net in zip("GDF", (G, D, F)):
        changed = [not torch.equal(a, b) for a, b in zip(before[name], net.parameters())]
        assert sum(changed) >= len(changed) // 2, name
    for i in range(5):  # every layer's MLP learned from the NCE loss
        assert not torch.equal(getattr(F, f"mlp_{i}")[0].weight, before["F"][4 * i])
