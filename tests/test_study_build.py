"""Building a study folder: sampling, sides, opaque names, gold pairs, manifest, refusals, atomicity, CLI."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from art2real.data.images import UnreadableImage
from art2real.study import ART2REAL, Manifest, build_study
from art2real.study.manifest import TargetExists

from .conftest import DEMO
from .study_helpers import COMPETITORS, make_study, random_paintings


def test_manifest_records_pairs_sides_gold_and_sources(tmp_path):
    study = make_study(tmp_path, pairs_per_test=5, gold=4, seed=3)
    m = Manifest.load(study)
    assert m.tests == ["realism", "coherence"] and m.competitors == list(COMPETITORS)
    assert len(m.pairs) == 2 * 3 * 5 and len(m.golds) == 2 * 4
    assert m.data["seed"] == 3 and m.data["raters_per_pair"] == 3 and m.data["gold_min_correct"] == 4
    assert set(m.data["sources"]) == {"paintings", "art2real", "competitors"}
    for test in m.tests:
        for competitor in COMPETITORS:
            mine = [p for p in m.pairs_of(test) if p.competitor == competitor]
            assert len(mine) == 5 and len({p.painting for p in mine}) == 5  # sampled without replacement
            for p in mine:
                assert {p.left.method, p.right.method} == {ART2REAL, competitor}
                assert (p.painting_image is not None) == (test == "coherence")
    # the side of Art2Real is random, not fixed
    assert 0 < sum(p.left.method == ART2REAL for p in m.pairs) < len(m.pairs)
    assert all(g.answer in ("left", "right") and g.competitor is None for g in m.golds)
    assert "degradation" in m.data["gold_recipe"]


def test_image_names_are_opaque_and_never_shared(tmp_path):
    study = make_study(tmp_path, pairs_per_test=8, gold=8)
    m = Manifest.load(study)
    names = [n for it in m.items.values() for n in (it.left.image, it.right.image, it.painting_image) if n]
    assert len(names) == len(set(names))  # one file per side of each pair: URLs never recur
    files = sorted(p.name for p in (study / "images").iterdir())
    assert files == sorted(names)
    methods = [s.lower().replace("-", "") for s in (ART2REAL, *COMPETITORS)]
    for name in files:
        assert len(name.split(".")[0]) == 32 and not any(meth in name.lower() for meth in methods)
    pair = m.pairs[0]
    sources = {ART2REAL: m.data["sources"]["art2real"], **m.data["sources"]["competitors"]}
    source = Path(sources[pair.left.method]) / f"{pair.painting}.png"
    assert (study / "images" / pair.left.image).read_bytes() == source.read_bytes()


def test_gold_pairs_show_a_clearly_degraded_image(tmp_path):
    study = make_study(tmp_path, pairs_per_test=2, gold=8)
    m = Manifest.load(study)
    for g in m.golds:
        good = np.asarray(Image.open(study / "images" / g.side(g.answer).image), dtype=float)
        bad = np.asarray(Image.open(study / "images" / g.side("right" if g.answer == "left" else "left").image),
                         dtype=float)
        # blur + noise: the high-frequency content is noise-dominated, far from the clean image's
        assert np.abs(good - bad).mean() > 15, g.id
    methods = {g.side(g.answer).method for g in m.golds}
    assert methods == {ART2REAL, *COMPETITORS}  # the clean image cycles over all methods


def test_fewer_paintings_than_asked_are_stated(tmp_path):
    study = make_study(tmp_path)  # 650 asked, 8 paintings exist
    sampling = Manifest.load(study).data["sampling"]
    assert all(s["sampled"] == 8 and s["requested"] == 650 and "only 8" in s["note"] for s in sampling)


def test_same_seed_same_pairs_and_sides(tmp_path):
    a = Manifest.load(make_study(tmp_path, name="a", seed=7, pairs_per_test=4))
    b = Manifest.load(make_study(tmp_path, name="b", seed=7, pairs_per_test=4))
    c = Manifest.load(make_study(tmp_path, name="c", seed=8, pairs_per_test=4))
    key = lambda m: [(p.id, p.test, p.competitor, p.painting, p.left.method) for p in m.pairs]
    assert key(a) == key(b) and key(a) != key(c)


def test_refuses_a_non_empty_folder_unless_told(tmp_path):
    study = make_study(tmp_path, pairs_per_test=2)
    before = json.loads((study / "manifest.json").read_text())["pairs"]
    with pytest.raises(TargetExists, match="not empty"):
        make_study(tmp_path, pairs_per_test=2, seed=1)
    assert json.loads((study / "manifest.json").read_text())["pairs"] == before
    make_study(tmp_path, pairs_per_test=2, seed=1, overwrite=True)
    assert json.loads((study / "manifest.json").read_text())["pairs"] != before
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(TargetExists, match="holds no study"):
        make_study(tmp_path, name="notes", overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert make_study(tmp_path, name="empty", pairs_per_test=2) == empty


def test_missing_translation_stops_before_writing(tmp_path):
    paintings = random_paintings(tmp_path / "paintings", 3)
    folders = {m: tmp_path / m for m in ("a2r", "cg")}
    for folder in folders.values():
        folder.mkdir()
        for p in paintings.iterdir():
            shutil.copy(p, folder / f"{p.stem}.png")
    (folders["cg"] / "painting_001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"Cycle-GAN: 1 of 3 paintings .*painting_001\.png"):
        build_study(tmp_path / "s", paintings, folders["a2r"], {"Cycle-GAN": folders["cg"]})
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="reference method"):
        build_study(tmp_path / "s", paintings, folders["a2r"], {ART2REAL: folders["cg"]})
    with pytest.raises(ValueError, match="tests must be"):
        build_study(tmp_path / "s", paintings, folders["a2r"], {"X": folders["a2r"]}, tests=("beauty",))


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    paintings = random_paintings(tmp_path / "paintings", 3)
    folder = tmp_path / "tr"
    folder.mkdir()
    for p in paintings.iterdir():
        shutil.copy(p, folder / f"{p.stem}.png")
    (folder / "painting_002.png").write_bytes(b"not an image")  # the gold degradation fails to decode it
    with pytest.raises(UnreadableImage):
        build_study(tmp_path / "s", paintings, folder, {"X": folder}, gold=6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paintings", "tr"]  # no study, no staging folder


def test_cli_build_and_table(tmp_path, capsys):
    from art2real.study.__main__ import main

    study = make_study(tmp_path, name="first", pairs_per_test=1)
    t = Path(Manifest.load(study).data["sources"]["art2real"]).parent
    rc = main(["build", "--out", str(tmp_path / "cli"), "--paintings", str(DEMO / "testA"), "--art2real",
               str(t / "art2real"), "--competitor", f"Cycle-GAN={t / 'cyclegan'}", "--competitor",
               f"UNIT={t / 'unit'}", "--pairs-per-test", "3", "--gold", "2", "--tests", "realism"])
    assert rc == 0 and "6 pairs, 2 gold pairs" in capsys.readouterr().out
    assert Manifest.load(tmp_path / "cli").competitors == ["Cycle-GAN", "UNIT"]
    assert main(["build", "--out", str(study), "--paintings", str(DEMO / "testA"), "--art2real",
                 str(t / "art2real"), "--competitor", f"UNIT={t / 'unit'}"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["table", "--study", str(tmp_path / "cli")]) == 0
    out = capsys.readouterr().out  # a study without votes: the table renders, with no shares
    assert "*Votes: no votes.*" in out and "| realism | UNIT vs Art2Real | - | 27.9 | 0 |" in out
    with pytest.raises(SystemExit):
        main(["build", "--out", "x", "--paintings", "p", "--art2real", "a", "--competitor", "no-equals-sign"])


def test_study_commands_hook_into_the_art2real_command(tmp_path):
    import argparse

    from art2real.study.cli import add_study_commands

    parser = argparse.ArgumentParser(prog="art2real")
    add_study_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["study", "serve", "--study", str(tmp_path)])
    assert args.host == "127.0.0.1" and args.func.__name__ == "cmd_serve"
    for action in ("build", "serve", "export", "import", "simulate", "table"):
        with pytest.raises(SystemExit):
            parser.parse_args(["study", action, "--help"])


def test_link_mode_hard_links_the_translations(tmp_path):
    study = make_study(tmp_path, pairs_per_test=2, gold=1, link=True)
    m = Manifest.load(study)
    pair = m.pairs[0]
    sources = {ART2REAL: m.data["sources"]["art2real"], **m.data["sources"]["competitors"]}
    source = Path(sources[pair.right.method]) / f"{pair.painting}.png"
    assert (study / "images" / pair.right.image).stat().st_ino == source.stat().st_ino
    assert m.data["images_linked"] is True
