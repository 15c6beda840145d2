"""The web study over HTTP on 127.0.0.1: the rater flow, and every kind of bad request refused with its status."""
import json

import pytest
import requests

from art2real.study import Manifest
from art2real.study.server import create_app, running

from .study_helpers import make_study


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A study with an allow-list, served from a background thread."""
    tmp = tmp_path_factory.mktemp("web")
    study = make_study(tmp, pairs_per_test=3, gold=2, raters=["alice", "bob", "carol", "dave"])
    with running(create_app(study, pairs_per_rater=2)) as url:
        yield url, study, Manifest.load(study)


def _next(url, rater, **params):
    r = requests.get(f"{url}/api/r/{rater}/next", params=params, timeout=10)
    r.raise_for_status()
    return r.json()


def _vote(url, rater, item, choice, **extra):
    return requests.post(f"{url}/api/r/{rater}/vote", json={"item": item, "choice": choice, **extra}, timeout=10)


def _pass_gate(url, rater, manifest, **params):
    while (d := _next(url, rater, **params))["state"] == "gold":
        assert _vote(url, rater, d["item"], manifest.items[d["item"]].answer).status_code == 200
    return d


def test_rater_flow_gold_then_pairs_then_done(served):
    url, _, m = served
    page = requests.get(f"{url}/r/alice", timeout=10)
    assert page.status_code == 200 and "Which image is better?" in page.text
    assert "http" not in page.text.replace(url, "")  # nothing from other hosts
    d = _next(url, "alice")
    assert d["state"] == "gold" and d["total"] == 2 and d["done"] == 0
    assert d["question"] == m.data["questions"]["realism"] and d["painting"] is None
    for key in ("left", "right"):
        img = requests.get(url + d[key], timeout=10)
        assert img.status_code == 200 and img.headers["Content-Type"] == "image/png"
    d = _pass_gate(url, "alice", m)
    assert d["state"] == "pair" and (d["done"], d["total"]) == (0, 2)
    assert _vote(url, "alice", d["item"], "left", ms=1234).status_code == 200
    d = _next(url, "alice")
    assert _vote(url, "alice", d["item"], "right").status_code == 200
    assert _next(url, "alice")["state"] == "done"
    # the coherence test shows the painting; the link binds the test
    d = _next(url, "bob", test="coherence")
    assert d["painting"].startswith("/img/") and d["question"] == m.data["questions"]["coherence"]
    # Prolific's way of passing the id
    r = requests.get(f"{url}/", params={"PROLIFIC_PID": "carol"}, allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"].endswith("/r/carol")


def test_headers_forbid_other_hosts_and_caching(served):
    url, _, _ = served
    r = requests.get(f"{url}/r/alice", timeout=10)
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "img-src 'self'" in csp and "script-src 'nonce-" in csp
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Referrer-Policy"] == "no-referrer"


def test_forged_ids_are_refused(served):
    url, _, m = served
    assert requests.get(f"{url}/r/mallory", timeout=10).status_code == 403  # not on the allow-list
    assert requests.get(f"{url}/api/r/mallory/next", timeout=10).status_code == 403
    assert _vote(url, "mallory", m.pairs[0].id, "left").status_code == 403
    assert requests.get(f"{url}/r/{'x' * 65}", timeout=10).status_code == 400  # malformed rater ids
    assert requests.get(f"{url}/r/al%20ice", timeout=10).status_code == 400
    assert requests.get(f"{url}/?rater=al.ice", timeout=10).status_code == 400
    d = _pass_gate(url, "dave", m)
    assert _vote(url, "dave", "p0000000000", "left").status_code == 404  # no such pair
    mine = d["item"]
    others = [p.id for p in m.pairs_of("realism") if p.id != mine]
    r = _vote(url, "dave", others[0], "left")  # exists, not assigned to dave
    assert r.status_code == 403 and "not assigned" in r.json()["error"]
    coherence = m.pairs_of("coherence")[0].id
    assert _vote(url, "dave", coherence, "left").status_code == 403  # another test
    assert requests.get(f"{url}/api/r/dave/next", params={"test": "beauty"}, timeout=10).status_code == 400


def test_replays_are_refused(served):
    url, study, m = served
    d = _next(url, "carol")
    gold = d["item"]
    assert _vote(url, "carol", gold, m.items[gold].answer).status_code == 200
    assert _vote(url, "carol", gold, m.items[gold].answer).status_code == 409
    d = _pass_gate(url, "carol", m)
    assert _vote(url, "carol", d["item"], "left").status_code == 200
    r = _vote(url, "carol", d["item"], "right")
    assert r.status_code == 409 and "already" in r.json()["error"]
    import sqlite3

    db = sqlite3.connect(study / "votes.sqlite")
    assert db.execute("SELECT choice FROM votes WHERE rater_id = 'carol' AND item_id = ?",
                      (d["item"],)).fetchall() == [("left",)]


@pytest.mark.parametrize("body, headers, status", [
    (b'{"item": "p0000000000", "choice": "left"', {"Content-Type": "application/json"}, 400),  # malformed JSON
    (b'["left"]', {"Content-Type": "application/json"}, 400),                                  # not an object
    (b'{"item": "p0000000000", "choice": "middle"}', {"Content-Type": "application/json"}, 400),
    (b'{"item": "../../etc", "choice": "left"}', {"Content-Type": "application/json"}, 400),
    (b'{"item": "p0000000000", "choice": "left", "ms": "soon"}', {"Content-Type": "application/json"}, 400),
    (b'{"item": "p0000000000", "choice": "left", "admin": true}', {"Content-Type": "application/json"}, 400),
    (b'item=p0000000000&choice=left', {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    (json.dumps({"item": "p0000000000", "choice": "left", "ms": 1, "pad": "x" * 3000}).encode(),
     {"Content-Type": "application/json"}, 413),                                              # over MAX_BODY
    (b"x" * (2 * 1024 * 1024), {"Content-Type": "application/json"}, 413),                     # over waitress's cap
])
def test_malformed_and_oversized_requests(served, body, headers, status):
    url, _, _ = served
    r = requests.post(f"{url}/api/r/alice/vote", data=body, headers=headers, timeout=10)
    assert r.status_code == status, r.text


def test_wrong_methods_and_paths(served):
    url, _, _ = served
    assert requests.get(f"{url}/api/r/alice/vote", timeout=10).status_code == 405
    assert requests.post(f"{url}/api/r/alice/next", timeout=10).status_code == 405
    for path in ("/manifest.json", "/img/../manifest.json", "/img/..%2Forganiser_token", "/votes.sqlite",
                 "/img/" + "0" * 32 + ".png", "/img/manifest.json"):
        assert requests.get(url + path, timeout=10).status_code == 404, path


def test_results_need_the_token(served):
    url, study, _ = served
    token = (study / "organiser_token").read_text().strip()
    assert requests.get(f"{url}/results", timeout=10).status_code == 401
    assert requests.get(f"{url}/results", params={"token": "guess"}, timeout=10).status_code == 403
    r = requests.get(f"{url}/results.json", headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert r.status_code == 403 and r.json()["error"] == "wrong organiser token"
    r = requests.get(f"{url}/results.json", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200
    data = r.json()
    assert set(data["counts"]) == {"realism", "coherence"}
    assert [row["competitor"] for row in data["table2"]][:3] == ["Cycle-GAN", "UNIT", "DRIT"]
    page = requests.get(f"{url}/results", params={"token": token}, timeout=10)
    assert page.status_code == 200 and "Table 2" in page.text and "paper_pct" in page.text
