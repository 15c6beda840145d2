"""The art2real command: data check on the demo and on a broken folder, bad input, translate, evaluate."""
import json
import shutil

import numpy as np
import torch
from PIL import Image

from art2real.cli import main
from art2real.nn.networks import ResnetGenerator

from .conftest import DEMO


def test_data_check_demo_is_clean(capsys):
    assert main(["data", "check", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("clean") and "UNREADABLE" not in out


def test_data_check_lists_broken_files(tiny_dataset, capsys):
    (tiny_dataset / "trainB" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    shutil.rmtree(tiny_dataset / "testA")
    assert main(["data", "check", str(tiny_dataset), "--size", "64"]) == 1
    out = capsys.readouterr().out
    assert "UNREADABLE broken.jpg" in out and "testA: MISSING" in out and out.strip().endswith("2 problem(s)")


def test_unknown_artist_is_a_clear_error(capsys):
    assert main(["train", "--artist", "picasso", "--preset", "smoke"]) == 2
    assert "unknown dataset or artist 'picasso'" in capsys.readouterr().err


def test_translate_and_evaluate(tmp_path, capsys):
    torch.save(ResnetGenerator(ngf=4, n_blocks=1).state_dict(), tmp_path / "g.pth")
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (30 + i, 41, 3), np.uint8)).save(src / f"{i}.png")
    assert main(["translate", "--checkpoint", str(tmp_path / "g.pth"), "--input", str(src),
                 "--output", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert [Image.open(tmp_path / "out" / f"{i}.png").size for i in range(3)] == [(41, 30), (41, 31), (41, 32)]
    assert len(list((tmp_path / "out" / "inputs").iterdir())) == 3
    capsys.readouterr()
    assert main(["evaluate", "--images", str(tmp_path / "out"), "--reference", str(src), "--metrics", "fid", "kid",
                 "--out", str(tmp_path / "metrics")]) == 0
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["n_images"] == 3 and result["fid"] > 0 and "kid" in result
    assert (tmp_path / "metrics.csv").exists()


def test_translate_with_a_method_without_training_says_where_its_images_come_from(tmp_path, capsys):
    code = main(["translate", "--method", "gatys", "--artist", "demo", "--preset", "smoke",
                 "--input", str(DEMO / "testA"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "'gatys' has no generator" in err and "--start 03" in err
    assert not (tmp_path / "out").exists()


def test_study_table_of_a_folder_that_is_no_study_is_a_one_line_error(tmp_path, capsys):
    assert main(["study", "table", "--study", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no manifest.json in" in err and "Traceback" not in err and "bug" not in err
