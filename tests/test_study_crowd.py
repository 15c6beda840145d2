"""Crowd platforms: task CSVs out, MTurk batch results and Prolific-style CSVs back into the same vote table."""
import csv
import json

import pytest

from art2real.study import ART2REAL, Manifest, VoteStore, table2
from art2real.study.crowd import export_tasks, import_results
from art2real.study.manifest import TargetExists

from .study_helpers import COMPETITORS, make_study

BASE = "https://example.org/study/img/"


@pytest.fixture
def exported(tmp_path):
    study = make_study(tmp_path, pairs_per_test=5, gold=2)  # 15 pairs a test
    files = export_tasks(study, BASE, pairs_per_task=4)
    return study, Manifest.load(study), files


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_export_one_row_per_task_with_gold_first_and_opaque_urls(exported):
    _, m, files = exported
    plan = json.loads(files["map"].read_text())
    for test in m.tests:
        rows = _rows(files[f"{test}_tasks"])
        assert len(rows) == 4  # 15 pairs in tasks of 4
        assert [int(r["n_items"]) for r in rows] == [6, 6, 6, 5]  # 2 gold + 4, ..., 2 gold + 3
        header = list(rows[0])
        assert header[:4] == ["task_id", "test", "question", "n_items"]
        assert ("item01_painting_url" in header) == (test == "coherence")
        for row in rows:
            items = plan["tasks"][row["task_id"]]["items"]
            assert [m.items[i].gold for i in items[:2]] == [True, True]
            for n, item_id in enumerate(items, start=1):
                item = m.items[item_id]
                assert row[f"item{n:02d}_left_url"] == BASE + item.left.image
                assert row[f"item{n:02d}_right_url"] == BASE + item.right.image
        assert rows[-1]["item06_left_url"] == ""  # the short last task leaves its last item empty
        text = files[f"{test}_tasks"].read_text()
        assert not any(name in text for name in (ART2REAL, *COMPETITORS, "gold"))
        layout = files[f"{test}_layout"].read_text()
        assert "${item06_right_url}" in layout and 'name="item06" value="left"' in layout
    covered = [i for t in plan["tasks"].values() for i in t["items"] if not m.items[i].gold]
    assert sorted(covered) == sorted(p.id for p in m.pairs)  # every pair in exactly one task


def test_export_refuses_to_replace_a_different_export(exported):
    study, _, _ = exported
    export_tasks(study, BASE, pairs_per_task=4)  # the same export again: fine
    with pytest.raises(TargetExists, match="another export"):
        export_tasks(study, BASE, pairs_per_task=5)
    export_tasks(study, BASE, pairs_per_task=5, overwrite=True)
    with pytest.raises(ValueError, match="http"):
        export_tasks(study, "images/", pairs_per_task=5)


def _mturk_results(path, rows_in, answers, workers):
    """An MTurk batch results CSV: Input.* columns copied from the task CSV, one row per assignment."""
    header = ["HITId", "AssignmentId", "WorkerId", "AssignmentStatus"] + [f"Input.{k}" for k in rows_in[0]]
    answer_cols = sorted({k for a in answers.values() for k in a})
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, header + answer_cols)
        out.writeheader()
        for row in rows_in:
            for worker, status in workers:
                out.writerow({"HITId": "H" + row["task_id"], "AssignmentId": f"A{worker}{row['task_id']}",
                              "WorkerId": worker, "AssignmentStatus": status,
                              **{f"Input.{k}": v for k, v in row.items()}, **answers[(worker, row["task_id"])]})
    return path


def test_mturk_results_import_into_the_vote_table(exported, tmp_path):
    study, m, files = exported
    plan = json.loads(files["map"].read_text())["tasks"]
    rows = _rows(files["realism_tasks"])
    answers = {}
    for row in rows:
        items = plan[row["task_id"]]["items"]
        for worker in ("GOOD", "CARELESS", "ONEHOT", "REJECTED"):
            a = {}
            for n, item_id in enumerate(items, start=1):
                gold = m.items[item_id].answer
                wrong = {"left": "right", "right": "left"}.get(gold)
                choice = (wrong if worker == "CARELESS" else gold) if gold else "left"
                if worker == "ONEHOT":  # crowd-form radio groups: one column per option
                    a[f"Answer.item{n:02d}.left"] = str(choice == "left").lower()
                    a[f"Answer.item{n:02d}.right"] = str(choice == "right").lower()
                else:
                    a[f"Answer.item{n:02d}"] = choice
            answers[(worker, row["task_id"])] = a
    results = _mturk_results(tmp_path / "batch.csv", rows, answers,
                             [("GOOD", "Approved"), ("CARELESS", "Submitted"), ("ONEHOT", "Submitted"),
                              ("REJECTED", "Rejected")])
    summary = import_results(study, results)
    n_pairs = len(m.pairs_of("realism"))
    assert summary["platform"] == "mturk" and summary["rows"] == 16 and summary["rows_skipped"] == 4
    assert summary["raters"] == 3 and summary["blank"] == 0
    assert summary["answers_added"] == 3 * (n_pairs + 2 * len(rows))
    again = import_results(study, results)
    assert again["answers_added"] == 0 and again["duplicates"] == summary["answers_added"]

    votes, raters = VoteStore(study).frames()
    assert set(votes["source"]) == {"mturk"} and len(votes) == 3 * n_pairs
    passed = dict(zip(raters["rater_id"], raters["gold_passed"]))
    assert passed == {"mturk:GOOD:realism": 1, "mturk:CARELESS:realism": 0, "mturk:ONEHOT:realism": 1}
    table = table2(study).set_index(["test", "competitor"])
    row = table.loc[("realism", "UNIT")]
    assert row["raters"] == 2 and row["raters_excluded"] == 1 and row["votes"] == 2 * 5
    # both counted workers chose "left" everywhere: the competitor's share is its share of left sides
    unit = [p for p in m.pairs_of("realism") if p.competitor == "UNIT"]
    assert row["competitor_pct"] == pytest.approx(100 * sum(p.left.method == "UNIT" for p in unit) / len(unit))
    assert row["fleiss_kappa"] == pytest.approx(1.0)  # the two counted workers agree on every pair
    assert row["votes_from"] == "human raters" and table.attrs["label"] == "human raters"


def test_prolific_style_results(exported, tmp_path):
    study, m, files = exported
    plan = json.loads(files["map"].read_text())["tasks"]
    rows = _rows(files["coherence_tasks"])
    path = tmp_path / "prolific.csv"
    width = max(len(t["items"]) for t in plan.values())
    with open(path, "w", newline="") as f:
        out = csv.DictWriter(f, ["participant_id", "task_id", "status"] + [f"item{n:02d}" for n in range(1, width + 1)])
        out.writeheader()
        for i, row in enumerate(rows):
            items = plan[row["task_id"]]["items"]
            codes = {n: {"left": "1", "right": "B"}[m.items[it].answer] if m.items[it].gold else "A"
                     for n, it in enumerate(items, start=1)}
            out.writerow({"participant_id": f"5f{i:022x}", "task_id": row["task_id"],
                          "status": "RETURNED" if i == 0 else "APPROVED",
                          **{f"item{n:02d}": c for n, c in codes.items()}})
    summary = import_results(study, path, platform="prolific")
    assert summary["rows_skipped"] == 1 and summary["raters"] == len(rows) - 1
    votes, raters = VoteStore(study).frames()
    assert (raters["gold_passed"] == 1).all() and set(votes["choice"]) == {"left"}
    assert len(votes) == sum(int(r["n_items"]) - 2 for r in rows[1:])
    with pytest.raises(ValueError, match="looks like a prolific file"):
        import_results(study, path, platform="mturk")


def test_bad_results_files_are_refused_with_the_line(exported, tmp_path):
    study, _, files = exported
    task = _rows(files["realism_tasks"])[0]["task_id"]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"participant_id,task_id,item01\np0,{task},left\np1,{task},maybe\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: answer 'maybe'"):
        import_results(study, bad)
    bad.write_text("participant_id,task_id,item01\np1,r999-000000,left\n")
    with pytest.raises(ValueError, match="another export or another study"):
        import_results(study, bad)
    bad.write_text("name,score\na,1\n")
    with pytest.raises(ValueError, match="unrecognised results file"):
        import_results(study, bad)
    assert VoteStore(study).frames()[0].empty  # nothing half-imported
