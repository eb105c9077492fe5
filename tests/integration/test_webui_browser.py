"""The compose lab's Faults tab in a real browser (headless Debian chromium driven by selenium): start a
swarm from Locust's own form, apply a latency toxic, a cut and a kill from the provider cards, see them on
the tab's chart and cards, lift all, build the session's report; asserting what the page shows and what
Toxiproxy, Docker and the session's record hold. Screenshots go to $LAB_SCREENSHOTS (default: the test's
tmp dir).

The compose file runs on free loopback ports under a project name of its own, with the images pinned to
the content-hashed tags `lab images` made (LAB_*_IMAGE: other labs on the host may retag :latest).
No traffic leaves the machine: the browser is Debian's, the driver /usr/bin/chromedriver, and Selenium
Manager is told to stay offline and send no statistics.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_images_compose import any_compose_command, free_port

pytestmark = [pytest.mark.integration, pytest.mark.containers, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
PROJECT = f"labwebui{uuid.uuid4().hex[:8]}"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
BROWSER_ARGUMENTS = (
    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1900", "--no-first-run",
    "--disable-background-networking", "--disable-component-update",  # no traffic outside
)  # fmt: skip
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_json(url: str, body: Any = None, method: str | None = None, timeout: float = 10.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with _OPENER.open(req, timeout=timeout) as response:
        text = response.read()
    return json.loads(text) if text else None


def until(what: str, probe: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5) -> Any:
    """Poll `probe` until it returns something truthy (exceptions count as not yet); fail after `timeout`."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:
            last = exc
        time.sleep(interval)  # polling a browser and a lab: no event to wait on
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")


@pytest.fixture(scope="module")
def compose_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from lab.images import ensure_images

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make test installs them)")
    images = ensure_images()
    tmp = tmp_path_factory.mktemp("webui")
    ports = {name: free_port() for name in ("GATEWAY", "TOXIPROXY", "LOCUST", "P1", "P2", "P3")}
    env = {
        **os.environ,
        **{f"LAB_{name}_PORT": str(port) for name, port in ports.items()},
        # the content-hash tags: another build on this host may move :latest meanwhile
        **{
            f"LAB_{name.upper()}_IMAGE": getattr(images, name)
            for name in ("provider", "gateway", "locust", "toxiproxy")
        },
    }
    files = ["-f", str(ROOT / "docker-compose.yml")]
    base = [*any_compose_command(), "-p", PROJECT, *files]
    try:
        subprocess.run([*base, "up", "-d"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
        yield {"ports": ports, "tmp": tmp, "base": base, "env": env}
    finally:
        logs = subprocess.run([*base, "logs", "--no-color", "locust-master"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        (tmp / "locust-master.log").write_text(logs.stdout + logs.stderr)
        subprocess.run([*base, "down", "-v", "--timeout", "5"], cwd=ROOT, env=env, capture_output=True,
                       timeout=300)  # fmt: skip


@pytest.fixture
def browser(compose_lab: dict[str, Any]) -> Iterator[Any]:
    os.environ["SE_AVOID_STATS"] = "true"  # Selenium Manager: no statistics, never online
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in BROWSER_ARGUMENTS:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def container_state(service: str) -> dict[str, Any]:
    """Docker's State of this lab's container of `service` (found by the compose labels)."""
    import docker

    client = docker.from_env()
    try:
        labels = [f"com.docker.compose.project={PROJECT}", f"com.docker.compose.service={service}"]
        (container,) = client.containers.list(all=True, filters={"label": labels})
        return dict(container.attrs["State"])
    finally:
        client.close()


def finished_at(state: dict[str, Any]) -> float:
    """When the container last exited (unix s; 0 when never): a kill shows here even if a restart policy
    has already started it again."""
    from datetime import datetime

    stamp = str(state.get("FinishedAt") or "")
    if not stamp or stamp.startswith("0001-"):
        return 0.0
    return datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()


def test_faults_from_the_tab_are_seen_lifted_and_reported(compose_lab: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    ports, shots = compose_lab["ports"], Path(os.environ.get("LAB_SCREENSHOTS") or compose_lab["tmp"])
    shots.mkdir(parents=True, exist_ok=True)
    ui, toxiproxy = f"http://127.0.0.1:{ports['LOCUST']}", f"http://127.0.0.1:{ports['TOXIPROXY']}"
    until("a Locust worker", lambda: get_json(f"{ui}/stats/requests")["workers"], timeout=120)

    # 1. start a swarm from Locust's own form; its link leads to the Faults tab. The open model: the form's
    # target rate drives the HTTP load, its user count is the compose file's 2 + 1 WebSocket subscribers.
    browser.get(ui + "/")
    users = until("Locust's start form", lambda: browser.find_element(By.NAME, "userCount"))
    # the target rate is under Locust's "Custom parameters" accordion
    browser.find_element(By.XPATH, "//button[contains(., 'Custom parameters')]").click()
    rate = until("the form's target rate", lambda: browser.find_element(By.NAME, "labRate").is_displayed())
    for name, value in (("userCount", "3"), ("spawnRate", "3"), ("labRate", "40")):
        field = browser.find_element(By.NAME, name)
        field.send_keys("\b" * 8, value)
    assert rate and users.get_attribute("value") == "3"
    assert browser.find_element(By.NAME, "labRate").get_attribute("value") == "40"
    browser.find_element(By.XPATH, "//button[@type='submit']").click()
    browser.save_screenshot(str(shots / "1-locust-started.png"))
    browser.find_element(By.ID, "lab-faults-link").click()
    until("the session", lambda: "(running)" in browser.find_element(By.ID, "session-state").text)
    until("the subscribers running", lambda: get_json(f"{ui}/stats/requests")["user_count"] >= 3)
    run_id = browser.find_element(By.ID, "session-id").text

    def apply(target: str, action: str, fields: dict[str, str] | None = None) -> str:
        card = browser.find_element(By.CSS_SELECTOR, f".card[data-target={target}]")
        Select(card.find_element(By.TAG_NAME, "select")).select_by_visible_text(action)
        for name, value in (fields or {}).items():
            box = card.find_element(By.CSS_SELECTOR, f"[id$='-{name}']")
            box.clear()
            box.send_keys(value)
        browser.execute_script("document.getElementById('message').textContent = ''")
        card.find_element(By.XPATH, ".//button[text()='apply']").click()
        message = until(f"{action} on {target}", lambda: browser.find_element(By.ID, "message").text)
        assert message.startswith("applied webui-"), message
        return message.removeprefix("applied ")

    def badges(target: str) -> list[str]:
        card = browser.find_element(By.CSS_SELECTOR, f".card[data-target={target}]")
        return [b.get_attribute("data-state") for b in card.find_elements(By.CLASS_NAME, "badge")]

    # 2. a latency toxic, a cut and a kill
    rows = "return (window.labLive || {rows: []}).rows.length"
    until("requests in the session", lambda: browser.execute_script(rows) > 2)
    latency = apply("p1", "latency", {"latency": "300ms"})
    cut = apply("p2", "cut")
    before_kill = time.time() - 1.0
    killed = apply("p3", "kill")
    assert len({latency, cut, killed}) == 3

    # 3. on the cards, on the chart; and in Toxiproxy and Docker
    wanted = {"p1": ["toxic"], "p2": ["cut"], "p3": ["killed"]}
    until("the cards' states", lambda: all(badges(p) == states for p, states in wanted.items()))
    toxics = get_json(f"{toxiproxy}/proxies/p1_http/toxics")
    assert [(t["name"], t["type"], t["attributes"]["latency"]) for t in toxics] == [(latency, "latency", 300)]
    assert get_json(f"{toxiproxy}/proxies/p2_http")["enabled"] is False
    assert finished_at(container_state("p3")) >= before_kill
    windows = until(
        "three active fault windows on the chart",
        lambda: (
            (w := browser.execute_script("return window.labLive && window.labLive.faults"))
            and len([x for x in w if x["end"] is None]) == 3
            and w
        ),
    )
    assert {(w["action"], w["target"]) for w in windows} == {("latency", "p1"), ("cut", "p2"), ("kill", "p3")}
    listed = browser.find_elements(By.CSS_SELECTOR, "#windows li[data-active=true]")
    assert sorted(li.get_attribute("data-fault") for li in listed) == sorted([latency, cut, killed])
    last_row = "const r = window.labLive.rows; return r.length ? r[r.length - 1][0] : null"
    faults_from = max(w["start"] for w in windows)  # s since the session started, as the chart's rows
    until(
        "the charts drawn 3 s into the faults",
        lambda: (browser.execute_script(last_row) or 0) >= faults_from + 3,
    )
    browser.save_screenshot(str(shots / "2-faults-active.png"))

    # 4. lift all
    browser.find_element(By.XPATH, "//button[text()='lift all']").click()
    until("healthy cards", lambda: all(badges(p) == ["healthy"] for p in ("p1", "p2", "p3")))
    assert get_json(f"{toxiproxy}/proxies/p1_http/toxics") == []
    assert get_json(f"{toxiproxy}/proxies/p2_http")["enabled"] is True
    until("p3 running again", lambda: container_state("p3")["Status"] == "running")
    until(
        "the windows closed",
        lambda: not browser.find_elements(By.CSS_SELECTOR, "#windows li[data-active=true]"),
    )

    # 5. the session's report, so far
    browser.find_element(By.ID, "report").click()
    link = until("the report's link", lambda: browser.find_element(By.ID, "report-url"), timeout=300)
    browser.save_screenshot(str(shots / "3-report-built.png"))
    browser.get(link.get_attribute("href"))
    assert run_id in browser.page_source and latency in browser.page_source
    browser.save_screenshot(str(shots / "4-report.png"))

    # the record: stop the swarm, the session ends; ids unique, every start has its end
    _OPENER.open(urllib.request.Request(f"{ui}/stop", method="POST"), timeout=120).close()
    session = f"{ui}/lab/faults/sessions/{run_id}"
    manifest = until("the session's end", lambda: (m := get_json(f"{session}/manifest.json"))["ended"] and m)
    form = manifest["load"]["form"]
    assert manifest["outcome"] == "stopped" and (form["user_count"], form["lab_rate"]) == ("3", "40")
    with _OPENER.open(f"{session}/faults.jsonl", timeout=10) as response:
        events = [json.loads(line) for line in response.read().splitlines()]
    assert sorted((e["fault_id"], e["event"]) for e in events) == sorted(
        (f, kind) for f in (latency, cut, killed) for kind in ("start", "end")
    )
    assert get_json(f"{ui}/lab/faults/api/report", {}, method="POST", timeout=300)["ok"]
    summary = get_json(f"{session}/summary.json")
    assert not [w for w in summary["warnings"] if "no end time" in w or "no end event" in w], summary[
        "warnings"
    ]
    assert sorted(f["fault_id"] for f in summary["faults"]) == sorted([latency, cut, killed])
