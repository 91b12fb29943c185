"""The cron and systemd examples run real fine-tune-cycle commands with valid flags."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import orjson
import pytest

from metahuman_lib.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
_COMMAND = re.compile(r"bin/metahuman (fine-tune-cycle [^>;}\n]*)")


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in sorted(p for p in EXAMPLES.rglob("*") if p.is_file()):
        for match in _COMMAND.finditer(path.read_text()):
            found.append((path.name, shlex.split(match.group(1))))
    return found


def test_every_schedule_has_a_command() -> None:
    names = {name for name, _ in _commands()}
    assert names == {"metahuman-monthly", "metahuman-biweekly", "metahuman-monthly.service",
                     "metahuman-biweekly.service"}


@pytest.mark.parametrize(("name", "argv"), _commands())
def test_example_commands_resolve(name: str, argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main([*argv, "--show-parameters", "--now", "2025-12-01"]) == 0, name
    selection = orjson.loads(capsys.readouterr().out)["blocks"]["selection"]
    expected = (30, 3000) if "monthly" in name else (14, 2000)
    assert (selection["days_recent"], selection["old_samples"]) == expected


@pytest.mark.parametrize("timer", ["metahuman-monthly.timer", "metahuman-biweekly.timer"])
def test_timers_are_persistent(timer: str) -> None:
    text = (EXAMPLES / "systemd" / timer).read_text()
    assert "Persistent=true" in text and "OnCalendar=" in text
