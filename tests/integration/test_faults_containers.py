"""Faults on a real lab, observed through the gateway: latency, a cut primary, a killed provider, and
the other process, toxic and control faults with their lifts."""

from __future__ import annotations

import statistics

import pytest
import requests

from lab.eventually import eventually, wait_for_value
from lab.faults.actions import LatencyAction, LimitDataAction, ResetPeerAction, TimeoutAction
from lab.faults.control import ControlClient, ControlError
from lab.topology import Lab

pytestmark = [pytest.mark.integration, pytest.mark.containers]

PRIMARY = "p1"  # priority 1 in the default topology


def latencies(lab: Lab, count: int = 15, **route: str) -> list[float]:
    results = [lab.rpc("eth_blockNumber", **route) for _ in range(count)]
    assert all(r.status == 200 and "result" in r.body for r in results), [r.body for r in results]
    return [r.latency_ms for r in results]


def served_by(lab: Lab, count: int, **route: str) -> list[str]:
    answers = [lab.rpc("eth_blockNumber", include_meta=True, **route) for _ in range(count)]
    assert all(a.status == 200 and "result" in a.body for a in answers), [a.body for a in answers]
    return [a.headers["X-Lasso-Provider"] for a in answers]


@pytest.mark.parametrize(
    "route", [{"provider": PRIMARY}, {"strategy": "priority"}], ids=["override", "priority"]
)
def test_latency_on_the_primarys_downstream_shows_through_the_gateway(
    lab_isolated: Lab, route: dict[str, str]
):
    assert set(served_by(lab_isolated, 5, **route)) == {PRIMARY}
    before = statistics.median(latencies(lab_isolated, **route))

    with lab_isolated.faults.apply(LatencyAction(latency="200ms", stream="downstream"), PRIMARY):
        during = latencies(lab_isolated, **route)
    after = statistics.median(latencies(lab_isolated, **route))

    assert statistics.median(during) - before >= 180, (before, during)
    assert min(during) >= 195, during  # every response waited for the toxic
    assert after < before + 50, (before, after)


def test_cutting_the_primarys_proxy_fails_over_with_requests_still_succeeding(
    lab_isolated: Lab, wait_for_event
):
    assert set(served_by(lab_isolated, 3, strategy="priority")) == {PRIMARY}
    with lab_isolated.faults.cut(PRIMARY):
        providers = served_by(lab_isolated, 20, strategy="priority")  # asserts every answer is a result
        assert PRIMARY not in providers
        event = wait_for_event(
            lambda e: e["type"] in ("failover", "breaker") and PRIMARY in str(e), timeout=10
        )
        assert event["type"] in ("failover", "breaker")
    proxy = lab_isolated.endpoints.providers[PRIMARY].proxy_urls["http"]
    answer = requests.post(proxy, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, timeout=5)
    assert answer.headers["X-Lab-Provider"] == PRIMARY  # restored


def test_killing_a_provider_and_starting_it_again_is_survived(lab_isolated: Lab):
    with lab_isolated.faults.kill("p2") as fault:
        assert lab_isolated.container("p2").status in ("exited", "running")  # the SDK object is a snapshot
        lab_isolated.container("p2").reload()
        assert lab_isolated.container("p2").status == "exited"
        assert all(r < 5000 for r in latencies(lab_isolated, 20))  # the default route keeps answering
    assert not fault.active
    control = lab_isolated.endpoints.providers["p2"].control_url
    first = wait_for_value(lambda: lab_isolated.control.provider_health(control)["head"], timeout=30)
    wait_for_value(
        lambda: lab_isolated.control.provider_health(control)["head"], lambda h: h > first, timeout=10
    )
    lab_isolated.control.reset_breakers(lab_isolated.endpoints.gateway_url)
    eventually(lambda: assert_served(lab_isolated, "p2"), timeout=15)


def assert_served(lab: Lab, provider: str) -> None:
    assert served_by(lab, 1, provider=provider) == [provider]


def test_pause_freezes_a_provider_until_unpaused(lab_isolated: Lab):
    control = lab_isolated.endpoints.providers["p3"].control_url
    impatient = ControlClient(timeout=1.0)
    with lab_isolated.faults.pause("p3"):
        with pytest.raises(ControlError, match="Timeout"):
            impatient.provider_health(control)
        assert all(r < 5000 for r in latencies(lab_isolated, 6))  # the gateway gives up on p3 in time
    assert impatient.provider_health(control)["status"] == "ok"


def test_a_disconnected_provider_is_unreachable_through_its_proxy_until_reconnected(lab_isolated: Lab):
    proxy = lab_isolated.endpoints.providers["p3"].proxy_urls["http"]
    request = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    with lab_isolated.faults.disconnect("p3"), pytest.raises(requests.RequestException):
        requests.post(proxy, json=request, timeout=3)
    answer = wait_for_value(lambda: requests.post(proxy, json=request, timeout=3), lambda r: r.ok, timeout=15)
    assert answer.headers["X-Lab-Provider"] == "p3"


def test_memory_squeeze_sets_and_releases_the_limit(lab_isolated: Lab):
    container = lab_isolated.container("p2")
    with lab_isolated.faults.squeeze_memory("p2", "96m"):
        container.reload()
        assert container.attrs["HostConfig"]["Memory"] == 96 * 1024 * 1024
        assert lab_isolated.control.provider_health(lab_isolated.endpoints.providers["p2"].control_url)
    container.reload()
    assert container.attrs["HostConfig"]["Memory"] > 1024**3


def test_behaviour_switch_is_seen_on_the_override_route_and_lifted(lab_isolated: Lab):
    with lab_isolated.faults.behavior("p1", {"type": "always_fail"}):
        answer = lab_isolated.rpc("eth_blockNumber", provider="p1")
        assert "error" in answer.body or answer.status >= 500, answer.body
    assert_served(lab_isolated, "p1")


def test_forcing_a_breaker_open_is_announced_and_reset_on_lift(lab_isolated: Lab, wait_for_event):
    def p1_breaker(event: dict) -> bool:
        return event["type"] == "breaker" and event.get("provider") == "p1"

    with lab_isolated.faults.open_breaker("p1"):
        assert wait_for_event(lambda e: p1_breaker(e) and e["to"] == "open")["reason"]
        assert PRIMARY not in served_by(lab_isolated, 5, strategy="priority")
    wait_for_event(lambda e: p1_breaker(e) and e["to"] == "closed")
    assert set(served_by(lab_isolated, 3, strategy="priority")) == {PRIMARY}


@pytest.mark.parametrize(
    ("apply", "expected"),
    [
        (lambda f: f.apply(TimeoutAction(timeout=0, transport="http"), "p2"), requests.Timeout),
        (
            lambda f: f.apply(ResetPeerAction(timeout=0, stream="upstream", transport="http"), "p2"),
            requests.ConnectionError,
        ),
        (lambda f: f.apply(LimitDataAction(bytes=10, transport="http"), "p2"), requests.RequestException),
    ],
    ids=["timeout", "reset_peer", "limit_data"],
)
def test_toxics_reach_the_wire(lab_isolated: Lab, apply, expected):
    proxy = lab_isolated.endpoints.providers["p2"].proxy_urls["http"]
    request = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
    with apply(lab_isolated.faults), pytest.raises(expected):
        requests.post(proxy, json=request, timeout=2).json()
    assert requests.post(proxy, json=request, timeout=5).json()["result"].startswith("0x")


def test_updating_a_toxic_changes_the_latency_in_place(lab_isolated: Lab):
    fault = lab_isolated.faults.apply({"type": "latency", "latency": "300ms", "transport": "http"}, "p1")
    assert min(latencies(lab_isolated, 3, provider="p1")) >= 295
    fault = lab_isolated.faults.update_toxic(fault, latency=0)
    assert max(latencies(lab_isolated, 3, provider="p1")) < 200
    fault.lift()
    assert lab_isolated.toxiproxy.toxics("p1_http") == []


def test_heal_restores_toxiproxy_proxies_after_toxiproxy_restarts(lab_isolated: Lab):
    lab_isolated.faults.restart("toxiproxy", timeout_s=1)
    lab_isolated.heal()
    assert set(lab_isolated.toxiproxy.proxies()) == {p.name for p in lab_isolated.plan.proxies}
    assert lab_isolated.rpc("eth_blockNumber").status == 200
