"""Crowd platforms: the study's pairs as task CSVs (one row per HIT / task), and their result files back into the
same vote store as the web study.

Export (``export_tasks``) writes to ``<study>/crowd/``:

* ``<test>_tasks.csv``, one row per task, the layout MTurk batch input files use (each column becomes a
  ``${column}`` variable of the HIT layout) and survey tools behind Prolific load as a loop/spreadsheet:

      task_id              e.g. ``r003-1a2b3c``: test letter, task number, digest of this export
      test                 realism / coherence
      question             the question to show above every item
      n_items              items in this task (the last task may be shorter; later columns are then empty)
      itemNN_left_url      image on the left of item NN (NN = 01, 02, ...)
      itemNN_right_url     image on the right of item NN
      itemNN_painting_url  the painting shown above item NN (coherence only)

  Each task starts with the test's gold pairs, then up to ``pairs_per_task`` pairs. Item columns never say which
  item is gold or which method is where; ``tasks.json`` (kept by the organiser, not uploaded) maps
  ``(task_id, NN)`` to pair ids. Image URLs are ``base_url`` + the opaque file name: upload ``images/`` there.
  On MTurk, set *Number of assignments per task* to the study's raters per pair, so every pair gets that many
  distinct workers.
* ``<test>_mturk_layout.html``: a HIT layout using those variables, answering ``itemNN`` = ``left`` / ``right``.

Import (``import_results``) reads either

* an MTurk batch results CSV: ``WorkerId``, ``AssignmentStatus`` (``Rejected`` rows are skipped),
  ``Input.task_id``, and answers as ``Answer.itemNN`` = left/right (or 1/2, A/B), or as one-hot columns
  ``Answer.itemNN.left`` / ``Answer.itemNN.right`` = true/false (crowd-form radio groups); or
* a Prolific-style CSV (a survey tool's export keyed by Prolific's participant id): ``participant_id`` (or
  ``PROLIFIC_PID`` / ``Participant id``), ``task_id``, ``itemNN`` answers, optional ``status``
  (``REJECTED``, ``RETURNED``, ``TIMED-OUT`` rows are skipped).

Crowd raters are stored as ``<platform>:<worker id>:<test>``; gold answers decide their gate (the same share as
on the web), and failing workers' votes are excluded by the analysis. Importing a file twice adds nothing.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

from ..errors import DataError
from ..io import atomic_path, write_json, write_text
from .manifest import Manifest, TargetExists
from .store import VoteStore

CROWD = "crowd"
TASK_MAP = "tasks.json"
PARTICIPANT_COLUMNS = ("participant_id", "PROLIFIC_PID", "Participant id")
SKIPPED_STATUS = {"rejected", "returned", "timed-out", "timed_out"}
CHOICES = {"left": "left", "l": "left", "1": "left", "a": "left",
           "right": "right", "r": "right", "2": "right", "b": "right"}


def _item_key(n: int) -> str:
    return f"item{n:02d}"


def plan_tasks(manifest: Manifest, pairs_per_task: int) -> dict:
    """The task map: task id -> {test, items}; gold pairs first in every task."""
    if pairs_per_task < 1:
        raise ValueError(f"pairs_per_task must be >= 1, got {pairs_per_task}")
    plan = []
    for test in manifest.tests:
        golds = [g.id for g in manifest.golds_of(test)]
        pairs = [p.id for p in manifest.pairs_of(test)]
        for k, start in enumerate(range(0, len(pairs), pairs_per_task)):
            plan.append((test, k, golds + pairs[start:start + pairs_per_task]))
    digest = hashlib.sha256(json.dumps(plan).encode()).hexdigest()[:6]
    return {"digest": digest, "tasks": {f"{test[0]}{k:03d}-{digest}": {"test": test, "items": items}
                                         for test, k, items in plan}}


def export_tasks(study_dir: str | Path, base_url: str, pairs_per_task: int = 20, overwrite: bool = False) -> dict:
    """Write the task CSVs, MTurk layouts and task map under ``<study>/crowd``; returns {name: path}."""
    study_dir = Path(study_dir)
    manifest = Manifest.load(study_dir)
    if not re.match(r"https?://", base_url):
        raise ValueError(f"base_url must be an http(s) URL where images/ will be hosted, got {base_url!r}")
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    plan = plan_tasks(manifest, pairs_per_task)
    plan["base_url"] = base_url
    map_path = study_dir / CROWD / TASK_MAP
    if map_path.exists() and not overwrite:
        old = json.loads(map_path.read_text())
        if old.get("digest") != plan["digest"]:
            raise TargetExists(f"{map_path} holds another export (digest {old.get('digest')}); results of that "
                                  "export could no longer be imported. Pass overwrite=True (--overwrite) to replace it")
    written = {}
    for test in manifest.tests:
        tasks = {tid: t for tid, t in plan["tasks"].items() if t["test"] == test}
        width = max(len(t["items"]) for t in tasks.values())
        csv_path = study_dir / CROWD / f"{test}_tasks.csv"
        _write_task_csv(csv_path, manifest, tasks, width, base_url, test)
        layout = study_dir / CROWD / f"{test}_mturk_layout.html"
        write_text(layout, mturk_layout(width, test == "coherence"))
        written[f"{test}_tasks"], written[f"{test}_layout"] = csv_path, layout
    write_json(map_path, plan)
    written["map"] = map_path
    return written


def _write_task_csv(path: Path, manifest: Manifest, tasks: dict, width: int, base_url: str, test: str) -> None:
    sides = ["left", "right"] + (["painting"] if test == "coherence" else [])
    header = ["task_id", "test", "question", "n_items"] + [
        f"{_item_key(n)}_{side}_url" for n in range(1, width + 1) for side in sides]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(header)
        for task_id, task in tasks.items():
            row = [task_id, test, manifest.data["questions"][test], len(task["items"])]
            for n in range(width):
                item = manifest.items[task["items"][n]] if n < len(task["items"]) else None
                names = [item.left.image, item.right.image, item.painting_image] if item else [None] * 3
                row += [base_url + name if name else "" for name in names[:len(sides)]]
            out.writerow(row)


def mturk_layout(width: int, with_painting: bool) -> str:
    """An MTurk HIT layout (HTML) for ``width`` items; items whose URLs are empty are hidden."""
    blocks = []
    for n in range(1, width + 1):
        key = _item_key(n)
        painting = (f'<div class="painting"><img src="${{{key}_painting_url}}" alt="painting"></div>'
                    if with_painting else "")
        blocks.append(f"""
<fieldset class="item" data-src="${{{key}_left_url}}">
  <legend>${{question}}</legend>{painting}
  <label><input type="radio" name="{key}" value="left" required><img src="${{{key}_left_url}}" alt="left"></label>
  <label><input type="radio" name="{key}" value="right" required><img src="${{{key}_right_url}}" alt="right"></label>
</fieldset>""")
    return f"""<!-- art2real study: MTurk HIT layout. Variables are the columns of the task CSV. -->
<style>
.item {{ margin: 0 0 16px; border: 1px solid #ccc; border-radius: 8px; }}
.item label {{ display: inline-block; width: 48%; text-align: center; }}
.item img {{ max-width: 100%; max-height: 45vh; }}
.painting {{ text-align: center; }} .painting img {{ max-height: 30vh; }}
</style>
<p>For each item, choose the image that answers the question better.</p>{''.join(blocks)}
<script>
document.querySelectorAll("fieldset.item").forEach(function (f) {{
  if (!f.dataset.src) {{ f.remove(); }}  /* a short task: unused item columns are empty */
}});
</script>
"""


def _choice(value: str, where: str) -> str | None:
    value = (value or "").strip().lower()
    if not value:
        return None
    if value not in CHOICES:
        raise ValueError(f"{where}: answer {value!r} is not left/right (or 1/2, A/B)")
    return CHOICES[value]


def _mturk_answer(row: dict, key: str, where: str) -> str | None:
    if (row.get(f"Answer.{key}") or "").strip():
        return _choice(row[f"Answer.{key}"], where)
    picked = [side for side in ("left", "right")
              if (row.get(f"Answer.{key}.{side}") or "").strip().lower() in ("true", "1", "on")]
    if len(picked) > 1:
        raise ValueError(f"{where}: both left and right are marked for {key}")
    return picked[0] if picked else None


def _platform(header: list[str]) -> str:
    if "WorkerId" in header and any(h.startswith("Answer.") for h in header):
        return "mturk"
    if any(c in header for c in PARTICIPANT_COLUMNS) and "task_id" in header:
        return "prolific"
    raise ValueError("unrecognised results file: expected an MTurk batch results CSV (WorkerId, Input.task_id, "
                     f"Answer.itemNN) or a Prolific-style CSV ({' / '.join(PARTICIPANT_COLUMNS)}, task_id, itemNN)")


def import_results(study_dir: str | Path, csv_path: str | Path, platform: str = "auto") -> dict:
    """Add the answers of a results file to the study's vote store; returns counts of what happened."""
    study_dir = Path(study_dir)
    manifest = Manifest.load(study_dir)
    map_path = study_dir / CROWD / TASK_MAP
    if not map_path.is_file():
        raise DataError(f"{map_path} not found: results can only be imported into the study they were "
                                "exported from (`art2real study export`)")
    tasks = json.loads(map_path.read_text())["tasks"]
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    detected = _platform(header)
    if platform not in ("auto", detected):
        raise ValueError(f"{csv_path} looks like a {detected} file, not {platform}")
    summary = {"platform": detected, "rows": len(rows), "rows_skipped": 0, "answers_added": 0, "duplicates": 0,
               "blank": 0, "raters": set()}
    parsed = []  # every row is checked before anything is written: a bad file imports nothing
    for number, row in enumerate(rows, start=2):  # line numbers as a spreadsheet shows them
        where = f"{csv_path}:{number}"
        worker, task_id, status = _row_keys(row, detected)
        if status.strip().lower() in SKIPPED_STATUS:
            summary["rows_skipped"] += 1
            continue
        if not worker or len(worker) > 128:
            raise ValueError(f"{where}: missing or overlong worker id")
        if task_id not in tasks:
            raise ValueError(f"{where}: task {task_id!r} is not in {map_path} (another export or another study)")
        task = tasks[task_id]
        answers = []
        for n, item_id in enumerate(task["items"], start=1):
            key = _item_key(n)
            choice = _mturk_answer(row, key, where) if detected == "mturk" else _choice(row.get(key, ""), where)
            if choice is None:
                summary["blank"] += 1
            else:
                answers.append((item_id, choice, task_id))
        parsed.append((f"{detected}:{worker}:{task['test']}", task["test"], answers))
    store = VoteStore(study_dir, manifest)
    for rater_id, test, answers in parsed:
        added, duplicates = store.record_crowd(rater_id, test, detected, answers)
        summary["answers_added"] += added
        summary["duplicates"] += duplicates
        summary["raters"].add(rater_id)
    store.close()
    summary["raters"] = len(summary["raters"])
    return summary


def _row_keys(row: dict, platform: str) -> tuple[str, str, str]:
    """(worker id, task id, status) of a results row."""
    if platform == "mturk":
        return (row.get("WorkerId") or "").strip(), (row.get("Input.task_id") or "").strip(), \
            row.get("AssignmentStatus") or ""
    worker = next((row[c] for c in PARTICIPANT_COLUMNS if row.get(c)), "")
    return worker.strip(), (row.get("task_id") or "").strip(), row.get("status") or row.get("Status") or ""
