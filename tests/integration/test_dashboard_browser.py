"""The dashboard in a real browser (headless Chromium driven by Selenium).

Embedded broker and Redis, the engine (`regime-engine demo` on a simulated session, with the
page already open), and `regime-engine dashboard` as its own process; the test then reads
the page's DOM and compares it with what Redis holds. The screenshot is kept as a test
artefact (``$TEST_ARTEFACTS_DIR``, default ``.artefacts/`` in the repo).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from connectors.common.redis_embedded import EmbeddedRedis
from engine.app.cli import main
from schemas.levels import BUCKETS, decode_levels
from tests.app.dashboard_helpers import event_doc, moved, publish
from tests.app.test_cli_levels import HANDMADE
from tests.paths import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 90.0
KEYS = ("net_gex", "zero_gamma", "call_wall", "put_wall", "abs_gamma_strike", "regime",
        "contracts_used", "zero_gamma_crossings")  # fmt: skip

# Non-white pixels of a chart's canvas: > 0 once ECharts has drawn it.
_DRAWN_PIXELS = """
const canvas = document.querySelector(arguments[0] + " canvas");
if (!canvas) return 0;
const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
let n = 0;
for (let i = 0; i < data.length; i += 4) {
  if (data[i + 3] > 0 && (data[i] < 250 || data[i + 1] < 250 || data[i + 2] < 250)) n++;
}
return n;
"""


def artefact_dir() -> Path:
    path = Path(os.environ.get("TEST_ARTEFACTS_DIR", REPO / ".artefacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser() -> Iterator[object]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        # Not an allowed skip prefix: under REGIME_ENGINE_STRICT_SKIPS=1 (CI installs
        # chromium and chromium-driver) this fails, loudly, instead of passing unrun.
        pytest.skip(f"chromium: {', '.join(missing)} not installed (apt-get install "
                    "chromium chromium-driver)")  # fmt: skip
    profile = tempfile.mkdtemp(prefix="regime-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                f"--user-data-dir={profile}", "--window-size=1200,1500"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def redis_server() -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own (it is restarted), persisting across the restart."""
    server = EmbeddedRedis(extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    asyncio.run(server.start())
    try:
        yield server
    finally:
        asyncio.run(server.stop())


@pytest.fixture
def dashboard(redis_server: EmbeddedRedis) -> Iterator[str]:
    """`regime-engine dashboard` as its own process on a free port; its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.app.cli", "dashboard", "--redis", redis_server.url,
         "--port", "0", "--stale-after", "600"],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stderr.readline()  # printed once it listens
        assert line.startswith("dashboard: http://"), line + process.stderr.read()
        yield line.split()[1]
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        process.stderr.close()


def wait(driver, condition, what: str):
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(condition, message=what)


def by_id(driver, element_id: str):
    found = driver.find_elements(By.ID, element_id)
    return found[0] if found else None


def value_of(driver, element_id: str):
    """The raw JSON value a page element shows (None until it shows one)."""
    element = by_id(driver, element_id)
    raw = None if element is None else element.get_attribute("data-value")
    return None if raw is None else json.loads(raw)


def tape_row(driver, event_id: str):
    rows = driver.find_elements(By.CSS_SELECTOR, f'#tape tr.event[data-id="{event_id}"]')
    return rows[0] if rows else None


def cell(row, name: str) -> str:
    return row.find_element(By.CSS_SELECTOR, f"td.{name}").text


def test_the_dashboard_shows_what_redis_holds_live_and_rides_out_a_restart(
    browser, dashboard: str, redis_server: EmbeddedRedis, kafka_bootstrap: str, capsys
) -> None:
    driver = browser
    driver.get(dashboard)
    assert driver.title == "regime-engine dashboard"
    assert by_id(driver, "status").text == "connecting"  # nothing in Redis yet

    # The engine runs with the page open: the demo's session into this Redis.
    argv = ["demo", "--kafka", kafka_bootstrap, "--redis", redis_server.url, "--max-speed",
            "--plain", "--no-idempotence"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    client = Redis.from_url(redis_server.url)
    try:
        raw = client.get("regime:levels:BTC")
        levels = orjson.loads(raw)
        stream = [orjson.loads(f[b"event"]) for _, f in client.xrange("regime:stream:BTC")]
    finally:
        client.close()

    # The levels shown are regime:levels:BTC, every bucket, every key, value and text.
    wait(driver, lambda d: value_of(d, "asof") == levels["asof_ns"], "the final levels")
    assert by_id(driver, "asof").text == levels["asof"]
    assert value_of(driver, "spot") == levels["spot"]
    for bucket in BUCKETS:
        for key in KEYS:
            assert value_of(driver, f"lv-{bucket}-{key}") == levels["buckets"][bucket][key]
    assert by_id(driver, "lv-all-zero_gamma").text == f"{levels['zero_gamma']:.2f}"
    assert by_id(driver, "lv-all-put_wall").text == f"{levels['put_wall']:.2f}"
    assert by_id(driver, "lv-all-regime").text == levels["regime"] == "negative"
    assert by_id(driver, "status").text == "live"
    assert by_id(driver, "stale").is_displayed() is False

    # The first flip_cross of the stream is in the tape, with its bucket and detail.
    flip = next(e for e in stream if e["type"] == "flip_cross")
    row = wait(driver, lambda d: tape_row(d, flip["id"]), "the first flip_cross in the tape")
    assert (cell(row, "type"), cell(row, "bucket")) == ("flip_cross", flip["bucket"])
    assert json.loads(cell(row, "detail")) == flip["detail"]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#tape tr.event")) == len(stream)

    # The profile and strike charts are drawn, from these levels.
    for panel in ("profile", "strikes"):
        assert by_id(driver, panel).get_attribute("data-drawn") == str(levels["asof_ns"])
        assert driver.execute_script(_DRAWN_PIXELS, f"#{panel}") > 2_000, panel

    # An event published now appears at the top of the tape.
    fresh = event_doc(1, underlying="BTC", type="put_wall_break", bucket="0dte",
                      detail={"wall": "put", "through": "outward"})  # fmt: skip
    asyncio.run(_publish_url(redis_server.url, [fresh]))
    row = wait(driver, lambda d: tape_row(d, fresh["id"]), "the new event in the tape")
    assert (cell(row, "type"), cell(row, "bucket")) == ("put_wall_break", "0dte")
    assert json.loads(cell(row, "detail")) == {"wall": "put", "through": "outward"}
    first = driver.find_elements(By.CSS_SELECTOR, "#tape tr.event")[0]
    assert first.get_attribute("data-id") == fresh["id"]

    # The bucket selector: the charts follow it.
    assert "[all]" in by_id(driver, "profile").get_attribute("data-title")
    Select(by_id(driver, "bucket")).select_by_value("front")
    wait(driver, lambda d: "[front]" in by_id(d, "strikes").get_attribute("data-title"), "front")
    assert "[front]" in by_id(driver, "profile").get_attribute("data-title")
    assert [o.text for o in Select(by_id(driver, "underlying")).options] == ["BTC"]

    # Redis restarts: the page shows "reconnecting", then resumes with new levels.
    asyncio.run(redis_server.kill())
    wait(driver, lambda d: by_id(d, "status").text == "reconnecting", "reconnecting shown")
    asyncio.run(redis_server.restart())
    later = moved(decode_levels(raw), 64_000.0)
    asyncio.run(_publish_url(redis_server.url, [], later))
    wait(driver, lambda d: value_of(d, "spot") == 64_000.0, "levels after the restart")
    assert by_id(driver, "status").text == "live"
    assert tape_row(driver, fresh["id"]) is not None  # the tape came back from Redis

    driver.save_screenshot(str(artefact_dir() / "dashboard.png"))
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    # The only errors allowed are the page's own event stream dropping while Redis was down.
    assert all("events?underlying" in e["message"] for e in errors), errors


async def _publish_url(url: str, events, levels=None) -> None:
    async with AsyncRedis.from_url(url) as client:
        await publish(client, events, levels)


def test_a_chart_html_file_draws_offline_in_the_browser(browser, tmp_path) -> None:
    out = tmp_path / "chart.html"
    assert main(["chart", str(HANDMADE), "--format", "cboe-csv", "--out", str(out)]) == 0
    browser.get(out.as_uri())
    for j in range(3):
        pixels = wait(browser, lambda d, j=j: d.execute_script(_DRAWN_PIXELS, f"#chart-{j}"),
                      f"chart {j} drawn")  # fmt: skip
        assert pixels > 2_000
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    browser.save_screenshot(str(artefact_dir() / "chart_html.png"))
