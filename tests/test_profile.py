"""Profile paths, username rules, run labels and root resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from metahuman_lib.errors import ProfileError
from metahuman_lib.profile import (
    ROOT_ENV_VAR,
    Profile,
    make_run_label,
    resolve_root,
    validate_username,
)


@pytest.mark.parametrize("name", ["demo", "greggles", "Ana.Maria", "user_2", "a", "x-y", "9lives", "a" * 64])
def test_valid_usernames_pass_unchanged(name: str) -> None:
    assert validate_username(name) == name


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_username_is_rejected(name: str) -> None:
    with pytest.raises(ProfileError, match=r"^Username is empty: pass --username NAME"):
        validate_username(name)


@pytest.mark.parametrize("name", ["../etc", "a/b", "a\\b", "..", "a..b", ".hidden", "-dash", "a b",
                                  "a" * 65, "naïve", "x/../y"])
def test_unsafe_usernames_are_rejected(name: str) -> None:
    with pytest.raises(ProfileError, match=r"^Invalid username .*no path separators and no '\.\.'\.$"):
        validate_username(name)


def test_profile_rejects_bad_username_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="Invalid username '../x'"):
        Profile(tmp_path, "../x")


def test_profile_paths_follow_metahuman_os_layout(tmp_path: Path) -> None:
    profile = Profile(tmp_path, "greggles")
    assert profile.profile_dir == tmp_path.resolve() / "profiles" / "greggles"
    assert profile.episodic_dir == profile.profile_dir / "memory" / "episodic"
    assert profile.fine_tuned_dir == profile.profile_dir / "out" / "fine-tuned-models"
    assert profile.eval_dir == profile.profile_dir / "out" / "eval"
    assert profile.reports_dir == profile.profile_dir / "out" / "reports"
    assert profile.registry_path == tmp_path.resolve() / "etc" / "model-registry.json"
    assert profile.lock_path == profile.profile_dir / "out" / ".run.lock"


def test_run_dir_nests_under_the_label_date(tmp_path: Path) -> None:
    profile = Profile(tmp_path, "greggles")
    label = "2025-12-03-182930-b19860"
    assert profile.run_dir(label) == profile.fine_tuned_dir / "2025-12-03" / label


@pytest.mark.parametrize("label", ["2025-12-03-182930", "2025-12-03-182930-B19860", "../2025-12-03-182930-b19860",
                                   "2025-12-03-182930-b1986", "x"])
def test_run_dir_rejects_malformed_labels(tmp_path: Path, label: str) -> None:
    with pytest.raises(ProfileError, match=r"Invalid run label .*expected YYYY-MM-DD-HHMMSS-<6 hex>\."):
        Profile(tmp_path, "greggles").run_dir(label)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2025, 12, 3, 18, 29, 30, tzinfo=UTC), "2025-12-03-182930-b19860"),
        (datetime(2025, 12, 3, 20, 29, 30, tzinfo=timezone(timedelta(hours=2))), "2025-12-03-182930-b19860"),
        (datetime(2026, 1, 1, 0, 0, 0, 999, tzinfo=UTC), "2026-01-01-000000-b19860"),
    ],
)
def test_run_label_is_utc_with_token(now: datetime, expected: str) -> None:
    assert make_run_label(now, "b19860") == expected


def test_run_label_random_token_is_six_hex() -> None:
    label = make_run_label(datetime(2025, 12, 3, tzinfo=UTC))
    assert label.startswith("2025-12-03-000000-")
    assert len(label.rsplit("-", 1)[1]) == 6
    int(label.rsplit("-", 1)[1], 16)


def test_run_label_rejects_naive_time_and_bad_token() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        make_run_label(datetime(2025, 12, 3))
    with pytest.raises(ValueError, match="6 lowercase hex digits, got 'XYZ'"):
        make_run_label(datetime(2025, 12, 3, tzinfo=UTC), "XYZ")


def test_root_argument_wins_over_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROOT_ENV_VAR, str(tmp_path / "env"))
    assert resolve_root(tmp_path / "arg") == (tmp_path / "arg").resolve()


def test_environment_wins_over_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROOT_ENV_VAR, str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    assert resolve_root(None) == (tmp_path / "env").resolve()
    assert resolve_root("") == (tmp_path / "env").resolve()
    assert Profile.open("demo").root == (tmp_path / "env").resolve()


def test_current_folder_is_the_default_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ROOT_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_root(None) == tmp_path.resolve()
    assert Profile.open("demo", "").profile_dir == tmp_path.resolve() / "profiles" / "demo"


def test_home_in_root_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_root("~/mh") == (tmp_path / "mh").resolve()


def test_missing_profile_error_names_the_expected_folder(tmp_path: Path) -> None:
    profile = Profile(tmp_path, "ghost")
    expected = str(tmp_path.resolve() / "profiles" / "ghost" / "memory" / "episodic")
    with pytest.raises(ProfileError) as info:
        profile.require_exists()
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"No MetaHuman OS profile for 'ghost': expected the folder {expected}.")
    assert "metahuman demo-profile --username ghost" in message


def test_existing_profile_is_returned(tmp_path: Path) -> None:
    profile = Profile(tmp_path, "here")
    profile.episodic_dir.mkdir(parents=True)
    assert profile.require_exists() is profile
