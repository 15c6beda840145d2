import pytest

from art2real.config import get_config, load_config, save_config


def test_presets_and_overrides(tmp_path):
    paper = get_config("paper")
    assert (paper.data.image_size, paper.model.ngf, paper.model.n_blocks, paper.model.ndf) == (256, 64, 9, 64)
    assert (paper.train.epochs_constant, paper.train.epochs_decay, paper.train.patience) == (100, 200, 30)
    assert paper.bank.scales == ((4, 4), (8, 5), (16, 6)) and paper.cx.k == 5 and paper.lambda_cx == 0.1
    demo = get_config("demo", ["model.ngf=32", "train.patience=null", "bank.scales=[[4, 4]]"])
    assert demo.model.ngf == 32 and demo.train.patience is None and demo.bank.scales == ((4, 4),)
    assert get_config("demo", method="cyclegan").lambda_cx == 0.0
    save_config(demo, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == demo


def test_auto_picks_by_device(caplog):
    cfg = get_config("auto", device="cpu")
    assert cfg.preset == "demo"
    assert "picked 'demo'" in caplog.text


@pytest.mark.parametrize("bad, message", [
    ({"preset": "fast"}, "unknown preset"),
    ({"overrides": {"model.nope": 1}}, "unknown config key"),
    ({"overrides": {"data.image_size": 30}}, "multiple of 4"),
    ({"overrides": ["model.ngf"]}, "key=value"),
    ({"method": "unit"}, "unknown method"),
    ({"overrides": {"bank.metric": "dot"}}, "bank.metric must be"),
])
def test_bad_values_are_named(bad, message):
    preset = bad.pop("preset", "smoke")
    with pytest.raises((ValueError, KeyError), match=message):
        get_config(preset, **bad)
