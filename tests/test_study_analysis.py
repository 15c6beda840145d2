"""Table 2 statistics against reference values, the vote store's constraints and assignment, the simulated rater."""
import math
import sqlite3
import time
import types

import numpy as np
import pandas as pd
import pytest

from art2real.study import ART2REAL, Manifest, VoteStore, fleiss_kappa, table2, wilson_interval
from art2real.study.analysis import SIMULATED, table2_from
from art2real.study.store import Conflict, Forbidden, NotFound, StudyError

from .conftest import DEMO
from .study_helpers import make_study

Z = 1.959963984540054


# -- Wilson interval -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, n, low, high", [
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_newcombe_1998(k, n, low, high):
    """Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score without correction)."""
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_closed_forms_and_scipy():
    from scipy.stats import binomtest

    n = 40
    assert wilson_interval(0, n) == pytest.approx((0.0, Z * Z / (n + Z * Z)))
    assert wilson_interval(n, n) == pytest.approx((n / (n + Z * Z), 1.0))
    low, high = wilson_interval(20, n)
    assert low + high == pytest.approx(1.0)  # symmetric about 1/2
    for k, n in ((3, 7), (36, 100), (650, 1950)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


# -- Fleiss' kappa -------------------------------------------------------------------------------------------------
WIKIPEDIA = [  # en.wikipedia.org/wiki/Fleiss'_kappa, worked example: 10 subjects, 14 raters, 5 categories
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_wikipedia_worked_example():
    # P-bar = 0.378, P_e = 0.213, kappa = 0.210 on the page; exact: (1.0 - ...) from the table
    assert fleiss_kappa(WIKIPEDIA) == pytest.approx(0.20993, abs=5e-5)


def test_fleiss_kappa_limits_and_unequal_counts():
    assert fleiss_kappa([[3, 0], [0, 3], [3, 0]]) == pytest.approx(1.0)
    # every subject split 2-1 in a balanced design: observed agreement 1/3 < chance 1/2
    assert fleiss_kappa([[2, 1], [1, 2]]) == pytest.approx((1 / 3 - 1 / 2) / (1 - 1 / 2))
    assert math.isnan(fleiss_kappa([[3, 0], [3, 0]]))  # one category only: chance agreement is perfect
    assert fleiss_kappa(np.array(WIKIPEDIA + [[1, 0, 0, 0, 0]])) == fleiss_kappa(WIKIPEDIA)  # 1 rating: left out
    # unequal counts: each subject's agreement uses its own count
    counts = np.array([[2, 0], [3, 1], [1, 1]])
    n = counts.sum(1)
    p_i = ((counts ** 2).sum(1) - n) / (n * (n - 1))
    p_j = counts.sum(0) / n.sum()
    assert fleiss_kappa(counts) == pytest.approx((p_i.mean() - (p_j ** 2).sum()) / (1 - (p_j ** 2).sum()))


# -- Table 2 from vote frames --------------------------------------------------------------------------------------
def _frames(rows, raters):
    votes = pd.DataFrame(rows, columns=["rater_id", "item_id", "test", "competitor", "chosen_method", "simulated"])
    return votes, pd.DataFrame(raters, columns=["rater_id", "test", "gold_passed"])


def test_table2_counts_shares_exclusions_and_kappa():
    rows, raters = [], []
    for r in range(3):
        raters.append((f"r{r}", "realism", 1))
        for i in range(10):  # pair i: raters 0 and 1 pick the competitor when i < 4, rater 2 when i < 2
            picked = "X" if (i < 4 and r < 2) or (i < 2 and r == 2) else ART2REAL
            rows.append((f"r{r}", f"p{i}", "realism", "X", picked, 0))
    raters.append(("bad", "realism", 0))
    rows += [("bad", f"p{i}", "realism", "X", "X", 0) for i in range(10)]
    table = table2_from(*_frames(rows, raters), ["realism"], ["X"])
    row = table.iloc[0]
    assert row["votes"] == 30 and row["pairs"] == 10 and row["raters"] == 3
    assert row["raters_excluded"] == 1 and row["votes_excluded"] == 10
    assert row["competitor_pct"] == pytest.approx(100 * 10 / 30)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(100 * x for x in wilson_interval(10, 30)))
    counts = [[3, 0]] * 2 + [[2, 1]] * 2 + [[0, 3]] * 6
    assert row["fleiss_kappa"] == pytest.approx(fleiss_kappa(counts))
    assert math.isnan(row["paper_pct"]) and row["votes_from"] == "human raters"


def test_table2_labels_simulated_and_mixed_votes():
    raters = [("a", "realism", 1), ("b", "realism", 1)]
    sim = [("a", "p1", "realism", "UNIT", "UNIT", 1), ("b", "p1", "realism", "UNIT", ART2REAL, 1)]
    table = table2_from(*_frames(sim, raters), ["realism"], ["UNIT"])
    assert table.attrs["label"] == SIMULATED == table.iloc[0]["votes_from"]
    assert table.iloc[0]["paper_pct"] == 27.9
    mixed = table2_from(*_frames(sim[:1] + [("b", "p1", "realism", "UNIT", ART2REAL, 0)], raters), ["realism"],
                        ["UNIT"])
    assert mixed.attrs["label"] == "mixed: 1 of 2 simulated"


# -- the vote store ------------------------------------------------------------------------------------------------
@pytest.fixture
def study(tmp_path):
    return make_study(tmp_path, pairs_per_test=3, gold=2, tests=("realism",))


def _pass_gate(store, rater, test=None):
    while (nxt := store.next_item(rater, test=test)).state == "gold":
        store.answer(rater, nxt.item.id, nxt.item.answer)
    return nxt


def test_gate_then_pairs_and_each_pair_gets_its_raters(study):
    store = VoteStore(study, pairs_per_rater=100)
    m = store.manifest
    for r in range(5):
        nxt = _pass_gate(store, f"r{r}")
        while nxt.item is not None:
            assert nxt.state == "pair" and not nxt.item.gold
            store.answer(f"r{r}", nxt.item.id, "left")
            nxt = store.next_item(f"r{r}")
    votes, _ = store.frames()
    per_pair = votes.groupby("item_id").size()
    assert len(per_pair) == len(m.pairs) and (per_pair == m.raters_per_pair).all()  # 3 each, never more
    assert not votes.duplicated(["rater_id", "item_id"]).any()
    assert store.counts()["realism"]["pairs_complete"] == len(m.pairs)


def test_a_failed_gate_ends_quietly_and_forbids_votes(study):
    store = VoteStore(study)
    nxt = store.next_item("careless")
    while nxt.state == "gold":
        store.answer("careless", nxt.item.id, "right" if nxt.item.answer == "left" else "left")
        nxt = store.next_item("careless")
    assert nxt.state == "done" and nxt.item is None
    _pass_gate(store, "careful")
    pair = store.next_item("careful").item
    with pytest.raises(Forbidden):
        store.answer("careless", pair.id, "left")
    row = store.connection().execute("SELECT gold_passed, gold_correct FROM raters WHERE rater_id = 'careless'")
    assert tuple(row.fetchone()) == (0, 0)


def test_refusals(study):
    store = VoteStore(study)
    m = store.manifest
    with pytest.raises(Forbidden, match="open the rater link"):
        store.answer("stranger", m.pairs[0].id, "left")
    gold = store.next_item("r").item
    with pytest.raises(Forbidden, match="no pairs to vote on yet"):
        store.answer("r", m.pairs[0].id, "left")
    store.answer("r", gold.id, gold.answer)
    with pytest.raises(Conflict):
        store.answer("r", gold.id, gold.answer)  # a replayed gold answer
    with pytest.raises(NotFound):
        store.answer("r", "p0000000000", "left")
    with pytest.raises(StudyError):
        store.answer("r", gold.id, "middle")
    _pass_gate(store, "r")
    assigned = store.next_item("r").item
    other = next(p for p in m.pairs if p.id != assigned.id)
    with pytest.raises(Forbidden, match="not assigned"):
        store.answer("r", other.id, "left")
    store.answer("r", assigned.id, "left")
    with pytest.raises(Conflict):
        store.answer("r", assigned.id, "right")  # a replayed vote


def test_constraints_live_in_the_database(study):
    store = VoteStore(study)
    _pass_gate(store, "r")
    pair = store.next_item("r").item
    store.answer("r", pair.id, "left")
    db = sqlite3.connect(store.path)
    db.execute("PRAGMA foreign_keys = ON")
    row = ("r", pair.id, "right", ART2REAL, "web", 0, None, time.time())
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        db.execute("INSERT INTO votes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)  # a second vote on the same pair
    unassigned = next(p for p in store.manifest.pairs if p.id != pair.id)
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        db.execute("INSERT INTO votes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ("r", unassigned.id, *row[2:]))
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        db.execute("INSERT INTO assignments VALUES ('r', 'p0000000000', 0)")
    with pytest.raises(sqlite3.IntegrityError, match="gold pairs"):
        db.execute("INSERT INTO assignments VALUES ('r', ?, 0)", (store.manifest.golds[0].id,))
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_abandoned_assignments_stop_holding_their_pair(tmp_path, monkeypatch):
    from art2real.study import store as store_module

    now = [1000.0]  # the store's clock, moved by hand: a loaded machine cannot expire the lease early
    monkeypatch.setattr(store_module, "time", types.SimpleNamespace(time=lambda: now[0]))
    study = make_study(tmp_path, pairs_per_test=3, gold=0, raters_per_pair=1, tests=("realism",))
    store = VoteStore(study, lease_s=60)
    first = store.next_item("a").item
    now[0] += 59
    assert store.next_item("b").item.id != first.id  # a's assignment is live: 1 rater a pair
    now[0] += 2
    assert store.next_item("c").item.id == first.id  # a left it: it goes to someone else


def test_raters_are_bound_to_the_neediest_test_or_the_one_asked(tmp_path):
    study = make_study(tmp_path, pairs_per_test=2, gold=1)
    store = VoteStore(study)
    assert store.next_item("a").item.test == "realism"  # both equally short: the manifest's order
    assert store.next_item("b").item.test == "coherence"  # a's gold is not a vote, but a holds nothing yet
    assert store.next_item("c", test="realism").item.test == "realism"
    assert store.next_item("c", test="coherence").item.test == "realism"  # bound on first visit
    with pytest.raises(StudyError, match="unknown test"):
        store.next_item("d", test="beauty")


def test_the_store_refuses_a_changed_manifest(study):
    VoteStore(study).close()
    path = study / "manifest.json"
    path.write_text(path.read_text().replace('"answer": "left"', '"answer": "right"', 1))
    with pytest.raises(RuntimeError, match="another manifest"):
        VoteStore(study)


# -- simulated rater -----------------------------------------------------------------------------------------------
def _colour(paths):
    """A cheap stand-in feature for fast tests: 8x8 thumbnails."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((8, 8)), dtype=float).ravel() for p in paths])


def test_simulated_votes_fill_the_study_and_label_themselves(tmp_path):
    from art2real.study.simulate import simulate_votes

    study = make_study(tmp_path, pairs_per_test=4, gold=3)
    summary = simulate_votes(study, DEMO / "testB", features=_colour, attention=0.6, seed=1, pairs_per_rater=5)
    votes, raters = VoteStore(study).frames()
    m = Manifest.load(study)
    assert summary["votes"] == len(votes) == len(m.pairs) * m.raters_per_pair
    assert votes["simulated"].all() and (raters["source"] == "simulated").all()
    assert summary["failed_gate"] == (raters["gold_passed"] == 0).sum() > 0  # careless raters are excluded
    assert set(votes["rater_id"]) <= set(raters.loc[raters["gold_passed"] == 1, "rater_id"])
    table = table2(study)
    assert table.attrs["label"] == SIMULATED and (table["votes_from"] == SIMULATED).all()
    assert (table["votes"] == 12).all()
    assert VoteStore(study).get_meta("simulation")["attention"] == 0.6


def test_a_noiseless_simulated_rater_picks_the_lower_distance(tmp_path):
    """With the real Inception features, computed here independently of the study code."""
    import shutil

    import torch
    from PIL import Image

    from art2real.metrics.inception import folder_features, inception_features
    from art2real.study.simulate import simulate_votes

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((DEMO / "testB").iterdir())[:4]:
        shutil.copy(p, photos)
    study = make_study(tmp_path, pairs_per_test=3, gold=1, raters_per_pair=1, competitors=("UNIT",))
    simulate_votes(study, photos, noise=0, attention=1.0)
    m = Manifest.load(study)
    votes, _ = VoteStore(study).frames()
    pairs = [m.items[i] for i in votes["item_id"]]
    names = sorted({n for p in pairs for n in (p.left.image, p.right.image, p.painting_image) if n})
    images = np.stack([np.array(Image.open(study / "images" / n).convert("RGB")) for n in names])  # all 256 px
    feats = dict(zip(names, inception_features(torch.from_numpy(images).permute(0, 3, 1, 2))))
    mu = folder_features(photos, progress=False).mean(0)
    assert len(votes) == len(m.pairs) == 6
    for choice, pair in zip(votes["choice"], pairs):
        target = mu if pair.test == "realism" else feats[pair.painting_image]
        d = {s: np.linalg.norm(feats[pair.side(s).image] - target) for s in ("left", "right")}
        assert choice == min(d, key=d.get), pair.id


def test_table2_figure_uses_the_object_api(tmp_path):
    from matplotlib.figure import Figure

    from art2real.study.figure import table2_figure
    from art2real.study.simulate import simulate_votes

    study = make_study(tmp_path, pairs_per_test=3, gold=1)
    simulate_votes(study, DEMO / "testB", features=_colour)
    table = table2(study)
    fig = table2_figure(table)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    from matplotlib.container import BarContainer

    bars = [c for c in fig.axes[0].containers if isinstance(c, BarContainer)]
    ours = [bar.get_height() for bar in bars[0]]
    assert ours == pytest.approx(table.loc[table["test"] == "realism", "competitor_pct"].tolist())
    assert "simulated rater, not human votes" in fig.get_suptitle()
    fig.savefig(tmp_path / "t2.png")
