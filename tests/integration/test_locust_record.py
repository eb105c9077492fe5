"""The locustfiles for real: Locust headless (its own process) against a real gateway and providers
started as processes, recording into a run directory. No containers. The packaged locustfile (what
`lab run` and the Locust image use) and the checkout's `locustfiles/scenario.py` (which imports it) find
the same users and shape."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import orjson
import pytest

from lab.gateway.launch import start_gateway_process
from lab.load import LOCUSTFILE
from lab.provider import start_provider_process
from lab.record import read_table

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = ("alpha", "beta")
ENTRY_POINTS = [LOCUSTFILE, ROOT / "locustfiles" / "scenario.py"]


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ExitStack() as stack:
        endpoints = [stack.enter_context(start_provider_process(p, block_time=0.5)) for p in PROVIDERS]
        providers = [{"id": e.provider_id, "url": e.url, "ws_url": e.ws_url} for e in endpoints]
        config = tmp_path_factory.mktemp("gateway") / "public.yml"
        body = {"chains": {"ethereum": {"chain_id": 1, "providers": providers}}}
        config.write_text("---\nname: Lab\nslug: public\n---\n" + orjson.dumps(body).decode())
        gateway = stack.enter_context(start_gateway_process(config))
        yield gateway.url


def run_locust(gateway_url: str, run_dir: Path, load: dict, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "LAB_RUN_DIR": str(run_dir),
        "LAB_LOAD": orjson.dumps(load).decode(),
        "LAB_SEED": "7",
    }
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
        "--headless", "-H", gateway_url, "--exit-code-on-error", "0", "--only-summary", *extra,
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_every_request_and_head_is_recorded(gateway_url: str, tmp_path: Path) -> None:
    load = {
        "users": 4,
        "spawn_rate": 4,
        "duration": "5s",
        "rate_per_user": 10,
        "batch": {"share": 0.25, "size": 3},
        "subscribers": {"new_heads": 2, "logs": 1},
    }
    run_locust(gateway_url, tmp_path, load)

    started = orjson.loads((tmp_path / "locust" / "started.json").read_bytes())["ts"]
    requests = read_table(tmp_path, "requests")
    http = requests[requests["transport"].isin(["http", "batch"])]
    assert len(http) > 50
    assert http["ok"].all(), http[~http["ok"]].head().to_dict("records")
    assert (requests["ts"].map(lambda t: t.timestamp()) >= started - 1).all()
    assert set(http["provider"]) <= set(PROVIDERS) and http["provider"].notna().all()
    assert (http["attempts"] >= 1).all() and (http["latency_ms"] > 0).all()
    assert (http["http_status"] == 200).all()
    assert set(http["method"]) >= {"eth_blockNumber", "eth_call", "eth_getBalance"}
    batches = requests[requests["transport"] == "batch"].groupby("batch_id")
    assert batches.ngroups > 0 and (batches.size() == 3).all() and (batches["batch_size"].first() == 3).all()
    subscribes = requests[requests["method"] == "eth_subscribe"]
    assert len(subscribes) == 3 and subscribes["ok"].all()

    heads = read_table(tmp_path, "heads")
    new_heads = heads[heads["subscription"] == "newHeads"]
    assert new_heads["subscriber"].nunique() == 2
    for _, received in new_heads.groupby("subscriber"):
        numbers = received["block_number"].tolist()
        assert len(numbers) >= 6  # 0.5 s blocks for about 5 s
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "every head, once, in order"
        assert (received["parent_hash"].iloc[1:].values == received["block_hash"].iloc[:-1].values).all()
        assert received["block_timestamp"].notna().all()
    assert (heads["subscription"] == "logs").any()

    # run by hand (no `lab run` manifest): a minimal one, so that `lab report` can read the record
    from lab.analysis.loading import load_run

    assert load_run(tmp_path).manifest["scenario"]["name"] == "manual"


def test_each_locust_process_writes_its_own_parts(gateway_url: str, tmp_path: Path) -> None:
    load = {"users": 4, "spawn_rate": 4, "duration": "4s", "rate_per_user": 10}
    run_locust(gateway_url, tmp_path, load, "--processes", "2")
    requests = read_table(tmp_path, "requests")
    assert requests["worker"].nunique() == 2
    writers = {p.name.split("-000")[0] for p in (tmp_path / "requests").glob("part-*.parquet")}
    assert len(writers) == 2
    assert requests["ok"].all()
    # the open model's schedule, shared: 40 requests/s in all, the processes' arrivals interleaved (each
    # takes every other slot of one evenly spaced schedule), never two at the same instant
    intended = requests["intended_ts"].sort_values().astype("int64").to_numpy() / 1e6
    assert len(intended) == pytest.approx(4 * 40, abs=2)
    gaps = intended[1:] - intended[:-1]
    assert abs(gaps - 1 / 40).max() < 0.001, gaps
    by_process = requests.groupby("worker")["intended_ts"].count()
    assert by_process.min() >= by_process.max() - 1, by_process


def locustfile_classes(locustfile: Path, env: dict[str, str]) -> dict:
    """The user classes and shape Locust finds in `locustfile` under `env` (own process)."""
    probe = (
        "import json, sys; from locust.util.load_locustfile import load_locustfile; "
        "users, shapes = load_locustfile(sys.argv[1]); "
        "print(json.dumps({'users': {n: c.fixed_count for n, c in users.items()}, "
        "'shapes': [type(s).__name__ for s in shapes]}))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    result = subprocess.run(
        [sys.executable, "-c", probe, str(locustfile)],
        env={**clean, **env}, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return orjson.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("locustfile", ENTRY_POINTS, ids=["packaged", "checkout"])
def test_by_hand_the_web_ui_user_count_drives_and_subscribers_come_only_when_asked(locustfile: Path) -> None:
    # lab run, the open model (the default): the dispatcher sends, Locust's users are the subscribers it
    # asks for, the scenario's shape drives
    found = locustfile_classes(locustfile, {"LAB_LOAD": '{"subscribers": {"new_heads": 2}}'})
    assert found == {"users": {"NewHeadsSubscriber": 2}, "shapes": ["LabShape"]}
    # the closed model: looping HTTP users besides the subscribers
    closed = '{"model": "closed", "subscribers": {"new_heads": 2}}'
    found = locustfile_classes(locustfile, {"LAB_LOAD": closed})
    assert found == {"users": {"JsonRpcUser": 0, "NewHeadsSubscriber": 2}, "shapes": ["LabShape"]}
    # by hand (the compose lab): no shape; the start form's rate drives the open model and the web UI's
    # user count the subscribers (newHeads unless counts are given)
    assert locustfile_classes(locustfile, {}) == {"users": {"NewHeadsSubscriber": 0}, "shapes": []}
    found = locustfile_classes(locustfile, {"LAB_LOAD_NEW_HEADS": "2", "LAB_LOAD_LOGS": "1"})
    assert found["users"] == {"NewHeadsSubscriber": 2, "LogsSubscriber": 1}
    assert found["shapes"] == []
    found = locustfile_classes(locustfile, {"LAB_LOAD_MODEL": "closed"})
    assert found == {"users": {"JsonRpcUser": 0}, "shapes": []}
