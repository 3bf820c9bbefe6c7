"""The live page against a real ``make live``: the feed, the Structured Streaming job, the
champion, the trader, the venue and the portfolio, with the API that ``infra up`` started.
Run by ``make live-page`` (after ``make demo``; about 4 minutes), not by the suite, which
tests the same page against the venue and portfolio services in tests/test_api.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from config import load_settings
from config.settings import PROJECT_ROOT
from streaming.api import keys as K
from tests.livekit import chromium

pytestmark = pytest.mark.live_page


def test_the_page_follows_a_running_make_live() -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    settings = load_settings()
    api = settings.platform.api
    base = f"http://{api.host}:{api.port}"
    try:
        urllib.request.urlopen(f"{base}/healthz", timeout=2)
    except OSError:
        pytest.fail(f"no API at {base}: run `make live-page` (it starts the services first)")
    key = K.create_key(settings, ["admin"], "live-page-check")
    log = settings.platform.state_dir / "logs" / "live-page-make-live.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        run = subprocess.Popen([sys.executable, "-m", "streaming", "live", "--minutes", "2", "--drain", "10"],
                               cwd=PROJECT_ROOT, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT)
    driver = chromium()
    try:
        wait = WebDriverWait(driver, 240, poll_frequency=1, ignored_exceptions=(StaleElementReferenceException,))
        time.sleep(5)  # `live` starts a fresh paper account first
        driver.get(base + "/")
        driver.find_element(By.ID, "key").send_keys(key)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        wait.until(lambda d: d.find_element(By.ID, "conn").text == "live" or run.poll() is not None)

        def points(d) -> int:
            return int(d.find_element(By.ID, "equity-chart").get_attribute("data-points") or 0)

        # the stream warms up, then closes bars: the curve grows, positions open, equity moves
        wait.until(lambda d: points(d) >= 5 or run.poll() is not None)
        first_equity, first_points = driver.find_element(By.ID, "equity").text, points(driver)
        wait.until(lambda d: int(d.find_element(By.CSS_SELECTOR, "#positions tbody").get_attribute("data-count") or 0) > 0
                   or run.poll() is not None)
        wait.until(lambda d: (points(d) >= first_points + 10 and d.find_element(By.ID, "equity").text != first_equity)
                   or run.poll() is not None)
        assert run.poll() is None, log.read_text()[-3000:]
        assert int(driver.find_element(By.ID, "updates").text) > 0
        artifacts = settings.platform.state_dir / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(artifacts / "live-page-make-live.png"))
        assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
        assert run.wait(400) == 0, log.read_text()[-3000:]
