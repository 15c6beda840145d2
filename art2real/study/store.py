"""The vote store: SQLite in WAL mode, one file per study (``votes.sqlite``), shared by the web study, crowd
imports and the simulated rater.

Durability: every acknowledged answer is a committed transaction. WAL with ``synchronous=FULL`` (the default
here) survives a killed process and a power cut; ``durable=False`` (``synchronous=NORMAL``) still survives a
killed process and is used for bulk simulated votes.

Integrity lives in the schema, not only in checks: a rater votes a pair at most once (primary key
``(rater_id, item_id)``), only on a pair assigned to them (foreign key to ``assignments``), only on items of the
manifest (foreign key to ``items``), and gold pairs are never assigned, hence never votes (trigger).

Assignment: a rater is bound to one test on first visit (the one needing most votes beyond what its active
raters will still give, unless the link names one), answers that test's gold pairs first, then gets one pair at
a time: the open pair that already has the most votes (so pairs complete early) among those still short of
``raters_per_pair`` counting votes and live assignments. An assignment left unanswered for ``lease_s`` seconds
stops counting, so an abandoned tab does not block a pair; its rater may still answer it, which gives that pair
one vote more.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .manifest import SIDES, Item, Manifest

DB_FILE = "votes.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY, test TEXT NOT NULL, gold INTEGER NOT NULL CHECK (gold IN (0, 1)),
    competitor TEXT, painting TEXT NOT NULL, left_method TEXT NOT NULL, right_method TEXT NOT NULL,
    answer TEXT CHECK (answer IN ('left', 'right')), rank INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS raters (
    rater_id TEXT PRIMARY KEY, test TEXT NOT NULL, source TEXT NOT NULL,
    simulated INTEGER NOT NULL DEFAULT 0 CHECK (simulated IN (0, 1)), created REAL NOT NULL,
    gold_answered INTEGER NOT NULL DEFAULT 0, gold_correct INTEGER NOT NULL DEFAULT 0,
    gold_passed INTEGER CHECK (gold_passed IN (0, 1)));
CREATE TABLE IF NOT EXISTS gold_answers (
    rater_id TEXT NOT NULL REFERENCES raters(rater_id), item_id TEXT NOT NULL REFERENCES items(item_id),
    task TEXT NOT NULL DEFAULT '', choice TEXT NOT NULL CHECK (choice IN ('left', 'right')),
    correct INTEGER NOT NULL CHECK (correct IN (0, 1)), created REAL NOT NULL,
    PRIMARY KEY (rater_id, item_id, task));
CREATE TABLE IF NOT EXISTS assignments (
    rater_id TEXT NOT NULL REFERENCES raters(rater_id), item_id TEXT NOT NULL REFERENCES items(item_id),
    assigned REAL NOT NULL, PRIMARY KEY (rater_id, item_id));
CREATE INDEX IF NOT EXISTS assignments_item ON assignments(item_id);
CREATE TABLE IF NOT EXISTS votes (
    rater_id TEXT NOT NULL, item_id TEXT NOT NULL, choice TEXT NOT NULL CHECK (choice IN ('left', 'right')),
    chosen_method TEXT NOT NULL, source TEXT NOT NULL, simulated INTEGER NOT NULL CHECK (simulated IN (0, 1)),
    ms INTEGER, created REAL NOT NULL,
    PRIMARY KEY (rater_id, item_id),
    FOREIGN KEY (rater_id, item_id) REFERENCES assignments(rater_id, item_id));
CREATE INDEX IF NOT EXISTS votes_item ON votes(item_id);
CREATE TRIGGER IF NOT EXISTS no_gold_assignments BEFORE INSERT ON assignments
    WHEN (SELECT gold FROM items WHERE item_id = NEW.item_id) = 1
    BEGIN SELECT RAISE(ABORT, 'gold pairs are answered in gold_answers, not assigned'); END;
"""

# Votes plus live (unexpired, unanswered) assignments of every pair.
LOAD = """
SELECT i.item_id, i.test, i.rank,
       (SELECT COUNT(*) FROM votes v WHERE v.item_id = i.item_id)
     + (SELECT COUNT(*) FROM assignments a WHERE a.item_id = i.item_id AND a.assigned > :cutoff
          AND NOT EXISTS (SELECT 1 FROM votes w WHERE w.rater_id = a.rater_id AND w.item_id = a.item_id)) AS load
FROM items i WHERE i.gold = 0
"""


class StudyError(ValueError):
    """A refused request; ``status`` is the HTTP status the web study answers with (a ValueError, so command
    lines report it as bad input)."""

    status = 400


class NotFound(StudyError):
    status = 404


class Forbidden(StudyError):
    status = 403


class Conflict(StudyError):
    status = 409


@dataclass
class Next:
    """What a rater sees next: a gold pair, a pair to vote on, or the end."""

    state: str  # "gold", "pair" or "done"
    item: Item | None
    done: int
    total: int


class VoteStore:
    def __init__(self, study_dir: str | Path, manifest: Manifest | None = None, *, pairs_per_rater: int = 20,
                 lease_s: float = 900.0, durable: bool = True):
        self.study_dir = Path(study_dir)
        self.manifest = manifest or Manifest.load(study_dir)
        self.pairs_per_rater, self.lease_s = pairs_per_rater, lease_s
        self.path = self.study_dir / DB_FILE
        self._synchronous = "FULL" if durable else "NORMAL"
        self._local = threading.local()
        self._init()

    # -- connections and transactions ------------------------------------------------------------------------
    def connection(self) -> sqlite3.Connection:
        """One connection per thread (the web server answers from a pool of threads)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=True)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA foreign_keys = ON")
            db.execute(f"PRAGMA synchronous = {self._synchronous}")
            db.execute("PRAGMA busy_timeout = 30000")
            self._local.db = db
        return db

    @contextmanager
    def _write(self):
        """A transaction that takes the write lock at once, so read-then-write decisions cannot race."""
        db = self.connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _init(self) -> None:
        db = self.connection()
        if db.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise RuntimeError(f"{self.path}: SQLite could not switch to WAL mode (a network file system?)")
        db.executescript(SCHEMA)
        digest = self._manifest_digest()
        with self._write() as tx:
            row = tx.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
            if row is None:
                tx.execute("INSERT INTO meta VALUES ('manifest', ?)", (json.dumps(digest),))
                tx.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                    (it.id, it.test, int(it.gold), it.competitor, it.painting, it.left.method, it.right.method,
                     it.answer, rank) for rank, it in enumerate(self.manifest.pairs + self.manifest.golds)])
            elif json.loads(row[0]) != digest:
                raise RuntimeError(f"{self.path} belongs to another manifest than {self.study_dir}/manifest.json; "
                                   "restore the manifest, or rebuild the study into a new folder")

    def _manifest_digest(self) -> str:
        items = [self.manifest.data["pairs"], self.manifest.data["golds"]]
        return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()

    # -- raters ----------------------------------------------------------------------------------------------
    def _rater(self, db, rater_id: str):
        return db.execute("SELECT * FROM raters WHERE rater_id = ?", (rater_id,)).fetchone()

    def _add_rater(self, db, rater_id: str, test: str | None, source: str, simulated: bool):
        if test is not None and test not in self.manifest.tests:
            raise StudyError(f"unknown test {test!r}; this study has {self.manifest.tests}")
        test = test or self._neediest_test(db)
        db.execute("INSERT INTO raters (rater_id, test, source, simulated, created) VALUES (?, ?, ?, ?, ?)",
                   (rater_id, test, source, int(simulated), time.time()))
        return self._rater(db, rater_id)

    def _neediest_test(self, db) -> str:
        """The test with most votes missing, less the pairs its active raters will still take (a burst of new
        raters in their warm-up would otherwise all land on the same test)."""
        args = {"need": self.manifest.raters_per_pair, "cutoff": time.time() - self.lease_s,
                "per_rater": self.pairs_per_rater}
        short = dict(db.execute(f"SELECT test, SUM(MAX(0, :need - load)) FROM ({LOAD}) GROUP BY test", args))
        coming = dict(db.execute("""SELECT test, SUM(MAX(0, :per_rater - (SELECT COUNT(*) FROM assignments a
                                    WHERE a.rater_id = r.rater_id))) FROM raters r
                                    WHERE r.created > :cutoff AND COALESCE(r.gold_passed, 1) = 1
                                    GROUP BY test""", args))
        return max(self.manifest.tests, key=lambda t: short.get(t, 0) - coming.get(t, 0))  # ties: manifest order

    # -- the web study's two operations ----------------------------------------------------------------------
    def next_item(self, rater_id: str, *, test: str | None = None, source: str = "web",
                  simulated: bool = False) -> Next:
        """The item this rater should answer now; creates the rater (bound to a test) on first call."""
        with self._write() as db:
            rater = self._rater(db, rater_id) or self._add_rater(db, rater_id, test, source, simulated)
            golds = self.manifest.golds_of(rater["test"])
            if golds and rater["gold_passed"] is None:
                answered = {r[0] for r in db.execute(
                    "SELECT item_id FROM gold_answers WHERE rater_id = ? AND task = ''", (rater_id,))}
                pending = [g for g in golds if g.id not in answered]
                return Next("gold", pending[0], len(answered), len(golds))
            if rater["gold_passed"] == 0:  # failed the gate: the end, with no word on why
                return Next("done", None, 0, 0)
            voted = db.execute("SELECT COUNT(*) FROM votes WHERE rater_id = ?", (rater_id,)).fetchone()[0]
            open_ = db.execute("""SELECT item_id FROM assignments a WHERE rater_id = ? AND NOT EXISTS
                                  (SELECT 1 FROM votes v WHERE v.rater_id = a.rater_id AND v.item_id = a.item_id)
                                  ORDER BY assigned LIMIT 1""", (rater_id,)).fetchone()
            total = self.pairs_per_rater
            if open_ is not None:
                return Next("pair", self.manifest.items[open_[0]], voted, total)
            if voted >= total:
                return Next("done", None, voted, total)
            pick = db.execute(f"""SELECT item_id FROM ({LOAD}) WHERE test = :test AND load < :need
                                  AND item_id NOT IN (SELECT item_id FROM assignments WHERE rater_id = :rater)
                                  ORDER BY load DESC, rank LIMIT 1""",
                              {"test": rater["test"], "need": self.manifest.raters_per_pair, "rater": rater_id,
                               "cutoff": time.time() - self.lease_s}).fetchone()
            if pick is None:
                return Next("done", None, voted, voted)
            db.execute("INSERT INTO assignments VALUES (?, ?, ?)", (rater_id, pick[0], time.time()))
            return Next("pair", self.manifest.items[pick[0]], voted, total)

    def answer(self, rater_id: str, item_id: str, choice: str, *, ms: int | None = None) -> None:
        """Record a rater's choice ("left" or "right") for a gold pair or an assigned pair."""
        if choice not in SIDES:
            raise StudyError(f"choice must be 'left' or 'right', got {choice!r}")
        item = self.manifest.items.get(item_id)
        if item is None:
            raise NotFound(f"no item {item_id!r} in this study")
        with self._write() as db:
            rater = self._rater(db, rater_id)
            if rater is None:
                raise Forbidden(f"unknown rater {rater_id!r}: open the rater link first")
            if item.test != rater["test"]:
                raise Forbidden(f"item {item_id} is not assigned to rater {rater_id}")
            if item.gold:
                self._answer_gold(db, rater, item, choice)
            else:
                self._vote(db, rater, item, choice, ms)

    def _answer_gold(self, db, rater, item: Item, choice: str) -> None:
        try:
            db.execute("INSERT INTO gold_answers VALUES (?, ?, '', ?, ?, ?)",
                       (rater["rater_id"], item.id, choice, int(choice == item.answer), time.time()))
        except sqlite3.IntegrityError as e:
            raise Conflict(f"item {item.id} was already answered by rater {rater['rater_id']}") from e
        self._update_gate(db, rater["rater_id"], len(self.manifest.golds_of(rater["test"])))

    def _update_gate(self, db, rater_id: str, needed: int) -> None:
        """Gold counts of a rater; the gate is decided once ``needed`` gold answers are in (0: at once)."""
        answered, correct = db.execute("SELECT COUNT(*), COALESCE(SUM(correct), 0) FROM gold_answers "
                                       "WHERE rater_id = ?", (rater_id,)).fetchone()
        passed = int(self.manifest.gate_passed(correct, answered)) if answered >= needed else None
        db.execute("UPDATE raters SET gold_answered = ?, gold_correct = ?, gold_passed = ? WHERE rater_id = ?",
                   (answered, correct, passed, rater_id))

    def _vote(self, db, rater, item: Item, choice: str, ms: int | None) -> None:
        rater_id = rater["rater_id"]
        if self.manifest.golds_of(rater["test"]) and rater["gold_passed"] != 1:
            raise Forbidden(f"rater {rater_id} has no pairs to vote on yet")
        if db.execute("SELECT 1 FROM assignments WHERE rater_id = ? AND item_id = ?",
                      (rater_id, item.id)).fetchone() is None:
            raise Forbidden(f"item {item.id} is not assigned to rater {rater_id}")
        try:
            db.execute("INSERT INTO votes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (rater_id, item.id, choice, item.side(choice).method, rater["source"], rater["simulated"],
                        ms, time.time()))
        except sqlite3.IntegrityError as e:  # the primary key: one vote per rater and pair
            raise Conflict(f"item {item.id} was already voted on by rater {rater_id}") from e

    # -- crowd imports ---------------------------------------------------------------------------------------
    def record_crowd(self, rater_id: str, test: str, source: str,
                     answers: list[tuple[str, str, str]]) -> tuple[int, int]:
        """Answers ``(item_id, choice, task)`` of one crowd worker; returns (added, already present).

        The platform assigned the items, so assignments are written here; rows seen before are skipped, which
        makes importing the same results file twice harmless. The gate is re-decided on all gold answers."""
        added = duplicates = 0
        with self._write() as db:
            rater = self._rater(db, rater_id) or self._add_rater(db, rater_id, test, source, False)
            if rater["test"] != test:
                raise StudyError(f"rater {rater_id} is bound to test {rater['test']!r}, not {test!r}")
            now = time.time()
            for item_id, choice, task in answers:
                item = self.manifest.items[item_id]
                if item.gold:
                    cur = db.execute("INSERT OR IGNORE INTO gold_answers VALUES (?, ?, ?, ?, ?, ?)",
                                     (rater_id, item_id, task, choice, int(choice == item.answer), now))
                else:
                    db.execute("INSERT OR IGNORE INTO assignments VALUES (?, ?, ?)", (rater_id, item_id, now))
                    cur = db.execute("INSERT OR IGNORE INTO votes VALUES (?, ?, ?, ?, ?, 0, NULL, ?)",
                                     (rater_id, item_id, choice, item.side(choice).method, source, now))
                added += cur.rowcount
                duplicates += 1 - cur.rowcount
            self._update_gate(db, rater_id, 0)
        return added, duplicates

    def set_meta(self, key: str, value) -> None:
        """Provenance beside the votes (e.g. the settings of a simulated rater), as JSON."""
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str):
        row = self.connection().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    # -- reading ---------------------------------------------------------------------------------------------
    def counts(self) -> dict:
        """Raters, votes and completed pairs per test, for the organiser page."""
        db = self.connection()
        need = self.manifest.raters_per_pair
        out = {}
        for test in self.manifest.tests:
            raters = db.execute("""SELECT COUNT(*), SUM(gold_passed = 1), SUM(gold_passed = 0),
                                   SUM(gold_passed IS NULL) FROM raters WHERE test = ?""", (test,)).fetchone()
            votes = db.execute("""SELECT COUNT(*), COALESCE(SUM(v.simulated), 0) FROM votes v
                                  JOIN items i USING (item_id) WHERE i.test = ?""", (test,)).fetchone()
            per_pair = db.execute("""SELECT COUNT(*), SUM(n >= :need) FROM (SELECT i.item_id, COUNT(v.rater_id) n
                                     FROM items i LEFT JOIN votes v USING (item_id)
                                     WHERE i.gold = 0 AND i.test = :test GROUP BY i.item_id)""",
                                  {"need": need, "test": test}).fetchone()
            out[test] = {"raters": raters[0], "passed_gate": raters[1] or 0, "failed_gate": raters[2] or 0,
                         "in_warm_up": raters[3] or 0, "votes": votes[0], "simulated_votes": votes[1],
                         "pairs": per_pair[0], "pairs_complete": per_pair[1] or 0, "votes_needed": per_pair[0] * need}
        return out

    def frames(self):
        """(votes, raters) as pandas DataFrames; votes carry the pair's test, competitor and chosen method."""
        import pandas as pd

        db = self.connection()
        votes = pd.read_sql_query("""SELECT v.rater_id, v.item_id, i.test, i.competitor, i.painting, v.choice,
                                     v.chosen_method, v.source, v.simulated, v.ms, v.created
                                     FROM votes v JOIN items i USING (item_id) ORDER BY v.created""", db)
        raters = pd.read_sql_query("SELECT * FROM raters ORDER BY created", db)
        return votes, raters
