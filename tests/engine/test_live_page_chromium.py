"""The live page of a running demo, in a real headless Chromium: charts appear, grow, and the console stays clean.

Starts ``regretflow demo`` (every family, one pass, paced so that it streams for
about twenty seconds), loads ``/`` in Debian's ``chromium`` driven over the DevTools
protocol, waits for the page's own refreshes, and checks what it drew. The
screenshot is kept as a test artifact: ``$REGRETFLOW_TEST_ARTIFACTS`` (default
``test-artifacts/`` at the repository root) / ``live-page.png``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REGRETFLOW, REPO
from tests.live_browser import CHROMIUM, Chromium

pytestmark = pytest.mark.integration

DEMO_MODELS = ["ridge", "groupwise", "segment-fastcb", "segment-linucb", "digits-ridge", "digits-ridge-pfg", "ads", "adult-lending"]
ARTIFACTS = Path(os.environ.get("REGRETFLOW_TEST_ARTIFACTS", REPO / "test-artifacts"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def demo_page():
    port = free_port()
    proc = subprocess.Popen(
        [REGRETFLOW, "demo", "--passes", "1", "--rate", "400", "--port", str(port), "--no-progress", "--linger", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if status(base + "/readyz") == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("demo never became ready: " + proc.stderr.read().decode()[-2000:])
        time.sleep(0.1)
    assert os.path.exists(CHROMIUM), "chromium is required (Debian package chromium; tests/install-services.sh installs it)"
    browser = Chromium()
    try:
        browser.navigate(base + "/")
        yield proc, base, browser
    finally:
        browser.close()
        proc.terminate()
        proc.wait(timeout=30)


def panel_points(browser: Chromium) -> dict[str, int]:
    """Points drawn per panel (``model/index`` -> non-null values over all its series)."""
    return browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-panel]')].map(p => [p.dataset.panel, +p.dataset.points]))"
    )


def panel_last_values(browser: Chromium) -> dict[str, list]:
    """The newest value of every series per panel, as the page last drew them."""
    return browser.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-panel]')].map(p => [p.dataset.panel, JSON.parse(p.dataset.last)]))"
    )


def test_live_page_draws_every_model_and_its_series_grow_in_chromium(demo_page):
    proc, _, browser = demo_page
    browser.wait_for("+document.body.dataset.updates >= 2", timeout=30)
    first, first_values = panel_points(browser), panel_last_values(browser)
    browser.wait_for("+document.body.dataset.updates >= 6", timeout=30)  # the page polls once a second
    second, second_values = panel_points(browser), panel_last_values(browser)
    assert proc.poll() is None, "the demo should still be streaming while the page is checked"
    drawn = {key.split("/")[0] for key in second}
    assert set(DEMO_MODELS) <= drawn, f"models without a panel: {set(DEMO_MODELS) - drawn}"
    assert {"engine/0", "engine/1", "engine/2"} <= set(second)  # throughput, latency, dead letters
    for model in DEMO_MODELS:
        grew = [k for k in second if k.startswith(model + "/") and second[k] > first.get(k, 0)]
        assert grew, f"no panel of {model} grew between two refreshes: {first} -> {second}"
        moved = [k for k in second_values if k.startswith(model + "/") and second_values[k] != first_values.get(k)]
        assert moved, f"the values drawn for {model} did not change: {first_values} -> {second_values}"
    regret_panels = browser.evaluate("[...document.querySelectorAll('[data-panel^=\"ridge/\"] .title')].map(t => t.textContent)")
    assert "ridge (ridge): cumulative regret by smoker" in regret_panels
    legends = browser.evaluate("[...document.querySelectorAll('[data-panel]')].map(p => p.querySelectorAll('.legend span').length)")
    assert legends and max(legends) <= 8, "a panel has more than eight series"
    # every canvas has ink on it: its data URL is larger than that of a blank canvas of the same size
    inked = browser.evaluate(
        "[...document.querySelectorAll('[data-panel] canvas')].map(c => { const b = document.createElement('canvas');"
        " b.width = c.width; b.height = c.height; return c.toDataURL().length > b.toDataURL().length; })"
    )
    assert inked and all(inked)
    shot = browser.screenshot(ARTIFACTS / "live-page.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert browser.errors == [], browser.errors


def test_live_json_and_page_are_served_beside_metrics(demo_page):
    _, base, browser = demo_page
    with urllib.request.urlopen(base + "/live.json", timeout=5) as r:
        assert r.headers["Content-Type"] == "application/json"
        import orjson

        data = orjson.loads(r.read())
    assert data["format"] == "regretflow-live" and data["version"] == 1
    assert len(data["t"]) >= 1 and set(DEMO_MODELS) <= set(data["models"])
    for panel in data["models"]["adult-lending"]["panels"] + data["engine"]:
        for series in panel["series"].values():
            assert len(series) == len(data["t"])
    with urllib.request.urlopen(base + "/live.js", timeout=5) as r:
        script = r.read()
    assert b"http://" not in script and b"https://" not in script, "the page fetches nothing from elsewhere"
    assert browser.errors == [], browser.errors
