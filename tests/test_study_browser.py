"""The rater page in a real browser (headless Chromium): gold gate and votes by keyboard on a desktop window, by
tapping on a phone-sized one; the answers land in SQLite. Screenshots go to results/screenshots/study_*.png."""
import sqlite3
from pathlib import Path

import pytest

from art2real.study import Manifest
from art2real.study.server import create_app, running

from . import browser as _browser
from .browser import screenshot
from .study_helpers import make_study

browser = _browser.browser  # the headless Chromium fixture
GOLD, PAIRS = 2, 3


@pytest.fixture
def served(tmp_path):
    study = make_study(tmp_path, pairs_per_test=4, gold=GOLD)
    with running(create_app(study, pairs_per_rater=PAIRS)) as url:
        yield url, study, Manifest.load(study)


def _wait_for(driver, state: str, progress: str | None = None, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        if d.find_element("tag name", "body").get_attribute("data-state") != state:
            return False
        return progress is None or d.find_element("id", "progress-text").text == progress

    WebDriverWait(driver, timeout).until(ready)


def _item_on_screen(driver, manifest: Manifest):
    left = Path(driver.find_element("id", "left-img").get_attribute("src")).name
    return next(it for it in manifest.items.values() if it.left.image == left)


def _press(driver, key):
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def _no_other_hosts(driver, url):
    entries = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert entries and all(e.startswith(url) for e in entries), entries


def test_rater_votes_with_the_keyboard(browser, served):
    from selenium.webdriver.common.keys import Keys

    url, study, m = served
    browser.get(f"{url}/r/keyboard?test=realism")
    assert browser.find_element("id", "intro").is_displayed()
    screenshot(browser, "study_1_intro")
    _press(browser, Keys.ENTER)
    keys = {"left": [Keys.ARROW_LEFT, "1"], "right": [Keys.ARROW_RIGHT, "2"]}
    for k in range(GOLD):
        _wait_for(browser, "gold", f"Warm-up {k + 1} of {GOLD}")
        if k == 0:
            assert browser.find_element("id", "question").text == m.data["questions"]["realism"]
            assert not browser.find_element("id", "painting").is_displayed()
            screenshot(browser, "study_2_gold_realism")
        gold = _item_on_screen(browser, m)
        _press(browser, keys[gold.answer][k % 2])
    pressed = {}
    for k, (side, key) in enumerate([("left", Keys.ARROW_LEFT), ("right", "2"), ("right", Keys.ARROW_RIGHT)]):
        _wait_for(browser, "pair", f"Pair {k + 1} of {PAIRS}")
        if k == 1:
            screenshot(browser, "study_3_pair_realism")
        pressed[_item_on_screen(browser, m).id] = side
        _press(browser, key)
    _wait_for(browser, "done")
    assert "Thank you" in browser.find_element("id", "done").text
    screenshot(browser, "study_4_done")
    _no_other_hosts(browser, url)

    db = sqlite3.connect(study / "votes.sqlite")
    assert dict(db.execute("SELECT item_id, choice FROM votes WHERE rater_id = 'keyboard'")) == pressed
    assert db.execute("SELECT gold_answered, gold_correct, gold_passed, test FROM raters "
                      "WHERE rater_id = 'keyboard'").fetchone() == (GOLD, GOLD, 1, "realism")

    browser.get(f"{url}/results?token={(study / 'organiser_token').read_text().strip()}")
    assert "Table 2" in browser.page_source and "keyboard" not in browser.page_source
    screenshot(browser, "study_5_results")


def test_rater_taps_on_a_phone_screen(browser, served):
    url, study, m = served
    browser.set_window_size(390, 844)
    browser.get(f"{url}/r/phone?test=coherence")
    width = browser.execute_script("return window.innerWidth")
    assert width <= 400
    screenshot(browser, "study_6_phone_intro")
    browser.find_element("id", "start").click()
    for k in range(GOLD):
        _wait_for(browser, "gold", f"Warm-up {k + 1} of {GOLD}")
        gold = _item_on_screen(browser, m)
        if k == 0:
            screenshot(browser, "study_7_phone_gold_coherence")
        browser.find_element("id", gold.answer).click()
    _wait_for(browser, "pair", f"Pair 1 of {PAIRS}")
    assert browser.find_element("id", "painting").is_displayed()
    left, right = (browser.find_element("id", s).rect for s in ("left", "right"))
    assert left["y"] == right["y"] and left["x"] + left["width"] <= right["x"]  # side by side
    assert right["x"] + right["width"] <= width  # and both on screen
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width  # no sideways scroll
    screenshot(browser, "study_8_phone_pair_coherence")
    pair = _item_on_screen(browser, m)
    browser.find_element("id", "right").click()
    _wait_for(browser, "pair", f"Pair 2 of {PAIRS}")
    db = sqlite3.connect(study / "votes.sqlite")
    assert db.execute("SELECT item_id, choice FROM votes WHERE rater_id = 'phone'").fetchall() == [(pair.id, "right")]
