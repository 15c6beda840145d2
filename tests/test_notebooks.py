"""Every notebook runs headless with papermill at smoke parameters on the demo data; committed notebooks are clean."""
import json

import pytest

from art2real import pipeline

from .conftest import REPO


def test_committed_notebooks_have_parameters_first_and_no_outputs():
    for name in pipeline.NOTEBOOKS:
        nb = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert "parameters" in code[0]["metadata"].get("tags", []), name
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), name


def test_whole_chain_at_smoke_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path / "results"))
    summary = pipeline.run_chain("demo", "smoke")
    base = tmp_path / "results" / "demo"
    text = summary.read_text()
    assert "Table 1: FID" in text and "Table 3: mean entropy" in text
    for figure in ("masks_paintings", "masks_photos", "bank_statistics", "figure4_tsne", "figure5_qualitative"):
        assert (base / "figures" / f"{figure}.png").exists(), figure
    fid = (base / "table1_fid.csv").read_text()
    assert "Original paintings" in fid and "Art2Real" in fid and "Cycle-GAN" in fid and "not reproduced" in fid
    assert len(list((base / "translations" / "art2real").glob("*.png"))) == 8
    assert len(list((base / "notebooks").glob("*.ipynb"))) == 9  # 02 runs for both methods


@pytest.mark.parametrize("params, message", [
    ({"artist": "picasso"}, "unknown dataset or artist 'picasso'"),
    ({"preset": "turbo"}, "unknown preset 'turbo'"),
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


def test_long_reasons_become_whole_footnotes(tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path))
    hint = 'not available: no weights. Run: python -c "import x; x.fetch()"'
    table = pd.DataFrame([{"method": "A", "status": f"detection: {hint}; segmentation: {hint}"},
                          {"method": "B", "status": "classification: not available: offline"}])
    pipeline._write_table("demo", "t", table, "T")
    md = (tmp_path / "demo" / "t.md").read_text()
    assert "| A | detection: not available [1]; segmentation: not available [1] |" in md
    assert "| B | classification: not available [2] |" in md
    assert '[1] not available: no weights. Run: python -c "import x; x.fetch()"' in md
    assert "[2] not available: offline" in md
