"""The fine-tune-cycle flag matrix: which set, which window, which errors (pure, no runs)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from metahuman_lib.cli import main
from metahuman_lib.errors import ConfigError
from metahuman_lib.parameters import (
    CycleFlags,
    RunParameters,
    find_parameter_file,
    load_parameter_set,
    parse_now,
    resolve_parameters,
)

NOW = datetime(2025, 12, 1, 9, 0, tzinfo=UTC)

_SETS = {
    "foundation": "selection:\n  days_recent: null\n  old_samples: 0\n",
    "monthly": "selection:\n  days_recent: 30\n  old_samples: 3000\n",
    "biweekly": "selection:\n  days_recent: 14\n  old_samples: 2000\nreport:\n  runs_per_year: 26\n",
}


@pytest.fixture(scope="module")
def param_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("parameters")
    for name, text in _SETS.items():
        (folder / f"{name}.yaml").write_text(text)
    (folder / "typo.yaml").write_text("selecton:\n  days_recent: 3\n")
    return folder


def _resolve(param_dir: Path, **flags: object) -> RunParameters:
    return resolve_parameters(CycleFlags(**flags), now=NOW, search_dirs=[param_dir])


@pytest.mark.parametrize(
    ("flags", "name", "kind", "days", "old"),
    [
        ({}, "foundation", "foundation", None, 0),
        ({"monthly": True}, "monthly", "update", 30, 3000),
        ({"days_recent": 14, "old_samples": 2000}, "monthly", "update", 14, 2000),
        ({"days_recent": 45}, "monthly", "update", 45, 3000),
        ({"old_samples": 4000}, "monthly", "update", 30, 4000),
        ({"days_recent": 0, "old_samples": 0}, "monthly", "update", 0, 0),
        ({"params": "biweekly"}, "biweekly", "update", 14, 2000),
        ({"params": "biweekly", "old_samples": 5000}, "biweekly", "update", 14, 5000),
        ({"params": "foundation", "days_recent": 60}, "foundation", "update", 60, 3000),
    ],
)
def test_window_flags_select_set_and_window(param_dir: Path, flags: dict, name: str, kind: str,
                                            days: int | None, old: int | None) -> None:
    params = _resolve(param_dir, **flags)
    assert (params.name, params.kind) == (name, kind)
    assert params.raw["selection"].get("days_recent") == days
    assert params.raw["selection"].get("old_samples") == old


@pytest.mark.parametrize(
    ("flags", "key", "value"),
    [
        ({"monthly": True, "max_samples": 5000}, "max_samples", 5000),
        ({"monthly": True, "mode": "dual"}, "mode", "dual"),
        ({"mode": "agent"}, "mode", "agent"),
    ],
)
def test_max_and_mode_reach_the_selection(param_dir: Path, flags: dict, key: str, value: object) -> None:
    assert _resolve(param_dir, **flags).raw["selection"][key] == value


def test_base_model_seed_and_now_are_honoured(param_dir: Path) -> None:
    params = _resolve(param_dir, monthly=True, base_model="Qwen/Qwen3-14B", seed=7, now="2026-01-02")
    assert params.raw["training"]["base_model"] == "Qwen/Qwen3-14B"
    assert params.seed == 7
    assert params.now == datetime(2026, 1, 2, tzinfo=UTC)
    assert params.flags == ("--monthly", "--base-model", "--seed", "--now")


def test_defaults_seed_zero_and_callers_now(param_dir: Path) -> None:
    params = _resolve(param_dir)
    assert (params.seed, params.now, params.flags) == (0, NOW, ())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"monthly": True, "days_recent": 14}, (r"--monthly means --days-recent 30 --old-samples 3000; "
                                                r"pass either --monthly or --days-recent, not both\.")),
        ({"monthly": True, "old_samples": 10, "days_recent": 3},
         r"pass either --monthly or --days-recent / --old-samples, not both"),
        ({"monthly": True, "params": "biweekly"}, r"--monthly selects the 'monthly' parameter set"),
        ({"days_recent": -1}, r"--days-recent must be a whole number >= 0, got -1\."),
        ({"old_samples": -5}, r"--old-samples must be a whole number >= 0, got -5\."),
        ({"max_samples": 0}, r"--max must be a whole number >= 1, got 0\."),
        ({"mode": "duel"}, r"Unknown --mode 'duel'\. Did you mean 'dual'\?"),
        ({"base_model": " "}, r"--base-model is empty"),
        ({"seed": -3}, r"--seed must be a whole number >= 0"),
        ({"now": "last tuesday"}, r"--now 'last tuesday' is not a date"),
        ({"params": "montly"}, r"Unknown strategy 'montly' \(did you mean 'monthly'\?\); available: "),
        ({"params": "/no/such/file.yaml"}, r"Parameter file /no/such/file.yaml does not exist\."),
        ({"params": "typo"}, r"Unknown parameter block 'selecton'\. Did you mean 'selection'\?"),
    ],
)
def test_bad_flags_raise_clear_errors(param_dir: Path, flags: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _resolve(param_dir, **flags)


def test_parameter_file_by_path(param_dir: Path) -> None:
    params = _resolve(param_dir, params=str(param_dir / "biweekly.yaml"))
    assert params.name == "biweekly"
    assert find_parameter_file("monthly", [param_dir]) == (param_dir / "monthly.yaml").resolve()


def test_record_round_trip_keeps_fingerprint(param_dir: Path) -> None:
    params = _resolve(param_dir, days_recent=14, old_samples=2000, mode="dual", seed=3)
    again = RunParameters.from_record(orjson.loads(orjson.dumps(params.to_record())))
    assert again.fingerprint() == params.fingerprint()
    assert again.raw == params.raw
    later = _resolve(param_dir, days_recent=14, old_samples=2000, mode="dual", seed=3, now="2026-03-01")
    assert later.fingerprint(include_now=False) == params.fingerprint(include_now=False)
    assert later.fingerprint() != params.fingerprint()


def test_parameters_are_frozen(param_dir: Path) -> None:
    params = load_parameter_set("monthly", now=NOW, search_dirs=[param_dir])
    with pytest.raises(AttributeError):
        params.seed = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        params.raw["selection"]["days_recent"] = 1  # type: ignore[index]


def test_report_block_is_parsed_by_its_dataclass(param_dir: Path) -> None:
    from metahuman_lib.reports import ReportParams

    assert _resolve(param_dir, params="biweekly").report == ReportParams(runs_per_year=26)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-12-01", datetime(2025, 12, 1, tzinfo=UTC)),
        ("2025-12-01T10:30:00Z", datetime(2025, 12, 1, 10, 30, tzinfo=UTC)),
        ("2025-12-01T12:30:00+02:00", datetime(2025, 12, 1, 10, 30, tzinfo=UTC)),
    ],
)
def test_parse_now(value: str, expected: datetime) -> None:
    assert parse_now(value) == expected


@pytest.mark.parametrize(
    ("argv", "days", "old", "extra"),
    [
        ([], None, 0, {}),
        (["--monthly"], 30, 3000, {}),
        (["--days-recent", "14", "--old-samples", "2000"], 14, 2000, {}),
        (["--monthly", "--max", "5000", "--mode", "dual"], 30, 3000, {"max_samples": 5000, "mode": "dual"}),
    ],
)
def test_cli_show_parameters(param_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
                             argv: list[str], days: int | None, old: int | None, extra: dict) -> None:
    monkeypatch.setenv("METAHUMAN_PARAMETERS_DIR", str(param_dir))
    code = main(["fine-tune-cycle", "--username", "greggles", "--show-parameters", "--now", "2025-12-01",
                 *argv])
    assert code == 0
    record = orjson.loads(capsys.readouterr().out)
    selection = record["blocks"]["selection"]
    assert (selection.get("days_recent"), selection.get("old_samples")) == (days, old)
    for key, value in extra.items():
        assert selection[key] == value
    assert record["now"] == "2025-12-01T00:00:00Z"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--monthly", "--days-recent", "14"], "error: --monthly means --days-recent 30"),
        (["--backend", "cloud"], "error: Unknown backend 'cloud'; available backends: local, runpod."),
        (["--resume", "/tmp/x", "--monthly"], ("error: --resume continues a run with the parameters it "
                                               "started with; drop --monthly.")),
    ],
)
def test_cli_conflicts_exit_2_with_one_line(param_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    monkeypatch.setenv("METAHUMAN_PARAMETERS_DIR", str(param_dir))
    assert main(["fine-tune-cycle", "--username", "greggles", *argv]) == 2
    assert capsys.readouterr().err.startswith(message)
