"""Style-transferred reals: Gatys et al.'s losses in closed form, the optimisation, the method's resumable
production, the Lite0 substitute named when VGG-19's weights are missing, and the VGG-19 path (random weights)."""
import json
import types

import numpy as np
import pytest
import torch
from PIL import Image

from art2real import methods
from art2real.chain import stage_config, translate_stage
from art2real.config import get_config
from art2real.errors import ConfigError
from art2real.nn import style
from art2real.outcomes import NotAvailable
from art2real.tables import method_sets


@pytest.fixture(autouse=True)
def _one_thread():
    """As produce runs on a CPU (gatys.cpu_threads): tiny images, and two threads stall when others run."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_vgg19(monkeypatch):
    """VGG-19's weights absent from the torch cache, whatever this machine holds."""
    monkeypatch.setattr(style, "vgg19_weights", lambda: NotAvailable("vgg19 weights not in the torch cache",
                                                                     "python -c \"...get_model('vgg19'...)\""))


@pytest.fixture
def random_vgg19(monkeypatch):
    """VGG-19's weights 'cached', and torchvision building its features with random weights instead."""
    import torchvision
    from torchvision.models import vgg

    asked = []

    def build(weights=None):
        asked.append(weights)
        torch.manual_seed(0)
        return types.SimpleNamespace(features=vgg.make_layers(vgg.cfgs["E"]))

    monkeypatch.setattr(style, "vgg19_weights", lambda: torchvision.models.VGG19_Weights.IMAGENET1K_V1)
    monkeypatch.setattr(torchvision.models, "vgg19", build)
    style._vgg19_features.cache_clear()
    yield asked
    style._vgg19_features.cache_clear()


def image(seed: int, size: int = 32) -> torch.Tensor:
    return torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---------------------------------------------------------------------------------------------------- losses
def test_gram_closed_form():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)  # 2 channels, 1 x 2 positions
    # F F^T = [[1*1 + 2*2, 1*3 + 2*4], [3*1 + 4*2, 3*3 + 4*4]], divided by C H W = 4
    assert torch.equal(style.gram(f), torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4)


def test_style_loss_closed_form_and_zero_against_itself():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 1, 2)
    b = torch.zeros_like(a)
    target = {"conv1_1": style.gram(a)}
    assert float(style.style_loss({"conv1_1": a}, target)) == 0.0
    # mean over the 4 entries of (G(b) - G(a))^2 = (5^2 + 11^2 + 11^2 + 25^2) / 16 / 4
    assert float(style.style_loss({"conv1_1": b}, target)) == pytest.approx((25 + 121 + 121 + 625) / 64)


def test_style_loss_of_an_image_against_itself_is_zero():
    net = style.lite0("cpu")
    x = image(0)
    layers = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    _, grams = style.targets(net, x, x, "conv4_2", layers)
    assert set(grams) == set(layers)
    with torch.no_grad():
        assert float(style.style_loss(net.extract(x, layers), grams)) == 0.0
        assert float(style.style_loss(net.extract(image(1), layers), grams)) > 0


@pytest.mark.parametrize("init", ["content", "noise"])
def test_the_loss_decreases_over_iterations(init):
    net = style.lite0("cpu")
    content, painting = image(0), image(1)
    result = style.stylise(net, content, painting, beta=1e2, iterations=12, init=init,
                           generator=torch.Generator().manual_seed(0))
    assert len(result.losses) == 12  # a fixed number of iterations: the tolerances never stop it early
    assert result.losses[-1] < 0.5 * result.losses[0]
    assert result.image.shape == content.shape and result.image.abs().max() <= 1
    p, a = style.targets(net, content, painting, "conv4_2", ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"))
    with torch.no_grad():
        final = style.total_loss(net, result.image, p, a, "conv4_2", 1.0, 1e2)
    assert float(final) < result.losses[0]


def test_lite0_stands_in_at_the_same_depth():
    names = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1")
    features = style.lite0("cpu").extract(image(0, 64), names)
    # VGG-19's strides (1, 2, 4, 8, 8, 16): Lite0 sees the image enlarged twice
    assert [features[n].shape[-1] for n in names] == [64, 32, 16, 8, 8, 4]
    assert not torch.equal(features["conv4_1"], features["conv4_2"])


# ---------------------------------------------------------------------------------------------------- networks
def test_auto_uses_the_named_substitute_without_vgg19(no_vgg19):
    net = style.feature_network("auto", "cpu")
    assert net.key == "lite0" and net.substitute == style.LITE0_SUBSTITUTE
    with pytest.raises(ConfigError, match="get_model\\('vgg19'"):
        style.feature_network("vgg19", "cpu")


def test_vgg19_path_with_random_weights(random_vgg19):
    import torchvision

    net = style.feature_network("auto", "cpu", pooling="avg")
    assert net.key == "vgg19" and net.substitute == ""
    assert random_vgg19 == [torchvision.models.VGG19_Weights.IMAGENET1K_V1]  # asked for the ImageNet weights
    names = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv4_2", "conv5_1")
    x = image(0)
    with torch.no_grad():
        avg = net.extract(x, names)
        peak = style.feature_network("vgg19", "cpu", pooling="max").extract(x, names)
    assert [tuple(avg[n].shape[1:]) for n in names] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4),
                                                        (512, 4, 4), (512, 2, 2)]
    assert all(float(f.min()) >= 0 for f in avg.values())  # rectified responses
    assert torch.equal(avg["conv1_1"], peak["conv1_1"]) and not torch.equal(avg["conv2_1"], peak["conv2_1"])
    result = style.stylise(net, x, image(1), iterations=3)
    assert result.losses[-1] < result.losses[0]


# ---------------------------------------------------------------------------------------------------- the method
def smoke(dataset, **overrides):
    return get_config("smoke", {"data.dataset": str(dataset), **overrides}, method="gatys")


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im)


def test_registered_before_cyclegan_without_training():
    cls = methods.get("gatys")
    assert cls.row == "Style-transferred reals" and not cls.trained and not cls.translates_paintings
    keys = methods.names()
    assert keys.index("gatys") < keys.index("cyclegan")
    assert "gatys" in methods.names(trained=False) and "gatys" not in methods.names(trained=True)


def test_presets_and_config_checks():
    assert smoke("demo").gatys.iterations == 5
    assert get_config("demo", method="gatys").gatys.iterations == 150
    paper = get_config("paper", method="gatys")
    assert paper.gatys.iterations == 500 and paper.data.image_size == 256
    assert paper.gatys.style_layers == ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    with pytest.raises(ConfigError, match="conv6_1"):
        smoke("demo", **{"gatys.content_layer": "conv6_1"})
    with pytest.raises(ConfigError, match="gatys.init"):
        smoke("demo", **{"gatys.init": "photo"})


def test_produce_writes_resumes_and_names_the_substitute(tiny_dataset, tmp_path, no_vgg19):
    cls, target, threads = methods.get("gatys"), tmp_path / "out", torch.get_num_threads()
    source = cls.produce(smoke(tiny_dataset, **{"gatys.cpu_threads": 1}), target, progress=False)
    assert torch.get_num_threads() == threads  # restored
    outputs = sorted(p.name for p in target.glob("*.png"))
    assert outputs == ["testB_0.png", "testB_1.png"]  # one per test photo
    assert source["images"] == 2 and source["substitute"] == style.LITE0_SUBSTITUTE
    assert source["summary"].startswith(style.LITE0_SUBSTITUTE) and "5 L-BFGS iterations" in source["summary"]
    assert [p["content"] for p in source["pairs"]] == ["testB/testB_0.png", "testB/testB_1.png"]
    assert all((tiny_dataset / p["style"]).exists() and p["style"].startswith("trainA/") for p in source["pairs"])
    assert all(pixels(target / name).shape == (32, 32, 3) for name in outputs)
    json.dumps(source)  # source.json material

    first = {name: pixels(target / name) for name in outputs}
    kept = (target / "testB_1.png").stat().st_mtime_ns
    (target / "testB_0.png").unlink()  # a run killed before its first image was written
    again = cls.produce(smoke(tiny_dataset), target, progress=False)
    assert (target / "testB_1.png").stat().st_mtime_ns == kept  # not redone
    assert np.array_equal(pixels(target / "testB_0.png"), first["testB_0.png"])  # redone, the same image
    assert again["pairs"] == source["pairs"]

    cls.produce(smoke(tiny_dataset, **{"gatys.iterations": 2}), target, progress=False)
    assert (target / "testB_1.png").stat().st_mtime_ns != kept  # other settings: made again, never mixed


def test_styles_are_drawn_by_the_seed(tiny_dataset):
    from art2real.methods.gatys import plan

    draws = {seed: [p["style"] for p in plan(smoke(tiny_dataset, seed=seed))] for seed in range(6)}
    assert draws[0] == [p["style"] for p in plan(smoke(tiny_dataset, seed=0))]
    assert len({tuple(d) for d in draws.values()}) > 1


def test_translate_stage_produces_the_row_and_tables_name_the_substitute(tiny_dataset, tmp_path, monkeypatch,
                                                                        no_vgg19):
    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path / "results"))
    cfg = stage_config(str(tiny_dataset), "smoke")
    rows = translate_stage(cfg)
    assert rows.loc[rows.method == "gatys", "translated"].tolist() == ["produced"]
    (row,) = [s for s in method_sets(cfg) if s.row == "Style-transferred reals"]
    assert row.substitute == style.LITE0_SUBSTITUTE and style.LITE0_SUBSTITUTE in row.label
    assert not row.of_paintings and len(list(row.folders[0].glob("*.png"))) == 2
    meta = row.folders[0] / "source.json"
    before = meta.stat().st_mtime_ns
    translate_stage(cfg)  # nothing changed: the record stays, so tables computed from it stay current
    assert meta.stat().st_mtime_ns == before
    translate_stage(cfg, overrides={"gatys__iterations": 3})  # other settings: the images are made again
    assert json.loads(meta.read_text())["gatys"]["iterations"] == 3


def test_a_missing_network_makes_the_row_not_available(tiny_dataset, tmp_path, monkeypatch):
    from art2real.methods import gatys

    def missing(*args, **kwargs):
        raise ConfigError("gatys.feature_network=vgg19: vgg19 weights not in the torch cache; run X")

    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(gatys, "feature_network", missing)
    cfg = stage_config(str(tiny_dataset), "smoke")
    rows = translate_stage(cfg)
    assert rows.loc[rows.method == "gatys", "translated"].str.startswith("not available").all()
    (row,) = [s for s in method_sets(cfg) if s.row == "Style-transferred reals"]
    assert not row.folders and "vgg19 weights not in the torch cache" in row.missing.reason


def test_training_it_is_refused(tiny_dataset):
    from art2real.train.trainer import Trainer

    with pytest.raises(ConfigError, match="no training"):
        Trainer(smoke(tiny_dataset))
