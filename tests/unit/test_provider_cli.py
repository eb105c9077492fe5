"""`lab provider` option handling: a bad behaviour is a start-up error naming the option and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lab.cli import main
from lab.provider import cli
from lab.provider.settings import ProviderSettings


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[ProviderSettings]:
    """Capture the settings the command would serve with, instead of serving."""
    captured: list[ProviderSettings] = []
    monkeypatch.setattr(cli, "_run", captured.append)
    return captured


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, ["provider", *args], env=env)


def test_defaults_match_the_contract(started: list[ProviderSettings]) -> None:
    result = invoke("--id", "p1")
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert (settings.provider_id, settings.host, settings.port, settings.chain_id) == (
        "p1",
        "0.0.0.0",
        8545,
        1,
    )
    assert (settings.block_time, settings.genesis_time, settings.behavior.type) == (
        1.0,
        1_700_000_000,
        "healthy",
    )


def test_every_option_has_an_environment_variable(started: list[ProviderSettings]) -> None:
    env = {
        "LAB_PROVIDER_ID": "from-env",
        "LAB_PROVIDER_PORT": "9000",
        "LAB_PROVIDER_CHAIN_ID": "10",
        "LAB_PROVIDER_BLOCK_TIME": "0.05",
        "LAB_PROVIDER_BEHAVIOR": '{"type": "rate_limited", "limit": 5}',
        "LAB_PROVIDER_SEED": "7",
        "LAB_PROVIDER_LOGS_MAX_RANGE": "500",
    }
    result = invoke(env=env)
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert (settings.provider_id, settings.port, settings.chain_id, settings.block_time) == (
        "from-env",
        9000,
        10,
        0.05,
    )
    assert (settings.behavior.type, settings.seed, settings.logs_max_range) == ("rate_limited", 7, 500)


@pytest.mark.parametrize("value", ["always_timeout", '{"type": "always_timeout"}', '"always_timeout"'])
def test_behavior_as_a_name_or_json(started: list[ProviderSettings], value: str) -> None:
    assert invoke("--id", "p1", "--behavior", value).exit_code == 0
    assert started[0].behavior.type == "always_timeout"


def test_behavior_from_a_json_or_yaml_file(started: list[ProviderSettings], tmp_path: Path) -> None:
    (tmp_path / "b.json").write_text('{"type": "node_out_of_sync", "lag": 4}')
    (tmp_path / "b.yaml").write_text("type: latency\nms: 25\n")
    assert invoke("--id", "p1", "--behavior", f"@{tmp_path / 'b.json'}").exit_code == 0
    assert invoke("--id", "p1", "--behavior", f"@{tmp_path / 'b.yaml'}").exit_code == 0
    assert [s.behavior.type for s in started] == ["node_out_of_sync", "latency"]


@pytest.mark.parametrize(
    ("args", "env", "fragments"),
    [
        (
            ["--behavior", '{"type": "intermittent_failures", "success_rate": 3}'],
            None,
            ["--behavior / LAB_PROVIDER_BEHAVIOR", "success_rate", "less than or equal to 1"],
        ),
        (
            [],
            {"LAB_PROVIDER_BEHAVIOR": '{"type": "method_specific", "methods": {"eth_call": "lol"}}'},
            ["LAB_PROVIDER_BEHAVIOR", "methods.eth_call.type", "lol"],
        ),
        (["--behavior", "{not json"], None, ["--behavior", "not valid JSON", "known types"]),
        (["--behavior", "@/nonexistent/b.json"], None, ["cannot read /nonexistent/b.json"]),
        (["--block-time", "0.001"], None, ["--block-time"]),
    ],
)
def test_bad_start_up_options_are_rejected_naming_the_field(
    started: list[ProviderSettings], args: list[str], env: dict[str, str] | None, fragments: list[str]
) -> None:
    result = invoke("--id", "p1", *args, env=env)
    assert result.exit_code == 2
    for fragment in fragments:
        assert fragment in result.output
    assert started == []


def test_a_bad_behavior_file_names_the_file_and_the_field(
    started: list[ProviderSettings], tmp_path: Path
) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("type: rate_limited\nlimit: -1\n")
    result = invoke("--id", "p1", "--behavior", f"@{path}")
    assert result.exit_code == 2 and str(path) in result.output and "limit" in result.output
