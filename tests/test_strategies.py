"""Strategies: the shipped parameter sets and the errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from metahuman_lib.errors import ConfigError
from metahuman_lib.strategies import (
    Strategy,
    list_strategies,
    load_strategy,
    parameters_dir,
    read_parameter_set,
)

REPO = Path(__file__).resolve().parents[1]


def test_shipped_sets_are_listed():
    assert list_strategies() == ["biweekly", "foundation", "heavy-history", "heavy-recent",
                                 "monthly", "window-45d"]


@pytest.mark.parametrize(
    ("name", "days", "old", "sampling"),
    [
        ("foundation", None, 0, "uniform"),
        ("monthly", 30, 3000, "uniform"),
        ("biweekly", 14, 2000, "uniform"),
        ("window-45d", 45, 4000, "uniform"),
        ("heavy-recent", 60, 2000, "uniform"),
        ("heavy-history", 14, 5000, "stratified"),
    ],
)
def test_seed_strategies(name, days, old, sampling):
    strategy = load_strategy(name)
    assert (strategy.name, strategy.days_recent, strategy.old_samples, strategy.old_sampling) == (
        name, days, old, sampling)
    assert strategy.description
    assert strategy.is_foundation is (days is None)


def test_every_set_has_description_and_selection_block():
    for name in list_strategies():
        data = read_parameter_set(name)
        assert set(data) >= {"description", "selection"}


def test_repo_parameters_folder_is_the_package_folder():
    assert (REPO / "parameters").resolve() == parameters_dir().resolve()


def test_files_without_selection_block_are_not_strategies(tmp_path, monkeypatch):
    (tmp_path / "gpu_prices.yaml").write_text("mfu: 0.35\n")
    (tmp_path / "weekly.yaml").write_text("selection:\n  days_recent: 7\n")
    monkeypatch.setenv("METAHUMAN_PARAMETERS_DIR", str(tmp_path))
    assert list_strategies() == ["weekly"]
    assert load_strategy("weekly").days_recent == 7


def test_unknown_name_lists_available():
    with pytest.raises(ConfigError, match=r"Unknown strategy 'monthy' \(did you mean 'monthly'\?\); "
                                          r"available: biweekly, foundation, "):
        load_strategy("monthy")


def test_unknown_key_suggests_close_name(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("selection:\n  days_recnt: 10\n")
    with pytest.raises(ConfigError, match=r"Unknown selection key 'days_recnt' in .*mine.yaml "
                                          r"\(did you mean 'days_recent'\?\)"):
        load_strategy(str(path))


def test_load_by_path(tmp_path):
    path = tmp_path / "weekly.yaml"
    path.write_text("description: weekly\nselection:\n  days_recent: 7\n  old_samples: 0\n  mode: dual\n")
    strategy = load_strategy(path)
    assert (strategy.name, strategy.days_recent, strategy.old_samples, strategy.mode) == (
        "weekly", 7, 0, "dual")


def test_missing_selection_block(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("description: nothing\n")
    with pytest.raises(ConfigError, match="has no 'selection:' block"):
        load_strategy(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"old_samples": -1}, r"old_samples must be a whole number >= 0, got -1\."),
        ({"days_recent": 1.5}, r"days_recent must be a whole number >= 0, got 1\.5\."),
        ({"mode": "duel"}, r"Unknown mode 'duel' \(did you mean 'dual'\?\)"),
        ({"old_sampling": "stratify"}, r"Unknown old_sampling 'stratify' \(did you mean 'stratified'\?\)"),
        ({"eval_recent_share": 2}, r"eval_recent_share must be a number between 0 and 1, got 2\."),
    ],
)
def test_bad_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        Strategy(**changes)


def test_overrides_keep_none_and_honour_zero():
    monthly = load_strategy("monthly")
    assert monthly.with_overrides(days_recent=None, old_samples=None) == monthly
    custom = monthly.with_overrides(days_recent=0, old_samples=0, max_samples=0)
    assert (custom.days_recent, custom.old_samples, custom.max_samples, custom.name) == (
        0, 0, 0, "monthly+custom")
    with pytest.raises(ConfigError, match="Unknown selection key 'old' in override"):
        monthly.with_overrides(old=3)
