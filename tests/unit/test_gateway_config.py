"""Loading Lasso profiles: the format, ${ENV} substitution, errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.gateway.config import ConfigError, GatewaySettings, Strategy, load
from lab.gateway.runtime import ChainPolicy

PROFILE = """\
---
name: Lab
slug: public
rps_limit: 100
---
chains:
  ethereum:
    chain_id: 1
    block_time_ms: 100
    selection: {max_lag_blocks: 4}
    websocket: {failover: {max_backfill_blocks: 7}}
    ui-topology: {color: "#627EEA"}
    providers:
      - id: a
        url: http://127.0.0.1:8545/
        ws_url: ws://127.0.0.1:8545/ws
        priority: 1
        headers: {Authorization: "Bearer ${TOKEN}"}
      - {id: b, url: "http://127.0.0.1:${PORT_B}/", weight: 3}
gateway:
  default_strategy: priority
  retries: 0
  breaker: {failure_threshold: 2, cooldown_s: 5}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_a_lasso_profile_with_gateway_settings(tmp_path: Path) -> None:
    config = load(write(tmp_path, "public.yml", PROFILE), {"TOKEN": "s3cret", "PORT_B": "9000"})
    profile = config.profiles["public"]
    chain = profile.chains["ethereum"]
    assert config.default_profile == "public" and profile.name == "Lab"
    assert [p.id for p in chain.providers] == ["a", "b"]
    assert chain.providers[0].headers == {"Authorization": "Bearer s3cret"}
    assert chain.providers[1].url == "http://127.0.0.1:9000/" and chain.providers[1].weight == 3
    assert profile.gateway.retries == 0 and profile.gateway.breaker.failure_threshold == 2
    assert profile.gateway.breaker.success_threshold == 2  # a default kept
    policy = ChainPolicy.resolve(profile.gateway, chain)
    assert policy.default_strategy is Strategy.PRIORITY
    assert (policy.max_lag_blocks, policy.max_backfill_blocks) == (4, 7)  # the chain's Lasso fields win
    assert policy.block_time_s == 0.1 and policy.silence_timeout_s == pytest.approx(0.3)


def test_defaults_without_a_gateway_section() -> None:
    settings = GatewaySettings()
    assert settings.default_strategy is Strategy.LOAD_BALANCED
    assert (settings.retries, settings.lag_check, settings.gap_filling, settings.breaker.enabled) == (
        2,
        True,
        True,
        True,
    )


def test_an_unset_environment_variable_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "public.yml", PROFILE)
    with pytest.raises(ConfigError) as exc:
        load(path, {"TOKEN": "x"})
    assert (
        str(exc.value) == f"{path}: chains.ethereum.providers[1].url: environment variable PORT_B is not set"
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("chain_id: 1", "chain_id: one", "chains.ethereum.chain_id: Input should be a valid integer"),
        ("retries: 0", "retries: -1", "gateway.retries: Input should be greater than or equal to 0"),
        ("retries: 0", "retrys: 0", "gateway.retrys: Extra inputs are not permitted"),
        (
            "default_strategy: priority",
            "default_strategy: cheapest",
            "gateway.default_strategy: Input should be",
        ),
        ("id: b,", "id: a,", "chains.ethereum.providers: Value error, duplicate provider id 'a'"),
        (
            "ws_url: ws://",
            "ws_url: http://",
            "chains.ethereum.providers[0].ws_url: Value error, must be a ws://",
        ),
        ("slug: public", "slug: Not A Slug", "front matter: slug: String should match pattern"),
    ],
)
def test_invalid_values_are_reported_with_their_key_path(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in PROFILE
    path = write(tmp_path, "public.yml", PROFILE.replace(old, new, 1))
    with pytest.raises(ConfigError) as exc:
        load(path, {"TOKEN": "x", "PORT_B": "1"})
    assert str(exc.value).startswith(f"{path}: ") and expected in str(exc.value)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yml", "---\nname: x\nslug: x\n---\nchains: [unclosed\n")
    with pytest.raises(ConfigError, match=r"p\.yml: invalid YAML \(line \d+, column \d+\)"):
        load(path)


def test_front_matter_is_required(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yml", "chains: {}\n")
    with pytest.raises(ConfigError, match="expected YAML front matter"):
        load(path)


def test_a_directory_of_profiles_whose_file_names_are_their_slugs(tmp_path: Path) -> None:
    env = {"TOKEN": "x", "PORT_B": "1"}
    write(tmp_path, "public.yml", PROFILE)
    write(tmp_path, "weak.yaml", PROFILE.replace("slug: public", "slug: weak"))
    write(tmp_path, "notes.txt", "not a profile")
    config = load(tmp_path, env)
    assert sorted(config.profiles) == ["public", "weak"] and config.default_profile == "public"
    write(tmp_path, "other.yml", PROFILE.replace("slug: public", "slug: mismatch"))
    with pytest.raises(ConfigError, match=r"other\.yml: slug 'mismatch' must match the file name"):
        load(tmp_path, env)


def test_the_only_profile_is_the_default_whatever_its_slug(tmp_path: Path) -> None:
    config = load(
        write(tmp_path, "lab.yml", PROFILE.replace("slug: public", "slug: lab")), {"TOKEN": "", "PORT_B": "1"}
    )
    assert config.default_profile == "lab"


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or directory"):
        load(tmp_path / "absent.yml")
