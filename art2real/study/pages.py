"""The study's HTML pages (Jinja templates, autoescaped by Flask). Everything is inline and served by the study
itself: no fonts, scripts or styles from other hosts (the Content-Security-Policy header forbids them too).
Inline ``<style>`` and ``<script>`` carry a per-response nonce, the only inline code the policy allows."""

BASE_CSS = """
:root { --accent: #1f5fbf; --ok: #2a8a3a; --bg: #f3f3f1; --card: #fff; --muted: #555; }
* { box-sizing: border-box; }
html, body { margin: 0; background: var(--bg); color: #1a1a1a; }
body { font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 12px; }
.panel { max-width: 640px; margin: 8vh auto; background: var(--card); padding: 20px 24px; border-radius: 10px;
         box-shadow: 0 1px 4px rgba(0, 0, 0, .12); }
h1 { font-size: 1.3rem; margin: 10px 0; text-align: center; }
kbd { border: 1px solid #999; border-bottom-width: 2px; border-radius: 4px; padding: 0 5px; font: 13px monospace;
      background: #fafafa; }
table { border-collapse: collapse; margin: 8px 0 20px; background: var(--card); font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #e8e8e4; }
td:first-child, th:first-child { text-align: left; }
.note { color: var(--muted); font-size: 14px; }
"""

RATER = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Image comparison study</title>
<style nonce="{{ nonce }}">{{ css }}
header { display: flex; align-items: center; gap: 12px; }
#progress-text { font-size: 14px; white-space: nowrap; min-width: 8.5em; }
progress { flex: 1; height: 10px; accent-color: var(--accent); }
.painting { text-align: center; margin-bottom: 8px; }
.painting img { max-width: 60%; max-height: 30vh; border-radius: 6px; }
.caption { font-size: 13px; color: var(--muted); }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.choice { display: flex; flex-direction: column; align-items: center; gap: 6px; padding: 6px; margin: 0;
          background: var(--card); border: 3px solid transparent; border-radius: 10px; cursor: pointer;
          font: inherit; color: inherit; box-shadow: 0 1px 4px rgba(0, 0, 0, .12); }
.choice img { width: 100%; height: auto; max-height: 56vh; object-fit: contain; border-radius: 6px; background: #ddd; }
.choice:focus-visible { border-color: var(--accent); outline: none; }
@media (hover: hover) { .choice:hover { border-color: var(--accent); } }  /* no sticky hover after a tap */
.choice.picked { border-color: var(--ok); }
.hint { text-align: center; color: var(--muted); font-size: 14px; min-height: 1.5em; }
.start { display: block; margin: 18px auto 4px; padding: 10px 28px; font: inherit; font-size: 1.1rem; color: #fff;
         background: var(--accent); border: 0; border-radius: 8px; cursor: pointer; }
@media (max-width: 600px) {
  main { padding: 8px; }
  h1 { font-size: 1.05rem; margin: 8px 0; }
  .pair { gap: 6px; }
  .choice { padding: 3px; border-width: 2px; }
  .choice img { max-height: 40vh; }
  .painting img { max-width: 75%; max-height: 24vh; }
  .keys { display: none; }
  .panel { margin: 4vh auto; padding: 16px; }
}
</style>
</head>
<body>
<main>
<section id="intro" class="panel">
  <h1>Which image is better?</h1>
  <p>You will see two images at a time and a question above them. Choose the image that answers the question
     better; there are no right or wrong tastes, only your judgement. Take a few seconds for each pair.</p>
  {% if gold %}<p>The first {{ gold }} pairs are a short warm-up.</p>{% endif %}
  <p class="keys">Keyboard: <kbd>&larr;</kbd> or <kbd>1</kbd> for the left image,
     <kbd>&rarr;</kbd> or <kbd>2</kbd> for the right image. On a phone, tap the image.</p>
  <button id="start" class="start" type="button">Start</button>
  <p class="note">Press <kbd>Enter</kbd> to start.</p>
</section>
<section id="task" hidden>
  <header><span id="progress-text">&nbsp;</span><progress id="progress" max="1" value="0"></progress></header>
  <h1 id="question">&nbsp;</h1>
  <div id="painting" class="painting" hidden>
    <img id="painting-img" alt="the painting"><div class="caption">Painting</div>
  </div>
  <div class="pair">
    <button id="left" class="choice" type="button"><img id="left-img" alt="left image">
      <span>Left <span class="keys"><kbd>&larr;</kbd> <kbd>1</kbd></span></span></button>
    <button id="right" class="choice" type="button"><img id="right-img" alt="right image">
      <span>Right <span class="keys"><kbd>&rarr;</kbd> <kbd>2</kbd></span></span></button>
  </div>
  <p id="status" class="hint" role="status"></p>
</section>
<section id="done" class="panel" hidden>
  <h1>Thank you!</h1>
  <p>You have finished. You can close this page.</p>
  {% if completion_url %}<p><a href="{{ completion_url }}">Return to the study platform</a></p>{% endif %}
</section>
</main>
<script nonce="{{ nonce }}">
(() => {
  const NEXT = {{ next_url|tojson }}, VOTE = {{ vote_url|tojson }};
  const $ = (id) => document.getElementById(id);
  let item = null, busy = false, shownAt = 0;

  function show(id) { for (const s of ["intro", "task", "done"]) $(s).hidden = s !== id; }
  function ready(state) { document.body.dataset.state = state; }  // "busy" while loading; read by tests
  function say(text) { $("status").textContent = text; }

  async function load() {
    busy = true; item = null; ready("busy");
    let r;
    try { r = await fetch(NEXT, {cache: "no-store"}); }
    catch (e) { say("Network error: retrying in a few seconds."); setTimeout(load, 3000); return; }
    if (!r.ok) { say("The server refused (" + r.status + "). Please reload the page."); return; }
    const d = await r.json();
    if (d.state === "done") { show("done"); ready("done"); return; }
    $("question").textContent = d.question;
    $("progress-text").textContent = (d.state === "gold" ? "Warm-up " : "Pair ") + (d.done + 1) + " of " + d.total;
    $("progress").max = d.total; $("progress").value = d.done;
    $("painting").hidden = !d.painting;
    const images = [["left-img", d.left], ["right-img", d.right]];
    if (d.painting) images.push(["painting-img", d.painting]);
    await Promise.all(images.map(([id, src]) => {
      const im = $(id); im.src = src; return im.decode().catch(() => null);
    }));
    for (const s of ["left", "right"]) $(s).classList.remove("picked");
    say("");
    item = d.item; busy = false; shownAt = performance.now(); ready(d.state);
  }

  async function choose(side) {
    if (busy || !item) return;
    busy = true; ready("busy");
    $(side).classList.add("picked");
    const body = JSON.stringify({item: item, choice: side, ms: Math.round(performance.now() - shownAt)});
    let r;
    try { r = await fetch(VOTE, {method: "POST", headers: {"Content-Type": "application/json"}, body: body}); }
    catch (e) {
      $(side).classList.remove("picked"); busy = false; ready("retry");
      say("Network error: please choose again."); return;
    }
    if (r.ok || r.status === 409) { load(); return; }  // 409: this answer was stored already
    ready("refused");
    say("The server refused this answer (" + r.status + "). Please reload the page.");
  }

  function start() { show("task"); load(); }

  document.addEventListener("keydown", (e) => {
    if (e.repeat || e.altKey || e.ctrlKey || e.metaKey) return;
    if (!$("intro").hidden) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); start(); }
      return;
    }
    if ($("task").hidden) return;
    if (e.key === "ArrowLeft" || e.key === "1") { e.preventDefault(); choose("left"); }
    else if (e.key === "ArrowRight" || e.key === "2") { e.preventDefault(); choose("right"); }
  });
  for (const side of ["left", "right"]) {
    $(side).addEventListener("click", (e) => { e.currentTarget.blur(); choose(side); });
  }
  $("start").addEventListener("click", start);
})();
</script>
</body>
</html>
"""

RESULTS = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta http-equiv="refresh" content="15">
<title>Study results</title>
<style nonce="{{ nonce }}">{{ css }} main { max-width: 1200px; } .wide { overflow-x: auto; }</style>
</head>
<body>
<main>
<h1>Study results (live)</h1>
<p class="note">{{ study }} &middot; {{ pairs }} pairs, {{ raters_per_pair }} raters a pair, {{ gold }} gold pairs a
  test &middot; refreshed every 15 s &middot; <strong>{{ label }}</strong></p>
<h2>Progress</h2>
<div class="wide"><table>
<tr><th>test</th><th>raters</th><th>passed gate</th><th>failed gate</th><th>in warm-up</th><th>votes</th>
    <th>of needed</th><th>pairs complete</th><th>simulated votes</th></tr>
{% for test, c in counts.items() %}
<tr><td>{{ test }}</td><td>{{ c.raters }}</td><td>{{ c.passed_gate }}</td><td>{{ c.failed_gate }}</td>
    <td>{{ c.in_warm_up }}</td><td>{{ c.votes }}</td><td>{{ c.votes_needed }}</td>
    <td>{{ c.pairs_complete }} / {{ c.pairs }}</td><td>{{ c.simulated_votes }}</td></tr>
{% endfor %}
</table></div>
<h2>Table 2: % of votes for the competitor over Art2Real</h2>
<div class="wide">{{ table|safe }}</div>
<p class="note">Counted: raters who passed the gold gate. Interval: Wilson 95%. Kappa: Fleiss, per test, on pairs
  with at least two counted votes.</p>
</main>
</body>
</html>
"""

LANDING = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Image comparison study</title><style nonce="{{ nonce }}">{{ css }}</style></head>
<body><main><section class="panel"><h1>Image comparison study</h1>
<p>Please open the personal link you were given.</p></section></main></body>
</html>
"""
