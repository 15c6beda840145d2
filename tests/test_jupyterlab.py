"""The notebooks as users meet them: opened and run in a real JupyterLab in headless Chromium.

Opening a notebook must not modify it (its kernelspec and language_info are what JupyterLab would write), and the
notebooks run through the UI at smoke parameters show no traceback and their images. Screenshots of every page go
to ``results/screenshots/jupyterlab_*.png``; the kernels write results and caches to temp folders.
"""
from __future__ import annotations

import difflib
import json
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .browser import REPO, browser, chromium_missing, screenshot, start_browser  # noqa: F401 (fixture)
from .jupyterlab import Lab, start_lab

NOTEBOOKS = REPO / "notebooks"


@dataclass(frozen=True)
class UiRun:
    """What a run through the UI sets and must show. ``params``: lines appended to the parameters cell."""

    params: dict = field(default_factory=dict)
    images: int = 0  # <img> elements among the outputs, every one loaded
    writes: tuple[str, ...] = ()  # files under the results folder after the run
    progress_bars: bool = False  # shows tqdm bars (widgets when ipywidgets is installed)


# The notebooks run through the UI and what each must show; update when the notebooks change.
RUN_IN_UI = {
    "00_data": UiRun({"preset": "smoke"}, images=2,  # training paintings, photos
                     writes=("demo/data.csv", "demo/figures/data_paintings.png")),
    "02_train": UiRun({"preset": "smoke"}, images=4,  # live loss curves and grid, then the final ones
                      writes=("demo/runs/art2real/smoke-seed0/losses.png",), progress_bars=True),
}
AUTOSAVE_INTERVAL_S = 2  # while opening: an opened notebook that turned dirty is written within this
LOAD_TIMEOUT_S = 60  # page load and kernel start
RUN_TIMEOUT_S = 300  # run all cells of one notebook at smoke parameters (02: 20-90 s on 2 busy cores)

DOCMANAGER = "@jupyterlab/docmanager-extension:plugin"
# Selectors (JupyterLab 4.6)
TAB = "#jp-main-dock-panel .lm-TabBar-tab"  # the dirty one also has .jp-mod-dirty
KERNEL_IDLE = ".jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator[data-status='idle']"
CODE_CELL = ".jp-Notebook .jp-CodeCell"
PROMPT = ".jp-InputArea-prompt"  # "[ ]:", "[*]:" while queued or running, "[3]:" when done
OUTPUT = ".jp-OutputArea-output"
STDERR = f"{OUTPUT}[data-mime-type='application/vnd.jupyter.stderr']"  # stock JupyterLab renders tracebacks so too
ERROR = ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']"  # where a renderer takes the error type
# A traceback among stderr texts; a SyntaxError's has no "Traceback" line, only its last "...Error: ..." line.
TRACEBACK = re.compile(r"Traceback|^\w+(Error|Exception): ", re.MULTILINE)
RUN_ALL = "runmenu:run-all"  # Run > Run All Cells; on a notebook it runs notebook:run-all-cells


def notebook_names() -> list[str]:
    return sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))


def snapshot() -> dict[str, bytes]:
    """Every file under notebooks/, by relative path."""
    return {p.relative_to(NOTEBOOKS).as_posix(): p.read_bytes() for p in sorted(NOTEBOOKS.rglob("*")) if p.is_file()}


def restore(before: dict[str, bytes]) -> dict[str, str]:
    """Put back every file the server rewrote; what changed under notebooks/ (a diff per file, new files named)."""
    changes = {}
    for name, data in snapshot().items():
        if name not in before:
            changes[name] = "new file"
        elif data != before[name]:
            (NOTEBOOKS / name).write_bytes(before[name])
            diff = difflib.unified_diff(before[name].decode().splitlines(), data.decode().splitlines(),
                                        "committed", "after", lineterm="", n=1)
            changes[name] = "\n".join(list(diff)[:40])
    return changes


def python_hint() -> str:
    """JupyterLab stores the kernel's exact Python version: other versions always modify the notebooks."""
    recorded = {json.loads((NOTEBOOKS / f"{n}.ipynb").read_text())["metadata"].get("language_info", {})
                .get("version") for n in notebook_names()}
    running = platform.python_version()  # the kernel runs on the server's Python, this one
    if recorded == {running}:
        return ""
    return f" (the notebooks record Python {', '.join(sorted(map(str, recorded)))}; the kernel runs {running})"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("jupyterlab")
    server = start_lab(NOTEBOOKS, home, {"ART2REAL_RESULTS": str(home / "results"),
                                         "ART2REAL_CACHE": str(home / "cache")})
    yield server
    server.stop()


# ------------------------------------------------------------------------------------------------- browser steps
def wait(driver, condition, timeout: float, what: str):
    """Poll ``condition(driver)`` until truthy; fail naming what did not happen."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    # outputs re-render while cells run: an element found a moment ago may be gone, so look again
    waiter = WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=[StaleElementReferenceException])
    try:
        return waiter.until(condition)
    except TimeoutException as e:
        screenshot(driver, "jupyterlab_timeout")
        raise AssertionError(f"timed out after {timeout} s waiting for {what} "
                             "(see results/screenshots/jupyterlab_timeout.png)") from e


def css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def open_notebook(driver, lab: Lab, name: str) -> None:
    """Load the lab on one notebook (``reset``: none of the tabs of an earlier test) and wait for an idle kernel."""
    driver.get(lab.url(f"tree/{name}.ipynb", reset=""))
    wait(driver, lambda d: [t for t in css(d, TAB) if t.text.strip() == f"{name}.ipynb"], LOAD_TIMEOUT_S,
         f"the tab of {name}.ipynb")
    wait(driver, lambda d: kernel_state(lab, name) == "idle" and css(d, KERNEL_IDLE), LOAD_TIMEOUT_S,
         f"an idle kernel for {name}.ipynb (server and toolbar)")


def kernel_state(lab: Lab, name: str) -> str | None:
    """The server's view of the notebook's kernel: 'starting', 'idle', 'busy' or None before a session exists."""
    for session in lab.api("GET", "/api/sessions"):
        if session["path"] == f"{name}.ipynb" and session.get("kernel"):
            return session["kernel"]["execution_state"]
    return None


def next_frame(driver) -> None:
    """Return after the page painted twice (Lumino applies DOM updates in animation frames)."""
    driver.execute_async_script("const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));")


def notebook_tab(driver, name: str):
    tabs = [t for t in css(driver, TAB) if t.text.strip() == f"{name}.ipynb"]
    assert len(tabs) == 1, f"expected one tab for {name}.ipynb, found {[t.text for t in css(driver, TAB)]}"
    return tabs[0]


def append_parameters(driver, params: dict) -> None:
    """Type ``key = value`` lines at the end of the first code cell (the ``parameters`` cell), as a user would."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    cell = css(driver, CODE_CELL)[0]
    editor = cell.find_element("css selector", ".cm-content")
    editor.click()  # edit mode
    lines = [f"{k} = {v!r}".replace("'", '"') for k, v in params.items()]
    keys = ActionChains(driver).key_down(Keys.CONTROL).send_keys(Keys.END).key_up(Keys.CONTROL)
    for line in lines:  # with auto-closed quotes on, typing the closing quote steps over the inserted one
        keys = keys.send_keys(Keys.ENTER, line)
    keys.send_keys(Keys.ESCAPE).perform()  # back to command mode
    text = editor.get_attribute("innerText")
    for line in lines:
        assert line in text.splitlines(), f"typing {line!r} into the parameters cell gave:\n{text}"


def run_all_from_menu(driver) -> None:
    """Run > Run All Cells in the menu bar."""
    menu = [m for m in css(driver, ".lm-MenuBar-item") if m.text.strip() == "Run"]
    assert menu, "no Run menu in the menu bar"
    menu[0].click()
    item = wait(driver, lambda d: css(d, f".lm-Menu-item[data-command='{RUN_ALL}']"), 10, "Run > Run All Cells")
    item[0].click()


def prompts(driver) -> list[str]:
    return [p.text.strip() for p in css(driver, f"{CODE_CELL} {PROMPT}")]


def tracebacks(driver) -> list[str]:
    return [e.text for e in css(driver, STDERR) if TRACEBACK.search(e.text)] + [e.text for e in css(driver, ERROR)]


def finished(driver) -> bool:
    """Every code cell ran (a number in its prompt), or a cell failed and the rest were dropped from the queue."""
    shown = prompts(driver)
    done = all(re.fullmatch(r"\[\d+\]:", p) for p in shown) or (tracebacks(driver) and "[*]:" not in shown)
    return bool(shown) and done and bool(css(driver, KERNEL_IDLE))


# ------------------------------------------------------------------------------------------------- A: opening
def test_opening_a_notebook_does_not_modify_it(lab, browser):
    """Every notebook opened from its URL in a browser tab of its own, all at once so one autosave wait serves all."""
    lab.set_settings(DOCMANAGER, {"autosave": True, "autosaveInterval": AUTOSAVE_INTERVAL_S})
    before, tabs, dirty = snapshot(), {}, []
    try:
        for name in notebook_names():
            if tabs:
                browser.switch_to.new_window("tab")
            open_notebook(browser, lab, name)
            tabs[name] = browser.current_window_handle
        time.sleep(2 * AUTOSAVE_INTERVAL_S + 1)  # nothing to wait for: the test is that nothing happens
        for name, handle in tabs.items():
            browser.switch_to.window(handle)
            next_frame(browser)  # a hidden tab paints nothing: let the shown one catch up
            screenshot(browser, f"jupyterlab_open_{name}")
            if "jp-mod-dirty" in notebook_tab(browser, name).get_attribute("class").split():
                dirty.append(name)
    finally:
        lab.shutdown_kernels()
        changed = restore(before)
    assert len(tabs) == len(notebook_names())
    assert not changed, ("opening the notebooks in JupyterLab changed notebooks/: their metadata (kernelspec, "
                         f"language_info, nbformat_minor) differ from what JupyterLab writes{python_hint()}:\n"
                         + "\n".join(f"{k}:\n{v}" for k, v in changed.items()))
    assert not dirty, f"JupyterLab marks {dirty} modified as soon as they are opened"


# ------------------------------------------------------------------------------------------------- B: running
@dataclass
class Seen:
    """What a run through the UI left on the page."""

    prompts: list[str]
    tracebacks: list[str]
    stderr: list[str]
    images: int
    images_loaded: int
    changed: dict[str, str]
    widgets: int


@pytest.fixture(scope="module")
def ui_run(lab):
    """Runs a notebook of RUN_IN_UI through the UI once (autosave off); what the page showed."""
    seen: dict[str, Seen] = {}

    def run(name: str) -> Seen:
        if name not in seen:
            seen[name] = _run_in_ui(lab, name, RUN_IN_UI[name])
        return seen[name]

    return run


def _run_in_ui(lab: Lab, name: str, expected: UiRun) -> Seen:
    lab.set_settings(DOCMANAGER, {"autosave": False})
    before = snapshot()
    driver = start_browser(height=1400)
    try:
        open_notebook(driver, lab, name)
        append_parameters(driver, expected.params)
        run_all_from_menu(driver)
        wait(driver, finished, RUN_TIMEOUT_S, f"all cells of {name} to run")
        images = css(driver, f"{OUTPUT} img")
        seen = Seen(prompts(driver), tracebacks(driver), [e.text for e in css(driver, STDERR)], len(images),
                    sum(bool(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0",
                                                   img)) for img in images),
                    {}, len(css(driver, f"{OUTPUT} .widget-hprogress")))
        screenshot(driver, f"jupyterlab_run_{name}")
        if images:  # the notebook panel scrolls inside the page: a second picture of the images
            driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", images[0])
            screenshot(driver, f"jupyterlab_run_{name}_images")
    finally:
        driver.quit()
        lab.shutdown_kernels()
        changed = restore(before)
    seen.changed = changed
    return seen


@pytest.mark.parametrize("name", list(RUN_IN_UI))
def test_notebook_runs_in_the_ui(lab, ui_run, name):
    seen, expected = ui_run(name), RUN_IN_UI[name]
    assert not seen.tracebacks, f"{name} failed in JupyterLab:\n" + "\n\n".join(seen.tracebacks)
    assert all(re.fullmatch(r"\[\d+\]:", p) for p in seen.prompts), f"cells of {name} did not run: {seen.prompts}"
    assert seen.images == expected.images, f"{name} shows {seen.images} images, expected {expected.images}"
    assert seen.images_loaded == seen.images, f"{seen.images - seen.images_loaded} images of {name} did not load"
    for path in expected.writes:
        assert (lab.home / "results" / path).is_file(), f"{name} did not write {path} in its results folder"
    assert not seen.changed, f"running {name} with autosave off changed notebooks/: {seen.changed}"


@pytest.mark.parametrize("name", list(RUN_IN_UI))
def test_progress_bars_are_widgets_and_nothing_goes_to_stderr(lab, ui_run, name):
    seen = ui_run(name)
    if RUN_IN_UI[name].progress_bars:
        assert seen.widgets, f"{name} shows no progress bar widget"
    assert not seen.stderr, f"{name} writes to stderr (red boxes in JupyterLab):\n" + "\n---\n".join(seen.stderr)
