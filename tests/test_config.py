import logging

import pytest

from art2real.config import get_config, load_config, save_config


def test_presets_and_overrides(tmp_path):
    paper = get_config("paper")
    assert (paper.data.image_size, paper.model.ngf, paper.model.n_blocks, paper.model.ndf) == (256, 64, 9, 64)
    assert (paper.train.epochs_constant, paper.train.epochs_decay, paper.train.patience) == (100, 200, 30)
    assert paper.bank.scales == ((4, 4), (8, 5), (16, 6)) and paper.cx.k == 5 and paper.cx.lambda_cx == 0.1
    assert paper.data.flip and paper.data.crop_margin == 0  # the authors' release: load 256, crop 256, flip
    assert paper.train.val_images is None and paper.train.val_metric == "fid"  # every training painting
    demo = get_config("demo", ["model.ngf=32", "train.patience=null", "bank.scales=[[4, 4]]", "train.lr=1e-4"])
    assert demo.model.ngf == 32 and demo.train.patience is None and demo.bank.scales == ((4, 4),)
    assert demo.train.lr == 1e-4  # YAML reads 1e-4 as a string; a float field takes it as a number
    save_config(demo, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == demo


def test_auto_picks_by_device(caplog):
    caplog.set_level(logging.INFO)
    cfg = get_config("auto", device="cpu")
    assert cfg.preset == "demo"
    assert "picked 'demo'" in caplog.text


@pytest.mark.parametrize("bad, message", [
    ({"preset": "fast"}, "unknown preset"),
    ({"overrides": {"model.nope": 1}}, "unknown config key 'model.nope'"),
    ({"overrides": {"nope.x": 1}}, "unknown config section 'nope'"),
    ({"overrides": {"data.image_size": 30}}, "multiple of 4"),
    ({"overrides": ["model.ngf"]}, "key=value"),
    ({"overrides": ["model.ngf=[1"]}, "not valid YAML"),
    ({"method": "pix2pix"}, "unknown method 'pix2pix'"),
    ({"overrides": {"bank.metric": "dot"}}, "bank.metric must be one of l2, cosine"),
    ({"overrides": ["train.lr=abc"]}, "train.lr must be float, got 'abc'"),
    ({"overrides": ["train.checkpoint_every=0"]}, "train.checkpoint_every must be >= 1; got 0"),
    ({"overrides": ["data.max_images=-1"]}, "data.max_images must be >= 1; got -1"),
    ({"overrides": ["data.flip=maybe"]}, "data.flip must be bool, got 'maybe'"),
    ({"overrides": ["train.patience=2.5"]}, "train.patience must be int or null, got 2.5"),
    ({"overrides": ["bank.nprobe=4096"]}, "bank.nprobe must be >= 1 and <= 2048"),
    ({"overrides": ["bank.scales=[[4, 4, 4]]"]}, "bank.scales must be"),
    ({"overrides": ["train.betas=[0.5, 1.5]"]}, "train.betas must be two numbers in"),
    ({"overrides": ["cx.k=100", "bank.rerank=64"]}, "bank.rerank .* must be >= cx.k"),
    ({"overrides": ["train.lr=.nan"]}, "train.lr must be float"),
    ({"device": "tpu"}, "device: 'tpu' is not"),
])
def test_bad_values_are_named(bad, message):
    preset = bad.pop("preset", "smoke")
    with pytest.raises(ValueError, match=message):
        get_config(preset, **bad)


def test_a_config_from_a_gpu_machine_reads_on_a_cpu_one(tmp_path):
    cfg = get_config("smoke", device="cpu")
    cfg.device = "cuda:1"  # as written on a machine with two GPUs
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml").device == "cuda:1"
