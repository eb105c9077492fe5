"""Scenario files: every shipped one loads, bad ones are rejected with file, field, expectation and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lab.durations import format_duration
from lab.scenario import ScenarioError, load_scenario, parse_duration, parse_scenario, plan_timeline
from lab.scenario.cli import command as scenario_command
from lab.scenario.schema import DEFAULT_PATH, schema_text

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "toxics").glob("*.yml"))
REQUIRED = {
    "smoke",
    "primary-latency-spike",
    "primary-cut",
    "provider-flapping",
    "rate-limited-backup",
    "stale-head",
    "cascading-failure",
    "network-partition",
    "subscription-failover",
    "production-chaos",
}

BASE = """\
name: t
topology:
  providers: [{id: alpha}, {id: beta}, {id: gamma}]
"""


def errors_of(text: str, source: str = "toxics/x.yml") -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source=source)
    return str(info.value).splitlines()


# --- shipped scenarios -----------------------------------------------------------------------------------


def test_every_required_scenario_is_shipped() -> None:
    assert {path.stem for path in SHIPPED} >= REQUIRED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenario_loads_and_plans(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    plan = plan_timeline(scenario)
    assert all(0 <= f.start < plan.duration for f in plan.faults)
    assert scenario.slos.success_rate is not None


def test_smoke_is_short_enough_for_ci() -> None:
    assert load_scenario(ROOT / "toxics" / "smoke.yml").load.duration <= 30


def test_production_chaos_holds_the_battle_slos() -> None:
    scenario = load_scenario(ROOT / "toxics" / "production-chaos.yml")
    assert scenario.slos.success_rate == 0.99
    assert scenario.slos.p95_ms == 500
    assert scenario.slos.max_gap == 0
    behaviours = {p.behavior.type for p in scenario.topology.providers}
    assert {"cascading_failure", "rate_limited", "node_out_of_sync"} <= behaviours
    kills = [f for f in plan_timeline(scenario).faults if f.kind == "kill" and f.name == "random-kills"]
    assert kills, "random kills are planned"


def test_committed_schema_is_up_to_date() -> None:
    assert DEFAULT_PATH.read_text(encoding="utf-8") == schema_text(), (
        "run: lab scenario schema --out toxics/schema.json"
    )


# --- durations ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        (5, 5.0),
        ("1.5s", 1.5),
        ("7", 7.0),
    ],
)
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["fast", "-1s", "10 parsecs", True, -3, "", "5x"])
def test_bad_durations_say_what_is_expected(text: object) -> None:
    with pytest.raises(ValueError, match="expected a duration like '500ms'"):
        parse_duration(text)


def test_durations_format_back() -> None:
    assert [format_duration(s) for s in (0.25, 30, 90, 120)] == ["250ms", "30s", "1m30s", "2m"]


# --- malformed scenarios ------------------------------------------------------------------------------------


def test_bad_duration_names_file_field_and_line() -> None:
    text = BASE + "faults:\n  - {target: alpha, action: {type: latency, latency: fast}}\n"
    [error] = errors_of(text)
    assert error.startswith("toxics/x.yml: faults[0].action.latency: expected a duration like '500ms'")
    assert error.endswith("(line 5)")


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        # Toxiproxy's attributes are Go int64s: refused at load, not 10 s into a run
        (
            "{type: latency, latency: 99999999999999999999h}",
            "faults[0].action.latency: expected less than or equal to 9223372036854775807 ms in Toxiproxy",
        ),
        ("{type: latency, latency: 1s, jitter: .inf}", "faults[0].action.jitter: expected a duration"),
        ("{type: timeout, timeout: 1e300}", "faults[0].action.timeout: expected less than or equal to"),
        (
            "{type: bandwidth, rate: 100000000000000000000000}",
            "faults[0].action.rate: expected less than or equal to",
        ),
        (
            "{type: slicer, average_size: 8, size_variation: 8}",
            "faults[0].action.size_variation: size_variation (8) must be smaller than average_size (8)",
        ),
        ("{type: slicer, average_size: 8}", "faults[0].action.size_variation: required field missing"),
        (
            "{type: latency, latency: 1s, colour: red}",
            "faults[0].action.colour: unknown field 'colour'; "
            "expected one of: type, stream, toxicity, transport, latency, jitter",
        ),
        ("{type: memory, limit_mb: 3}", "faults[0].action.limit_mb: expected greater than or equal to 6"),
    ],
)
def test_action_fields_are_checked_at_load_naming_the_field(action: str, expected: str) -> None:
    errors = errors_of(BASE + f"faults:\n  - {{target: alpha, action: {action}}}\n")
    assert any(expected in e for e in errors), errors


def test_unknown_field_lists_the_expected_ones() -> None:
    [error] = errors_of(BASE + "load: {durration: 30s}\n")
    expected = "load.durration: unknown field 'durration'; expected one of: model, rate, arrivals"
    assert expected in error


def test_unknown_action_type_lists_the_known_ones() -> None:
    [error] = errors_of(BASE + "faults:\n  - {target: alpha, action: {type: kil}}\n")
    assert "faults[0].action.type: unknown type 'kil'; expected one of:" in error
    assert "'kill'" in error and "'flap'" in error


def test_nested_behaviour_errors_point_into_the_behaviour() -> None:
    text = "name: t\ntopology:\n  providers:\n    - id: alpha\n      behavior: {type: latency, ms: -5}\n"
    [error] = errors_of(text)
    assert "topology.providers[0].behavior.ms: expected greater than or equal to 0, got -5 (line 5)" in error


def test_every_problem_is_reported_at_once() -> None:
    text = BASE + "load: {users: 0, spawn_rate: -1}\nslos: {p95_ms: 0}\n"
    errors = errors_of(text)
    assert [e.split(": ")[1] for e in errors] == ["load.users", "load.spawn_rate", "slos.p95_ms"]


def test_reference_problems_are_reported_beside_field_errors() -> None:
    # the model's cross-field checks run only once every field is valid: the references are checked too
    faults = (
        "faults:\n"
        "  - {id: a, start: soon, target: alpha, action: {type: cut}}\n"
        "  - {id: b, target: delta, action: {type: cut}}\n"
        "  - {after: nope, target: beta, action: {type: cut}}\n"
    )
    errors = errors_of(BASE + faults)
    assert [e.split(": ")[1] for e in errors] == ["faults[0].start", "faults[1].target", "faults[2].after"]
    assert errors[1].endswith(
        "unknown target 'delta'; expected one of alpha, beta, gamma, gateway, all, random (line 6)"
    )


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ("[{target: delta, action: {type: kill}}]", "faults[0].target: unknown target 'delta'"),
        ("[{action: {type: kill}}]", "faults[0].target: required"),
        (
            "[{target: gateway, action: {type: cut}}]",
            "faults[0].target: cut applies to providers, not the gateway",
        ),
        (
            "[{id: a, target: alpha, action: {type: cut}}, {id: a, target: beta, action: {type: cut}}]",
            "faults[1].id: duplicate fault id 'a'",
        ),
        ("[{target: alpha, after: nope, action: {type: cut}}]", "faults[0].after: no entry with id 'nope'"),
        (
            "[{id: a, target: alpha, action: {type: cut}}, {after: a, target: beta, action: {type: cut}}]",
            "faults[1].after: 'a' never ends",
        ),
        (
            "[{id: a, after: b, duration: 1s, target: alpha, action: {type: cut}},"
            " {id: b, after: a, duration: 1s, target: beta, action: {type: cut}}]",
            "the after: references form a cycle",
        ),
        ("[{target: random, min_live: 3, action: {type: kill}}]", "faults[0].min_live: 3 leaves no provider"),
        (
            "[{target: random, among: [alpha, zeta], action: {type: kill}}]",
            "faults[0].among[1]: unknown provider",
        ),
        (
            "[{target: alpha, min_live: 1, action: {type: kill}}]",
            "min_live and among only apply with target: random",
        ),
        ("[{target: alpha, start: 1s, after: x, action: {type: cut}}]", "give start or after, not both"),
        ("[{target: alpha, duration: 5s, action: {type: restart}}]", "restart is instant"),
        (
            "[{target: alpha, duration: 5s, repeat: {every: 2s}, action: {type: cut}}]",
            "must not be shorter than",
        ),
        ("[{target: alpha, repeat: {every: 2s}, action: {type: cut}}]", "a repeated entry needs a duration"),
        (
            "[{target: alpha, action: {type: flap, interval: 2s, down: 3s}}]",
            "down must be shorter than interval",
        ),
        (
            "[{target: alpha, action: {type: toxic, toxic: latensy}}]",
            "faults[0].action.toxic: unknown toxic 'latensy'; expected one of: latency, bandwidth",
        ),
        (
            "[{target: alpha, action: {type: toxic, toxic: slicer, attributes: {size: 3}}}]",
            "faults[0].action.attributes.size: unknown attribute(s) size of toxic 'slicer'; "
            "expected: average_size, delay, size_variation",
        ),
        (
            "[{target: alpha, action: {type: toxic, toxic: latency, attributes: {latency: -1}}}]",
            "faults[0].action.attributes.latency: expected greater than or equal to 0 ms",
        ),
    ],
)
def test_cross_field_problems_name_their_field(faults: str, expected: str) -> None:
    errors = errors_of(BASE + f"faults: {faults}\n")
    assert any(expected in e for e in errors), errors
    assert all(e.startswith("toxics/x.yml: ") for e in errors)


def test_a_known_toxic_by_name_is_accepted() -> None:
    text = (
        BASE + "faults: [{target: alpha, action: {type: toxic, toxic: bandwidth, attributes: {rate: 0}}}]\n"
    )
    [entry] = parse_scenario(text).faults
    assert entry.action.to_toxic()["attributes"] == {"rate": 0}


def test_duplicate_and_reserved_provider_ids() -> None:
    text = "name: t\ntopology:\n  providers: [{id: alpha}, {id: alpha}, {id: gateway}]\n"
    errors = errors_of(text)
    assert any("topology.providers[1].id: duplicate provider id 'alpha'" in e for e in errors)
    assert any("topology.providers[2].id: 'gateway' is reserved" in e for e in errors)


def test_yaml_syntax_error_has_a_line() -> None:
    [error] = errors_of("name: t\ntopology: {providers: [\n")
    assert "not valid YAML" in error and "(line " in error


def test_not_a_mapping() -> None:
    [error] = errors_of("- just\n- a list\n")
    assert "expected a mapping" in error


def test_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "absent.yml")


# --- the CLI ------------------------------------------------------------------------------------------------


def test_validate_command_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(BASE + "load: {users: many}\n")
    runner = CliRunner()
    ok = runner.invoke(scenario_command, ["validate", str(SHIPPED[0])])
    assert ok.exit_code == 0 and ": ok (" in ok.output
    failed = runner.invoke(scenario_command, ["validate", str(SHIPPED[0]), str(bad)])
    assert failed.exit_code == 2
    assert f"{bad}: load.users: expected a valid integer" in failed.output


def test_plan_command_prints_the_resolved_timeline() -> None:
    result = CliRunner().invoke(scenario_command, ["plan", str(ROOT / "toxics" / "provider-flapping.yml")])
    assert result.exit_code == 0
    assert result.output.count("primary-flap#") == 5


def test_schema_command_writes_the_schema(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    result = CliRunner().invoke(scenario_command, ["schema", "--out", str(out)])
    assert result.exit_code == 0
    assert out.read_text() == schema_text()


# --- overrides ----------------------------------------------------------------------------------------------


def test_overrides_apply_and_revalidate() -> None:
    scenario = load_scenario(ROOT / "toxics" / "smoke.yml")
    longer = scenario.with_overrides(duration=300, users=3, seed=9)
    assert (longer.load.duration, longer.load.users, longer.seed) == (300, 3, 9)
    assert longer.faults == scenario.faults
    with pytest.raises(ValueError):
        scenario.with_overrides(users=0)


# --- bad input never crashes ----------------------------------------------------------------------------


def test_a_binary_file_is_refused_naming_it(tmp_path: Path) -> None:
    binary = tmp_path / "photo.yml"
    binary.write_bytes(bytes(range(256)) * 4)
    result = CliRunner().invoke(scenario_command, ["validate", str(binary)])
    assert result.exit_code == 2
    assert result.output == f"{binary}: not a text file (byte 128 is not UTF-8): expected YAML or JSON\n"


def test_a_huge_or_deeply_nested_file_is_refused(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yml"
    huge.write_bytes(b"#" * (2 << 20))
    with pytest.raises(ScenarioError, match=r"huge\.yml: larger than 1 MiB"):
        load_scenario(huge)
    assert errors_of("[" * 5000) == ["toxics/x.yml: nested too deeply to be a scenario"]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("users", "1e23", "load.users: expected a valid integer"),  # YAML 1.1: a string
        ("users", "1.0e+15", "load.users: expected less than or equal to 10000"),
        ("users", "100001", "load.users: expected less than or equal to 10000"),
        ("spawn_rate", "1e9", "load.spawn_rate: "),
        ("spawn_rate", ".inf", "load.spawn_rate: "),
        ("rate_per_user", ".nan", "load.rate_per_user: "),
        ("duration", "99999h", "load.duration: expected less than or equal to 604800"),
        (
            "duration",
            ".inf",
            "load.duration: expected a duration like '500ms', '30s', '2m' or a number of seconds "
            "(a finite one)",
        ),
        ("timeout", "2h", "load.timeout: expected less than or equal to 3600"),
        (
            "subscribers",
            "{new_heads: 1000000}",
            "load.subscribers.new_heads: expected less than or equal to 10000",
        ),
    ],
)
def test_load_numbers_are_bounded(field: str, value: str, expected: str) -> None:
    [error] = errors_of(BASE + f"load:\n  {field}: {value}\n")
    assert error.startswith(f"toxics/x.yml: {expected}") and error.endswith("(line 5)")


def test_a_bounded_load_at_its_limits_is_valid() -> None:
    scenario = parse_scenario(BASE + "load: {users: 10000, spawn_rate: 10000, duration: 168h}\n")
    assert (scenario.load.users, scenario.load.duration) == (10_000, 7 * 24 * 3600)


def test_duplicate_keys_are_errors_naming_the_key_and_line() -> None:
    assert errors_of(BASE + "load:\n  users: 3\n  duration: 10s\n  users: 4\n") == [
        "toxics/x.yml: load.users: duplicate key 'users' (first on line 5) (line 7)"
    ]
    assert errors_of("name: a\nname: b\n" + BASE.split("\n", 1)[1]) == [
        "toxics/x.yml: name: duplicate key 'name' (first on line 1) (line 2)"
    ]
    assert errors_of("name: t\ntopology:\n  providers: [{id: a, id: b}]\n") == [
        "toxics/x.yml: topology.providers[0].id: duplicate key 'id' (first on line 3) (line 3)"
    ]


def test_merge_keys_may_override_what_they_merge() -> None:
    scenario = parse_scenario(BASE + "load:\n  <<: {users: 3, duration: 10s}\n  users: 4\n")
    assert (scenario.load.users, scenario.load.duration) == (4, 10)


def test_plan_with_a_bad_override_exits_2_naming_the_option() -> None:
    smoke = ROOT / "toxics" / "smoke.yml"
    result = CliRunner().invoke(scenario_command, ["plan", str(smoke), "--duration", "5s"])
    assert result.exit_code == 2
    assert result.output == (
        f"{smoke}: faults[0].start: starts at 10s, not before the run ends at 5s (with --duration 5s)\n"
    )
    zero = CliRunner().invoke(scenario_command, ["plan", str(smoke), "--duration", "0s"])
    assert zero.exit_code == 2 and "load.duration: expected greater than 0" in zero.output


def test_schema_to_an_unwritable_place_exits_2() -> None:
    result = CliRunner().invoke(scenario_command, ["schema", "--out", "/proc/x/schema.json"])
    assert result.exit_code == 2
    assert result.output == "--out /proc/x/schema.json: cannot write: No such file or directory\n"
