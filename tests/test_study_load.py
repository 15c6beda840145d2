"""The study server under load and under kill -9: a server process on 127.0.0.1, raters as client threads.

Bounded: every request has a timeout and the whole run a deadline, so a hang fails the test instead of stalling
it. Speeds are printed (run with -s to see them), never asserted.
"""
import random
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
import pytest
import requests

from art2real.study import Manifest

from .study_helpers import StudyServer, make_study, random_paintings

DEADLINE_S = 240
PAIRS_PER_RATER = 20


@pytest.fixture(scope="module")
def big_study(tmp_path_factory):
    """80 paintings x 3 competitors x 2 tests = 480 pairs, 8 gold pairs a test: room for 50 raters x 20 votes."""
    tmp = tmp_path_factory.mktemp("load")
    paintings = random_paintings(tmp / "paintings", 80)
    return lambda name: make_study(tmp, paintings, name=name, pairs_per_test=80, gold=8)


class Rater:
    """A scripted rater: answers gold pairs right and pairs at random, recording what the server acknowledged."""

    def __init__(self, rater_id: str, manifest: Manifest, server: dict, resume: threading.Event | None = None):
        self.id, self.manifest, self.server, self.resume = rater_id, manifest, server, resume
        self.acked: dict[str, str] = {}  # item -> choice, for every answer the server acknowledged (200)
        self.latency = {"next": [], "vote": []}
        self.rng = random.Random(rater_id)

    def _call(self, session, method, path, **kw):
        while True:
            start = time.perf_counter()
            try:
                r = session.request(method, self.server["url"] + path, timeout=30, **kw)
            except requests.RequestException:
                if self.resume is None:
                    raise
                self.resume.wait(timeout=DEADLINE_S)  # the server was killed: wait for its restart
                continue
            self.latency["next" if method == "GET" else "vote"].append(time.perf_counter() - start)
            return r

    def run(self) -> "Rater":
        with requests.Session() as s:
            while True:
                r = self._call(s, "GET", f"/api/r/{self.id}/next")
                r.raise_for_status()
                d = r.json()
                if d["state"] == "done":
                    return self
                item = self.manifest.items[d["item"]]
                choice = item.answer or self.rng.choice(("left", "right"))
                r = self._call(s, "POST", f"/api/r/{self.id}/vote", json={"item": item.id, "choice": choice})
                if r.status_code == 200:
                    self.acked[item.id] = choice
                elif r.status_code != 409:  # 409: stored before a kill, acknowledged now as a replay
                    raise AssertionError(f"{self.id}: vote refused {r.status_code} {r.text}")


def _db_answers(study) -> tuple[dict, dict]:
    """{(rater, item): choice} of the votes and of the gold answers, read straight from SQLite."""
    db = sqlite3.connect(study / "votes.sqlite")
    try:
        votes = {(r, i): c for r, i, c in db.execute("SELECT rater_id, item_id, choice FROM votes")}
        golds = {(r, i): c for r, i, c in db.execute("SELECT rater_id, item_id, choice FROM gold_answers")}
    finally:
        db.close()
    return votes, golds


def _token(study) -> dict:
    return {"Authorization": f"Bearer {(study / 'organiser_token').read_text().strip()}"}


def test_50_concurrent_raters_lose_and_double_nothing(big_study):
    study = big_study("load")
    m = Manifest.load(study)
    with StudyServer(study, "--pairs-per-rater", str(PAIRS_PER_RATER), "--threads", "8") as server:
        raters = [Rater(f"rater{i:02d}", m, {"url": server.url}) for i in range(50)]
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=50) as pool:
            futures = [pool.submit(r.run) for r in raters]
            done, pending = wait(futures, timeout=DEADLINE_S)
        wall = time.perf_counter() - start
        assert not pending, f"{len(pending)} raters still running after {DEADLINE_S} s"
        for f in done:
            f.result()  # re-raise a client's failure
        counts = requests.get(f"{server.url}/results.json", headers=_token(study), timeout=30).json()["counts"]

    votes, golds = _db_answers(study)
    acked_votes = {(r.id, i): c for r in raters for i, c in r.acked.items() if not m.items[i].gold}
    acked_golds = {(r.id, i): c for r in raters for i, c in r.acked.items() if m.items[i].gold}
    assert len(acked_votes) == 50 * PAIRS_PER_RATER and len(acked_golds) == 50 * 8
    assert votes == acked_votes and golds == acked_golds  # nothing lost, nothing extra, nothing doubled
    per_pair = np.bincount(np.unique([i for _, i in votes], return_inverse=True)[1])
    assert per_pair.max() <= m.raters_per_pair
    assert sum(c["votes"] for c in counts.values()) == 50 * PAIRS_PER_RATER
    lat = np.array([x for r in raters for x in r.latency["vote"]])
    nxt = np.array([x for r in raters for x in r.latency["next"]])
    answers = len(acked_votes) + len(acked_golds)
    print(f"\nload: 50 raters x ({PAIRS_PER_RATER} votes + 8 gold) = {answers} answers in {wall:.1f} s: "
          f"{answers / wall:.0f} answers/s ({len(acked_votes) / wall:.0f} pair votes/s); vote latency p50 "
          f"{1000 * np.median(lat):.0f} ms, p95 {1000 * np.percentile(lat, 95):.0f} ms; next p95 "
          f"{1000 * np.percentile(nxt, 95):.0f} ms; lost 0, doubled 0; split "
          f"{ {t: c['raters'] for t, c in counts.items()} }")


def test_kill_9_mid_run_loses_nothing_acknowledged(big_study):
    study = big_study("kill")
    m = Manifest.load(study)
    server = StudyServer(study, "--pairs-per-rater", str(PAIRS_PER_RATER)).start()
    where = {"url": server.url}
    resume = threading.Event()
    raters = [Rater(f"k{i}", m, where, resume) for i in range(10)]
    pool = ThreadPoolExecutor(max_workers=10)
    futures = [pool.submit(r.run) for r in raters]
    try:
        deadline = time.monotonic() + DEADLINE_S
        while sum(len(r.acked) for r in raters) < 120 and time.monotonic() < deadline:
            time.sleep(0.02)
        server.kill9()  # mid-run: ten raters are voting
        acked_at_kill = {(r.id, i): c for r in raters for i, c in list(r.acked.items())}
        votes, golds = _db_answers(study)
        stored = {**votes, **golds}
        assert all(stored.get(k) == c for k, c in acked_at_kill.items()), "an acknowledged answer was lost"
        assert len(acked_at_kill) >= 120 and len(stored) >= len(acked_at_kill)

        server = StudyServer(study, "--pairs-per-rater", str(PAIRS_PER_RATER)).start()
        counts = requests.get(f"{server.url}/results.json", headers=_token(study), timeout=30).json()["counts"]
        assert sum(c["votes"] for c in counts.values()) == len(votes)  # the restarted server sees them all
        where["url"] = server.url
        resume.set()
        finished, pending = wait(futures, timeout=DEADLINE_S)
        assert not pending
        for f in finished:
            f.result()
        votes, golds = _db_answers(study)
        per_rater = {r.id: sum(1 for (rid, _) in votes if rid == r.id) for r in raters}
        assert set(per_rater.values()) == {PAIRS_PER_RATER}  # every rater finished, none voted twice
        acked = {(r.id, i): c for r in raters for i, c in r.acked.items()}
        assert all({**votes, **golds}.get(k) == c for k, c in acked.items())
        print(f"\nkill -9 after {len(acked_at_kill)} acknowledged answers: {len(stored)} stored (none lost), "
              f"the restarted server counted {sum(c['votes'] for c in counts.values())} votes; all 10 raters then "
              f"finished with {PAIRS_PER_RATER} votes each, none doubled")
    finally:
        resume.set()
        server.stop()
        pool.shutdown(wait=False, cancel_futures=True)
