"""Where one user's files live under a MetaHuman OS root."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from metahuman_lib.errors import ProfileError

ROOT_ENV_VAR = "METAHUMAN_ROOT"
_USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_username(username: str) -> str:
    """Return ``username`` unchanged, or raise if it could escape the profiles folder."""
    if not isinstance(username, str) or not username.strip():
        raise ProfileError("Username is empty: pass --username NAME (letters, digits, '.', '_', '-').")
    if "/" in username or "\\" in username or ".." in username or not _USERNAME_PATTERN.match(username):
        raise ProfileError(
            f"Invalid username {username!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, with no path separators and no '..'."
        )
    return username


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The MetaHuman OS root: ``root`` if given, else ``$METAHUMAN_ROOT``, else the current folder."""
    if root is not None and str(root) != "":
        return Path(root).expanduser().resolve()
    env_root = os.environ.get(ROOT_ENV_VAR)
    if env_root:
        return Path(env_root).expanduser().resolve()
    return Path.cwd().resolve()


def make_run_label(now: datetime, token: str | None = None) -> str:
    """A run label as MetaHuman OS writes it: ``YYYY-MM-DD-HHMMSS-<6 hex>`` (UTC)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    token = token if token is not None else secrets.token_hex(3)
    if not re.fullmatch(r"[0-9a-f]{6}", token):
        raise ValueError(f"run label token must be 6 lowercase hex digits, got {token!r}")
    return f"{now.astimezone(UTC):%Y-%m-%d-%H%M%S}-{token}"


@dataclass(frozen=True)
class Profile:
    """The paths of one user under one MetaHuman OS root.

    Attributes:
        root: the MetaHuman OS installation (holds ``profiles/`` and ``etc/``).
        username: the profile name, validated so it can never point outside ``profiles/``.
    """

    root: Path
    username: str

    def __post_init__(self) -> None:
        validate_username(self.username)
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    @classmethod
    def open(cls, username: str, root: str | os.PathLike[str] | None = None) -> Profile:
        """Build a profile from a username and an optional root (see :func:`resolve_root`)."""
        return cls(resolve_root(root), username)

    @property
    def profile_dir(self) -> Path:
        return self.root / "profiles" / self.username

    @property
    def episodic_dir(self) -> Path:
        return self.profile_dir / "memory" / "episodic"

    @property
    def out_dir(self) -> Path:
        return self.profile_dir / "out"

    @property
    def fine_tuned_dir(self) -> Path:
        return self.out_dir / "fine-tuned-models"

    @property
    def reports_dir(self) -> Path:
        return self.out_dir / "reports"

    @property
    def eval_dir(self) -> Path:
        """Evaluation sets kept across runs (the old-probe set fixed at the foundation run)."""
        return self.out_dir / "eval"

    @property
    def registry_path(self) -> Path:
        return self.root / "etc" / "model-registry.json"

    @property
    def lock_path(self) -> Path:
        """Held while a run of this profile is in progress, so two runs never overlap."""
        return self.out_dir / ".run.lock"

    def run_dir(self, label: str) -> Path:
        """The run folder ``out/fine-tuned-models/YYYY-MM-DD/<label>/`` for a run label."""
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}-\d{6}-[0-9a-f]{6}", label):
            raise ProfileError(f"Invalid run label {label!r}: expected YYYY-MM-DD-HHMMSS-<6 hex>.")
        return self.fine_tuned_dir / label[:10] / label

    def require_exists(self) -> Profile:
        """Raise a one-line error naming the expected folder when the profile is missing."""
        if not self.episodic_dir.is_dir():
            raise ProfileError(
                f"No MetaHuman OS profile for {self.username!r}: expected the folder "
                f"{self.episodic_dir}. Pass --root (or set {ROOT_ENV_VAR}) to your MetaHuman OS "
                f"installation, or create a demo with: metahuman demo-profile --username {self.username}"
            )
        return self
