"""Notebook 08 (Table 2 user study): clean committed form, and a headless run on the demo data."""
import ast
import json

from .conftest import REPO

NOTEBOOK = REPO / "notebooks" / "08_user_study.ipynb"


def test_committed_notebook_is_clean_with_scalar_parameters_first():
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["metadata"]["kernelspec"] == {"display_name": "Python 3 (ipykernel)", "language": "python",
                                            "name": "python3"}
    assert nb["metadata"]["language_info"]["name"] == "python" and nb["metadata"]["language_info"]["version"]
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert code[0]["metadata"].get("tags") == ["parameters"]
    for statement in ast.parse("".join(code[0]["source"])).body:  # scalars only
        assert isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant), ast.dump(statement)
    claim = "".join(nb["cells"][0]["source"])
    assert "Table 2" in claim and all(v in claim for v in ("36.5", "27.9", "25.5", "48.4", "14.2", "7.3"))


def test_demo_run_builds_simulates_and_labels_the_table(tmp_path, monkeypatch):
    import papermill as pm

    monkeypatch.setenv("ART2REAL_RESULTS", str(tmp_path / "results"))
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), parameters={"preset": "smoke", "pairs_per_test": 3, "gold": 2},
                        progress_bar=False, cwd=str(tmp_path))  # no runs in this results folder: stand-ins
    text = out.read_text()
    assert "simulated rater, not human votes" in text and "stand-in translations" in text
    assert '"image/png"' in text
    import pandas as pd

    study = tmp_path / "results" / "demo" / "user_study"
    table = pd.read_csv(study / "table2.csv")
    assert len(table) == 6 and (table["votes_from"] == "simulated rater, not human votes").all()
    assert (table["votes"] == 9).all() and table["paper_pct"].tolist() == [36.5, 27.9, 25.5, 48.4, 14.2, 7.3]
    summary = (tmp_path / "results" / "demo" / "table2_user_study.md").read_text()
    assert "simulated rater, not human votes" in summary
    assert (tmp_path / "results" / "demo" / "figures" / "table2_user_study.png").stat().st_size > 10_000
