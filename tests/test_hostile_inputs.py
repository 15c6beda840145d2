"""Hostile inputs from the user: decompression bombs in a dataset, changed datasets, outputs over inputs, absurd
options and parameters, too few images, files that are not what their name says; and how the CLI reports."""
import numpy as np
import pytest
import torch
from PIL import Image

from art2real.config import get_config
from art2real.nn.networks import ResnetGenerator
from art2real.segment.base import BACKGROUND
from art2real.segment.masks import segment_folder
from art2real.semantic import fit_segmenter, masks_dir, painting_masks
from art2real.train.checkpoint import load_checkpoint
from art2real.train.trainer import Trainer

from .conftest import DEMO, REPO
from .hostile import (
    cli,
    one_error_line,
    png_claiming,
    random_png,
    smoke_train,
    snapshot,
)


@pytest.fixture
def generator(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "g.pth"
    torch.save(ResnetGenerator(ngf=4, n_blocks=1).state_dict(), path)
    return path


def _reported(out, err, caplog, recwarn) -> str:
    """Everything a user is shown: stdout, stderr, log records, warnings."""
    return "\n".join([out, err, caplog.text, *(str(w.message) for w in recwarn)])


# ------------------------------------------------------------------------------------------------ D3
def test_d3_a_png_claiming_ten_gigapixels_is_skipped_and_named_everywhere(tiny_dataset, tmp_path, capsys,
                                                                          caplog, recwarn):
    for split in ("trainA", "trainB", "testA"):
        png_claiming(tiny_dataset / split / "huge.png", 100_000, 100_000)
    reason = "too many pixels"

    def named(said: str, folder) -> bool:  # a line naming the folder, the file and why
        return any(str(folder) in line and "huge.png" in line and reason in line for line in said.splitlines())

    code, out, err = cli(capsys, "data", "check", tiny_dataset, "--size", "64")
    assert code == 1 and out.count("UNREADABLE huge.png") == 3 and out.count(reason) == 3 and "Traceback" not in err

    caplog.clear()
    recwarn.clear()
    code, out, err = cli(capsys, "banks", "build", "--dataset", tiny_dataset, "--preset", "smoke", "--device", "cpu")
    said = _reported(out, err, caplog, recwarn)
    assert code == 0, err
    assert named(said, tiny_dataset / "trainB")  # the photo of the banks
    assert named(said, tiny_dataset / "trainA")  # the painting of the masks

    caplog.clear()
    recwarn.clear()
    run = tmp_path / "run"
    code, out, err = smoke_train(capsys, tiny_dataset, run, iterations=5)  # a whole epoch: every painting
    said = _reported(out, err, caplog, recwarn)
    assert code == 0, err
    assert named(said, tiny_dataset / "trainA")

    caplog.clear()
    recwarn.clear()
    code, out, err = cli(capsys, "translate", "--checkpoint", run / "checkpoints" / "last.pt", "--input",
                         tiny_dataset / "testA", "--output", tmp_path / "out", "--device", "cpu")
    said = _reported(out, err, caplog, recwarn)
    assert code == 0, err
    assert "2 image(s) written" in out and "1 skipped" in out and "huge.png" in said and reason in said
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["testA_0.png", "testA_1.png"]


# ------------------------------------------------------------------------------------------------ D6
def test_d6_masks_follow_added_removed_and_changed_paintings(tiny_dataset, tmp_path):
    cfg = get_config("smoke", {"data.dataset": str(tiny_dataset)})
    segmenter = fit_segmenter(cfg, progress=False)
    first = painting_masks(cfg, segmenter, progress=False)
    assert sorted(first) == [f"trainA_{i}.png" for i in range(4)]
    random_png(tiny_dataset / "trainA" / "added.png", (80, 64), seed=42)
    (tiny_dataset / "trainA" / "trainA_1.png").unlink()
    random_png(tiny_dataset / "trainA" / "trainA_2.png", seed=99)  # repainted in place
    second = painting_masks(cfg, segmenter, progress=False)
    assert sorted(second) == ["added.png", "trainA_0.png", "trainA_2.png", "trainA_3.png"]
    assert (second["added.png"] != BACKGROUND).any()  # computed, not taken as all background
    scratch = segment_folder(segmenter, tiny_dataset / "trainA", tmp_path / "scratch", 32, progress=False)
    assert all(np.array_equal(second[k], scratch[k]) for k in scratch)  # the same as labelling from scratch
    folder = masks_dir(cfg, "trainA")
    assert not (folder / "trainA_1.png.png").exists() and not (folder / "overlays" / "trainA_1.png.jpg").exists()


def test_d6_a_resumed_run_whose_masks_came_from_g_of_x_gets_masks_for_added_paintings(tiny_dataset, tmp_path):
    settings = {"data.dataset": str(tiny_dataset), "cx.mask_schedule": "paper", "cx.mask_start": 1,
                "data.max_images": 2}  # epochs of 2 iterations
    run = tmp_path / "run"
    cfg = get_config("smoke", {**settings, "train.max_iterations": 3})  # epoch 2 starts with masks from G(x)
    Trainer(cfg, run, progress=False).fit(progress=False)
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["method"]["context"]
    assert saved["masks_from"] == "G(x) at epoch 1" and "trainA_1.png" in saved["masks"]
    random_png(tiny_dataset / "trainA" / "added.png", (80, 64), seed=42)
    (tiny_dataset / "trainA" / "trainA_1.png").unlink()
    resumed = Trainer(get_config("smoke", {**settings, "train.max_iterations": 4}), run, progress=False)
    resumed.fit(progress=False)
    masks = resumed.method.context.masks
    assert sorted(masks) == ["added.png", "trainA_0.png", "trainA_2.png", "trainA_3.png"]
    own = painting_masks(cfg, resumed.method.context.segmenter, progress=False)["added.png"]
    assert torch.equal(masks["added.png"], torch.from_numpy(own).long()) and (masks["added.png"] != BACKGROUND).any()
    assert torch.equal(masks["trainA_0.png"], saved["masks"]["trainA_0.png"].long())  # G(x) masks kept


# ------------------------------------------------------------------------------------------------ D8
def test_d8_output_over_the_input_is_refused_before_anything_is_written(generator, tmp_path, capsys):
    folder = tmp_path / "P"
    folder.mkdir()
    random_png(folder / "a.png")
    before = snapshot(tmp_path)
    for source, target in ((folder, folder), (folder / "a.png", folder), (folder, folder / "sub"),
                           (folder, tmp_path / "P" / ".." / "P")):
        code, _, err = cli(capsys, "translate", "--checkpoint", generator, "--input", source, "--output", target)
        assert code == 2 and one_error_line(err) and "output" in err, (source, target, err)
        assert snapshot(tmp_path) == before, (source, target)


def test_d8_inputs_sharing_a_stem_get_two_outputs_and_a_true_count(generator, tmp_path, capsys):
    folder = tmp_path / "Q"
    folder.mkdir()
    random_png(folder / "a.png", seed=1)
    Image.fromarray(np.full((48, 48, 3), 200, np.uint8)).save(folder / "a.jpg")
    code, out, _ = cli(capsys, "translate", "--checkpoint", generator, "--input", folder, "--output",
                       tmp_path / "out")
    assert code == 0 and "2 image(s) written" in out
    outputs = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in outputs] == ["a.jpg.png", "a.png.png"]
    assert Image.open(outputs[0]).size == (48, 48) and Image.open(outputs[1]).size == (64, 64)
    assert sorted(p.name for p in (tmp_path / "out" / "inputs").iterdir()) == ["a.jpg", "a.png"]


def test_translate_into_a_file_is_a_user_error(generator, tmp_path, capsys):
    random_png(tmp_path / "a.png")
    (tmp_path / "taken").write_text("not a folder")
    code, _, err = cli(capsys, "translate", "--checkpoint", generator, "--input", tmp_path / "a.png", "--output",
                       tmp_path / "taken")
    assert code == 2 and one_error_line(err) and "taken" in err
    assert (tmp_path / "taken").read_text() == "not a folder"


# ------------------------------------------------------------------------------------------------ D9
@pytest.mark.parametrize("option", [("--tile", "2"), ("--tile", "-1"), ("--size", "-5"), ("--size", "2")],
                         ids=["tile-2", "tile-minus-1", "size-minus-5", "size-2"])
def test_d9_absurd_tile_or_size_is_refused(generator, tmp_path, capsys, option):
    random_png(tmp_path / "a.png")
    code, _, err = cli(capsys, "translate", "--checkpoint", generator, "--input", tmp_path / "a.png", "--output",
                       tmp_path / "out", *option)
    assert code == 2 and one_error_line(err) and option[0].strip("-") in err
    assert not (tmp_path / "out").exists()


def test_d9_options_are_checked_before_a_release_is_fetched(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ART2REAL_OFFLINE", "1")
    random_png(tmp_path / "a.png")
    code, _, err = cli(capsys, "translate", "--release", "art2real_monet", "--input", tmp_path / "a.png",
                       "--output", tmp_path / "out", "--tile", "2")
    assert code == 2 and "tile" in err and "offline" not in err


def test_images_too_small_for_the_generator_are_skipped_and_counted(generator, tmp_path, capsys, recwarn):
    folder = tmp_path / "in"
    folder.mkdir()
    random_png(folder / "ok.png", (20, 24))
    random_png(folder / "dot.png", (1, 1))
    random_png(folder / "line.png", (300, 2))
    code, out, err = cli(capsys, "translate", "--checkpoint", generator, "--input", folder, "--output",
                         tmp_path / "out")
    said = out + err + "".join(str(w.message) for w in recwarn)
    assert code == 0, err
    assert "1 image(s) written" in out and "2 skipped" in out and "dot.png" in said and "line.png" in said
    assert [p.name for p in (tmp_path / "out").glob("*.png")] == ["ok.png"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_on_a_machine_without_it_is_a_user_error(generator, tiny_dataset, tmp_path, capsys):
    random_png(tmp_path / "a.png")
    for argv in (["translate", "--checkpoint", generator, "--input", tmp_path / "a.png", "--output", tmp_path / "o"],
                 ["train", "--dataset", tiny_dataset, "--preset", "smoke", "--run-dir", tmp_path / "run"]):
        code, _, err = cli(capsys, *argv, "--device", "cuda")
        assert code == 2 and one_error_line(err) and "0 CUDA device(s)" in err and "cpu" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------ D11
def test_d11_notebook_parameter_out_of_range_stops_before_compute(tmp_path, monkeypatch):
    import papermill as pm

    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path / "results"))
    with pytest.raises(pm.PapermillExecutionError, match=r"epochs must be >= 0, got .*epochs=-3"):
        pm.execute_notebook(str(REPO / "notebooks" / "02_train.ipynb"), str(tmp_path / "o.ipynb"),
                            parameters={"artist": "demo", "epochs": -3}, progress_bar=False, cwd=str(tmp_path))
    assert not (tmp_path / "results").exists()


WRONG_SETTINGS = [
    ("train.checkpoint_every=0", "train.checkpoint_every must be >= 1; got 0"),
    ("train.lr=abc", "train.lr must be float, got 'abc' (allowed: finite float >= 0.0)"),
    ("data.max_images=-1", "data.max_images must be >= 1; got -1 (null is allowed too)"),
    ("train.epochs_constant=1.5", "train.epochs_constant must be int, got 1.5 (allowed: int >= 0)"),
    ("train.lr=.nan", "train.lr must be float, got nan (allowed: finite float >= 0.0)"),
    ("train.val_metric=psnr", "train.val_metric must be one of fid, kid; got 'psnr'"),
]


@pytest.mark.parametrize("setting, message", WRONG_SETTINGS, ids=[s for s, _ in WRONG_SETTINGS])
def test_d11_wrong_settings_stop_before_compute_naming_key_and_allowed_values(tiny_dataset, tmp_path, capsys,
                                                                              monkeypatch, setting, message):
    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path / "results"))
    code, _, err = cli(capsys, "train", "--dataset", tiny_dataset, "--preset", "smoke", "--set", setting)
    assert code == 2 and one_error_line(err) and message in err, err
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------------------------------------ D12
def test_d12_evaluate_one_image_is_refused_before_the_inception_pass(tmp_path, capsys, monkeypatch):
    def no_inception(*args, **kwargs):
        raise AssertionError("Inception ran")

    monkeypatch.setattr("art2real.metrics.evaluate.cached_features", no_inception)
    for name, n in (("one", 1), ("ref", 3)):
        (tmp_path / name).mkdir()
        for i in range(n):
            random_png(tmp_path / name / f"{i}.png", seed=i)
    code, _, err = cli(capsys, "evaluate", "--images", tmp_path / "one", "--reference", tmp_path / "ref")
    assert code == 2 and one_error_line(err) and "1 readable image(s)" in err and "at least 2" in err


# ------------------------------------------------------------------------------------------------ D13
def test_d13_a_text_file_named_jpg_is_a_one_line_error(generator, tmp_path, capsys):
    (tmp_path / "photo.jpg").write_text("this is not a picture\n")
    code, _, err = cli(capsys, "translate", "--checkpoint", generator, "--input", tmp_path / "photo.jpg",
                       "--output", tmp_path / "out")
    assert code == 2 and one_error_line(err) and "photo.jpg" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ data check
def test_data_check_on_a_plain_folder_of_images(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    random_png(folder / "small.png", (64, 64))
    random_png(folder / "fine.png", (200, 300))
    code, out, _ = cli(capsys, "data", "check", folder)
    assert code == 0 and "2 readable images" in out and "MISSING" not in out
    assert "SMALL small.png: 64x64" in out and "SMALL fine.png" not in out
    assert out.strip().endswith("clean; 1 image(s) under half of 256 px (usable, but blurry once upsampled)")


def test_data_check_on_a_folder_of_broken_images_names_them(tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8 truncated")
    png_claiming(folder / "b.png", 100_000, 100_000)
    code, out, _ = cli(capsys, "data", "check", folder)
    assert code == 1 and "UNREADABLE a.jpg" in out and "UNREADABLE b.png" in out and "MISSING" not in out


def test_data_check_of_a_missing_folder_is_a_user_error(tmp_path, capsys):
    code, _, err = cli(capsys, "data", "check", tmp_path / "nowhere")
    assert code == 2 and one_error_line(err) and "nowhere" in err


# ------------------------------------------------------------------------------------------------ the CLI
def test_cli_prints_one_line_for_a_user_error_and_a_traceback_for_a_bug(capsys, monkeypatch):
    code, _, err = cli(capsys, "train", "--preset", "turbo")
    assert code == 2 and one_error_line(err) and "unknown preset 'turbo'" in err

    code, _, err = cli(capsys, "--debug", "train", "--preset", "turbo")
    assert code == 2 and "Traceback" in err and "ConfigError" in err and "unknown preset 'turbo'" in err

    def bug(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr("art2real.data.images.scan_images", bug)
    code, _, err = cli(capsys, "data", "check", DEMO)
    assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err and "a bug in art2real" in err
