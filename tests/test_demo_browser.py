"""The demo as a server: ``consortia demo`` as README starts it, and in headless Chromium.

The first test starts it the way a fresh machine without a terminal does (no options, stdin
closed, an empty HOME) and needs no browser. The browser test runs a small federation through
the page's own widgets and saves a screenshot in the test's temp folder; it is skipped only
where Chromium (or its driver, or selenium) is missing, and never in CI (``CI`` set): there a
missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1400,2600",
)  # fmt: skip
START_TIMEOUT_S = 60
RUN_TIMEOUT_S = 180


def _require(what: str, ok: bool) -> None:
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing in CI; .ci/run must install it")
    pytest.skip(f"{what} is not installed (apt-get install chromium chromium-driver; pip install selenium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_served(url: str, proc: subprocess.Popen) -> float:
    started = time.perf_counter()
    deadline = started + START_TIMEOUT_S
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"consortia demo exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"consortia demo did not serve {url} within {START_TIMEOUT_S} s")


@pytest.fixture
def demo_server(tmp_path):
    """``consortia demo`` on 127.0.0.1 (headless); yields (base url, seconds until / was served)."""
    port = _free_port()
    consortia = Path(sys.executable).with_name("consortia")
    log = (tmp_path / "demo.log").open("w")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(consortia), "demo", "--port", str(port), "--address", "127.0.0.1", "--headless"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_served(url + "/_stcore/health", proc)
        yield url, time.perf_counter() - started
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the demo and whatever it started (its own session), politely first."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=15)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait(timeout=15)


#: what Streamlit prints when it waits for an answer on the terminal, or warns about its web stack
FIRST_RUN_PROMPT = ("Welcome to Streamlit", "Email:")
VERSION_WARNING = re.compile(r"websockets \S+ with uvicorn|Upgrade uvicorn|Upgrade websockets", re.IGNORECASE)


def test_demo_as_readme_starts_it_serves_without_a_terminal(tmp_path):
    """`consortia demo` with stdin closed and a fresh HOME: no e-mail prompt, no version warning, it serves."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}  # nothing may skip the prompt
    env["HOME"] = str(home)
    port = _free_port()
    log_path = tmp_path / "demo.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("consortia")), "demo", "--port", str(port)],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            _wait_served(f"http://127.0.0.1:{port}/_stcore/health", proc)
        finally:
            _stop_group(proc)
    output = log_path.read_text()
    assert f"127.0.0.1:{port}" in output, output
    assert not [p for p in FIRST_RUN_PROMPT if p in output], output
    assert not VERSION_WARNING.search(output), output
    assert not (home / ".streamlit" / "credentials.toml").exists()


@pytest.fixture
def browser():
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    _require("chromium", chromium is not None)
    _require("chromedriver (Debian package chromium-driver)", driver_path is not None)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _require("selenium (the 'dev' extra)", False)
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def _set_number(driver, label: str, value: int) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    field = driver.find_element(By.CSS_SELECTOR, f'[data-testid="stSidebar"] input[aria-label="{label}"]')
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(str(value), Keys.ENTER)
    WebDriverWait(driver, 30).until(lambda d: field.get_attribute("value") == str(value))


def _page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


@pytest.mark.slow  # about 45 s on an idle 2-core machine (a browser, a server, two runs)
def test_healthcare_page_runs_in_headless_chromium(demo_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, served_s = demo_server
    t0 = time.perf_counter()
    browser.get(url + "/")
    WebDriverWait(browser, START_TIMEOUT_S).until(lambda d: "learning together" in _page_text(d))
    home_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    browser.get(url + "/healthcare")
    run_button = '//button[.//p[text()="Run federation"]]'
    WebDriverWait(browser, RUN_TIMEOUT_S).until(lambda d: d.find_elements(By.XPATH, run_button))
    page_s = time.perf_counter() - t0
    for label, value in (("Institutions", 3), ("Rows", 1500), ("Rounds", 5)):
        _set_number(browser, label, value)
    WebDriverWait(browser, 30).until(lambda d: "train 3 hospitals for 5 rounds" in _page_text(d))

    t0 = time.perf_counter()
    browser.find_element(By.XPATH, run_button).click()
    WebDriverWait(browser, RUN_TIMEOUT_S).until(
        lambda d: "Who gains?" in _page_text(d) or d.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    )
    run_s = time.perf_counter() - t0
    WebDriverWait(browser, 30).until(  # charts draw after their data arrives
        lambda d: len(d.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"] canvas, '
                                                       '[data-testid="stVegaLiteChart"] svg')) >= 2
    )  # fmt: skip
    WebDriverWait(browser, 30).until(lambda d: "Table as CSV" in _page_text(d))
    shot = tmp_path / "healthcare.png"
    browser.save_screenshot(str(shot))
    (tmp_path / "timings.json").write_text(
        json.dumps({"served_s": served_s, "home_s": home_s, "healthcare_page_s": page_s, "small_run_s": run_s})
    )
    print(f"\nscreenshot: {shot}\nserved {served_s:.1f} s, home {home_s:.1f} s, page {page_s:.1f} s, run {run_s:.1f} s")

    exceptions = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert not exceptions, exceptions[0].text
    text = _page_text(browser)
    assert "Traceback" not in text
    assert "beat local-only training" in text
    assert browser.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')
    assert shot.stat().st_size > 10_000

    # a long run can be stopped: Stop ends training after the current round
    _set_number(browser, "Rounds", 400)
    WebDriverWait(browser, 30).until(lambda d: "for 400 rounds" in _page_text(d))
    browser.find_element(By.XPATH, run_button).click()
    WebDriverWait(browser, RUN_TIMEOUT_S).until(lambda d: re.search(r"Round \d+/400", _page_text(d)))
    browser.find_element(By.XPATH, '//button[.//p[text()="Stop"]]').click()
    WebDriverWait(browser, 60).until(lambda d: "Run stopped after" in _page_text(d))
    stopped = _page_text(browser)
    done = int(re.search(r"Run stopped after (\d+) of 400 rounds", stopped).group(1))
    assert 1 <= done < 400
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
