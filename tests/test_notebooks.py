"""Every notebook runs headless with papermill at smoke parameters on the demo data; committed notebooks are
clean; bad parameters stop before any compute; tables render outcomes as numbers or footnoted reasons."""
import json

import pandas as pd
import pytest

from art2real import chain, report
from art2real.errors import ConfigError
from art2real.outcomes import Measured, NotAvailable

from .conftest import REPO

# notebooks that display pictures, and how many at least, after a smoke chain
IMAGES = {"00_data": 2, "01_memory_banks": 4, "03_translate": 1, "06_tsne": 1, "07_qualitative": 1, "08_user_study": 1,
          **{f"02_train_{m}": 2 for m in chain.chain_methods()}}  # loss curves and a sample grid per method


def test_committed_notebooks_are_clean_and_complete():
    for name in chain.NOTEBOOKS:
        nb = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert "parameters" in code[0]["metadata"].get("tags", []), name
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), name
        assert nb["cells"][0]["cell_type"] == "markdown" and "paper" in "".join(nb["cells"][0]["source"]), name
        assert nb["metadata"]["kernelspec"]["name"] == "python3" and nb["metadata"]["language_info"]["version"]
        for line in "".join(code[0]["source"]).splitlines():  # scalars only, each with its allowed values
            assert " = " in line and "#" in line, (name, line)


def _outputs(path):
    nb = json.loads(path.read_text())
    outs = [o for c in nb["cells"] for o in c.get("outputs", [])]
    errors = [o for o in outs if o["output_type"] == "error" or o.get("name") == "stderr"]
    images = [o for o in outs if "image/png" in o.get("data", {})]
    return errors, images


def test_whole_chain_at_smoke_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path / "results"))
    summary = chain.run_chain("demo", "smoke")
    base = tmp_path / "results" / "demo"
    text = summary.read_text()
    assert "Table 1: FID" in text and "Table 3: mean entropy" in text
    for figure in ("masks_paintings", "masks_photos", "bank_statistics", "bank_neighbours", "figure4_tsne",
                   "figure5_qualitative", "data_paintings"):
        assert (base / "figures" / f"{figure}.png").exists(), figure
    fid = pd.read_csv(base / "table1_fid.csv")
    assert list(fid["method"][:1]) == ["Original paintings"]
    assert {"Art2Real", "Cycle-GAN"} <= set(fid["method"]) and fid["FID"].notna().sum() >= 3
    for method in ("art2real", "cyclegan"):
        folder = base / "runs" / method / "smoke-seed0" / "translations" / "testA"
        assert len(list(folder.glob("*.png"))) == 8 and (folder / "source.json").exists()
    executed = sorted((base / "notebooks").glob("*.ipynb"))
    trained = chain.chain_methods()
    assert {"cut", "unit", "drit"} <= set(trained) and "fastcut" not in trained  # variants only when named
    assert sorted(p.stem for p in executed) == sorted(
        [n for n in chain.NOTEBOOKS if n != "02_train"] + [f"02_train_{m}" for m in trained])  # 02 once per method
    for path in executed:
        errors, images = _outputs(path)
        assert not errors, (path.name, errors[:1])  # no red boxes: logs and warnings go to stdout
        assert len(images) >= IMAGES.get(path.stem, 0), path.name
    log = (base / "notebooks" / "chain.log").read_text()
    assert "without encryption" not in summary.read_text() and log  # the kernels' noise is in the log file


@pytest.mark.parametrize("params, message", [
    ({"artist": "picasso"}, "parameter artist: unknown dataset or artist 'picasso'"),
    ({"preset": "turbo"}, "parameter preset: unknown preset 'turbo'"),
    ({"epochs": -3}, "parameters seed and epochs must be >= 0"),
    ({"method": "pix2pix"}, "unknown method 'pix2pix'"),
    ({"artist": "monet"}, "not available offline"),
])
def test_bad_parameters_stop_before_compute(tmp_path, monkeypatch, params, message):
    import papermill as pm

    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path))
    monkeypatch.setenv("ART2REAL_HOME", str(tmp_path / "home"))  # no data/monet2photo there
    monkeypatch.setenv("ART2REAL_OFFLINE", "1")  # and no download attempt, online or not
    (tmp_path / "home").mkdir()
    with pytest.raises(pm.PapermillExecutionError, match=message):
        pm.execute_notebook(str(REPO / "notebooks" / "02_train.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters={"artist": "demo", "preset": "smoke", **params}, progress_bar=False,
                            cwd=str(tmp_path))
    assert not (tmp_path / "demo").exists()  # nothing computed, nothing written


def test_seeds_parameter():
    assert chain.parse_seeds("all") is None and chain.parse_seeds("0, 2") == [0, 2] and chain.parse_seeds(3) == [3]
    with pytest.raises(ValueError, match="comma-separated"):
        chain.parse_seeds("first")


def test_outcomes_render_as_numbers_or_footnotes(tmp_path):
    hint = NotAvailable("no weights", 'python -c "import x; x.fetch()"')
    over = Measured.over_seeds([Measured(10.0, "m"), Measured(12.0, "m"), Measured(14.0, "m")])
    table = pd.DataFrame([{"method": "A", "FID": Measured(44.7123, "inception", 8), "detection": hint},
                          {"method": "B", "FID": over, "detection": hint},
                          {"method": "C", "FID": NotAvailable("offline"), "detection": None}])
    table.attrs["title"] = "T"
    md = report.markdown(table)
    assert "| A | 44.71 | not available [1] |" in md and "| C | not available [2] | - |" in md
    assert '[1] not available: no weights; fix: python -c "import x; x.fetch()"' in md
    low, high = over.interval95()
    assert over.value == 12.0 and over.std == 2.0 and low == pytest.approx(12 - 4.303 * 2 / 3 ** 0.5, abs=1e-3)
    assert f"12.00 ± 2.00 [{low:.2f}, {high:.2f}]" in md
    csv, _ = report.save_table(table, tmp_path, "t")
    flat = pd.read_csv(csv)
    assert flat["FID per seed"][1] == "10 12 14" and flat["FID"][0] == 44.7123
    assert flat["detection not available"][0].startswith("not available: no weights")


@pytest.mark.parametrize("start", ["9", "x", ""])
def test_chain_start_must_name_a_notebook(tmp_path, monkeypatch, start):
    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path))
    with pytest.raises(ConfigError, match="give a notebook number, one of 00, 01"):
        chain.run_chain("demo", "smoke", start=start)
    assert not (tmp_path / "demo" / "notebooks" / "chain.log").exists()


def test_a_user_error_inside_a_notebook_reaches_the_cli_as_one_line(tmp_path, monkeypatch, capsys):
    """Here the run is locked by this process, so 02's Trainer (in the kernel) raises RunLocked."""
    from art2real.cli import main
    from art2real.runs import Run
    from art2real.train.checkpoint import RunLock

    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path))
    run = Run.of(chain.stage_config("demo", "smoke", method="cyclegan"))
    run.dir.mkdir(parents=True)
    with RunLock(run.dir):
        code = main(["chain", "--artist", "demo", "--preset", "smoke", "--start", "2", "--methods", "cyclegan"])
    err = capsys.readouterr().err
    assert code == 2 and "02_train_cyclegan:" in err and "is being trained by" in err, err
    assert "Traceback" not in err and "bug" not in err
