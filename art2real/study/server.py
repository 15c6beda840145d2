"""The web study: Flask (3.x) for the application, waitress for serving it.

Why these: Flask is small, stable and maintained by the Pallets team, and the study needs nothing but a few
routes and templates; waitress is a pure-Python multi-threaded WSGI server, production grade, with no C build and
the same behaviour on Linux, macOS and Windows. The study's work is short SQLite transactions, which threads
serve well; nothing here needs an async framework.

Routes:

    GET  /r/<rater_id>[?test=realism|coherence]   the rater page (the test is bound on first visit)
    GET  /?PROLIFIC_PID=<id> or /?rater=<id>       redirects to /r/<id> (Prolific passes ids this way)
    GET  /api/r/<rater_id>/next                     the next gold pair, pair, or the end (JSON)
    POST /api/r/<rater_id>/vote                     {"item": id, "choice": "left"|"right", "ms": int} (JSON)
    GET  /img/<opaque name>                         an image of the study
    GET  /results, /results.json                    organiser pages: ``Authorization: Bearer <token>`` or
                                                    ``?token=<token>``; 401 without a token, 403 with a wrong one
    GET  /healthz                                   "ok"

Refusals: 400 malformed rater id, JSON or fields; 403 rater not on the allow-list, or an item not assigned to
the rater; 404 unknown item or path; 405 wrong method; 409 an answer given before (a replay); 413 a body over
``MAX_BODY`` bytes; 415 a vote that is not JSON.
"""
from __future__ import annotations

import hmac
import math
import re
import secrets
import threading
from contextlib import contextmanager
from pathlib import Path

from ..errors import DataError
from .analysis import table2
from .manifest import ALLOW_LIST, IMAGES, SIDES, TOKEN_FILE, Manifest
from .pages import BASE_CSS, LANDING, RATER, RESULTS
from .store import StudyError, VoteStore

RATER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
ITEM_ID = re.compile(r"[pg][0-9a-f]{10}")
IMAGE_NAME = re.compile(r"[0-9a-f]{32}\.[a-z]{3,4}")
MAX_BODY = 2048  # a vote is under 100 bytes
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def read_allow_list(path: str | Path) -> set[str]:
    """Rater ids, one a line; blank lines and # comments are ignored."""
    ids = {line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines()}
    ids.discard("")
    bad = sorted(i for i in ids if not RATER_ID.fullmatch(i))
    if bad:
        raise ValueError(f"{path}: rater ids must be 1-64 letters, digits, '-' or '_': {bad[:3]}")
    return ids


def read_token(study_dir: Path) -> str:
    path = study_dir / TOKEN_FILE
    if not path.is_file():
        raise DataError(f"no organiser token: {path} is missing; pass one with --token")
    return path.read_text().strip()


def create_app(study_dir: str | Path, *, token: str | None = None, allow_list: str | Path | set | None = None,
               pairs_per_rater: int = 20, lease_s: float = 900.0, completion_url: str | None = None):
    """The Flask application of a study folder. ``allow_list``: a set of ids or a file of them (default:
    the study's raters.txt when present; without one, any well-formed id may rate)."""
    from flask import (
        Flask,
        abort,
        g,
        jsonify,
        redirect,
        render_template_string,
        request,
        send_from_directory,
        url_for,
    )
    from werkzeug.exceptions import HTTPException

    study_dir = Path(study_dir).resolve()
    manifest = Manifest.load(study_dir)
    store = VoteStore(study_dir, manifest, pairs_per_rater=pairs_per_rater, lease_s=lease_s)
    token = token or read_token(study_dir)
    if allow_list is None and (study_dir / ALLOW_LIST).is_file():
        allow_list = study_dir / ALLOW_LIST
    allowed = read_allow_list(allow_list) if isinstance(allow_list, (str, Path)) else allow_list

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["art2real_study"] = store

    @app.before_request
    def _nonce():
        g.nonce = secrets.token_urlsafe(16)

    @app.after_request
    def _headers(response):
        nonce = g.get("nonce", "")
        response.headers["Content-Security-Policy"] = (
            f"default-src 'none'; img-src 'self'; connect-src 'self'; script-src 'nonce-{nonce}'; "
            f"style-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if not request.path.startswith("/img/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(HTTPException)
    def _http_error(e):
        if request.path.startswith(("/api/", "/results.json")):
            return jsonify(error=e.description), e.code
        return f"{e.code} {e.name}: {e.description}\n", e.code, {"Content-Type": "text/plain; charset=utf-8"}

    @app.errorhandler(StudyError)
    def _study_error(e):
        return jsonify(error=str(e)), e.status

    def check_rater(rater_id: str) -> None:
        if not RATER_ID.fullmatch(rater_id):
            abort(400, "malformed rater id: 1-64 letters, digits, '-' or '_'")
        if allowed is not None and rater_id not in allowed:
            abort(403, "this rater id is not part of the study")

    def check_test() -> str | None:
        test = request.args.get("test")
        if test is not None and test not in manifest.tests:
            abort(400, f"unknown test {test!r}; this study has {manifest.tests}")
        return test

    def check_token() -> None:
        given = request.args.get("token")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[len("Bearer "):]
        if not given:
            abort(401, "organiser token required (Authorization: Bearer <token>, or ?token=)")
        if not hmac.compare_digest(given.encode(), token.encode()):
            abort(403, "wrong organiser token")

    def page(template: str, **kw):
        return render_template_string(template, nonce=g.nonce, css=BASE_CSS, **kw)

    @app.get("/")
    def landing():
        rater = request.args.get("PROLIFIC_PID") or request.args.get("rater")
        if rater:
            check_rater(rater)
            test = check_test()
            return redirect(url_for("rater_page", rater_id=rater, **({"test": test} if test else {})), 303)
        return page(LANDING)

    @app.get("/healthz")
    def healthz():
        return "ok\n", 200, {"Content-Type": "text/plain"}

    @app.get("/r/<rater_id>")
    def rater_page(rater_id):
        check_rater(rater_id)
        test = check_test()
        extra = {"test": test} if test else {}
        return page(RATER, gold=int(manifest.data["gold"]), completion_url=completion_url,
                    next_url=url_for("next_item", rater_id=rater_id, **extra),
                    vote_url=url_for("vote", rater_id=rater_id))

    @app.get("/api/r/<rater_id>/next")
    def next_item(rater_id):
        check_rater(rater_id)
        nxt = store.next_item(rater_id, test=check_test())
        if nxt.item is None:
            return {"state": "done", "done": nxt.done, "total": nxt.total}
        it = nxt.item
        image = lambda name: url_for("image", name=name) if name else None
        return {"state": nxt.state, "item": it.id, "question": manifest.data["questions"][it.test],
                "left": image(it.left.image), "right": image(it.right.image),
                "painting": image(it.painting_image), "done": nxt.done, "total": nxt.total}

    @app.post("/api/r/<rater_id>/vote")
    def vote(rater_id):
        check_rater(rater_id)
        if not request.is_json:
            abort(415, "send the vote as JSON (Content-Type: application/json)")
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            abort(400, 'malformed JSON: expected {"item": ..., "choice": "left"|"right"}')
        if set(body) - {"item", "choice", "ms"}:
            abort(400, f"unexpected fields: {sorted(set(body) - {'item', 'choice', 'ms'})}")
        item, choice, ms = body.get("item"), body.get("choice"), body.get("ms")
        if not isinstance(item, str) or not ITEM_ID.fullmatch(item):
            abort(400, "item must be an item id")
        if choice not in SIDES:
            abort(400, "choice must be 'left' or 'right'")
        if ms is not None and (type(ms) is not int or not 0 <= ms <= 86_400_000):
            abort(400, "ms must be an integer number of milliseconds")
        store.answer(rater_id, item, choice, ms=ms)
        return {"ok": True}

    @app.get("/img/<name>")
    def image(name):
        if not IMAGE_NAME.fullmatch(name):
            abort(404)
        return send_from_directory(study_dir / IMAGES, name, max_age=3600)

    def live_table():
        table = table2(study_dir, store)
        return table, table.attrs.get("label", "")

    @app.get("/results")
    def results():
        check_token()
        table, label = live_table()
        shown = table.drop(columns=["versus"]).round(2)
        return page(RESULTS, study=study_dir.name, pairs=len(manifest.pairs), raters_per_pair=manifest.raters_per_pair,
                    gold=manifest.data["gold"], counts=store.counts(), label=label,
                    table=shown.to_html(index=False, na_rep="-", border=0))

    @app.get("/results.json")
    def results_json():
        check_token()
        table, label = live_table()
        rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                for row in table.to_dict(orient="records")]
        return {"label": label, "counts": store.counts(), "table2": rows}

    return app


def make_server(app, host: str = "127.0.0.1", port: int = 8000, threads: int = 8):
    """A waitress server for the app (not yet running); ``port=0`` picks a free port."""
    from waitress import create_server

    return create_server(app, host=host, port=port, threads=threads, ident="art2real-study",
                         max_request_body_size=64 * 1024, clear_untrusted_proxy_headers=True)


def serve(study_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *, threads: int = 8, **app_options) -> None:
    """Serve a study until interrupted; prints where raters and the organiser go."""
    server = make_server(create_app(study_dir, **app_options), host, port, threads)
    url = f"http://{host}:{server.effective_port}"
    print(f"art2real study: listening on {url}", flush=True)
    print(f"  raters:    {url}/r/<rater id>  (or {url}/?PROLIFIC_PID=<id>)")
    print(f"  organiser: {url}/results?token=<token>  (the token is in {Path(study_dir) / TOKEN_FILE})", flush=True)
    if host not in LOOPBACK:
        print(f"  warning: listening on {host}, reachable from other machines; put it behind HTTPS", flush=True)
    server.run()


@contextmanager
def running(app, host: str = "127.0.0.1", threads: int = 8):
    """Serve ``app`` from a background thread on a free port; yields the base URL and stops on exit."""
    from waitress import wasyncore

    server = make_server(app, host, 0, threads)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.effective_port}"
    finally:
        # Close every socket from the server's own loop (clients may hold keep-alive connections open), which
        # empties its map and ends the loop; then stop the worker threads.
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        thread.join(timeout=10)
        server.task_dispatcher.shutdown()
