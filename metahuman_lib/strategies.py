"""Named selection strategies: how much recent and how much old memory goes into a run.

A strategy is the ``selection:`` block of a parameter set ``parameters/<name>.yaml``. The
``parameters/`` folder at the repository root is the one source of truth (people edit it; other
blocks such as ``training:`` live in the same files, and other files such as
``gpu_prices.yaml`` beside them). The package reaches it through the symbolic link
``metahuman_lib/resources/parameters -> ../../parameters``: a source checkout and an editable
install follow the link, and building a wheel or sdist copies the files it points to, so an
installed package ships the same sets. Any other YAML file with a ``selection:`` block can be
loaded by path.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from metahuman_lib._yaml import load_yaml
from metahuman_lib.errors import ConfigError

MODES: tuple[str, ...] = ("dual", "emulation", "agent")
OLD_SAMPLING: tuple[str, ...] = ("uniform", "stratified")
PARAMETERS_ENV_VAR = "METAHUMAN_PARAMETERS_DIR"


@dataclass(frozen=True)
class Strategy:
    """How one run chooses its training samples (see docs/selection.md).

    Attributes:
        name: the parameter set it came from, or ``custom``.
        description: one line for people.
        days_recent: the recent window in days; every sample in it is trained on. ``None``
            means a foundation run: all samples are recent and there is no old pool. ``0`` means
            an empty window.
        old_samples: how many samples older than the window to replay (``0`` means none).
        max_samples: cap on the train set (recent first); ``None`` means no cap, ``0`` means zero.
        mode: keep only samples of this cognitive mode, applied before any sampling.
        old_sampling: ``uniform`` (the seed's shuffle, seeded) or ``stratified`` (by month x mode,
            in proportion to the old pool, largest remainder).
        eval_recent_share: share of the recent pool held out to measure learning.
        eval_recent_min: the held-out recent slice has at least this many samples (while it
            stays at most half of the recent pool).
        old_probe_size: size of the old probe set (fixed at the foundation run, by month).
        old_probe_max_share: the probe never takes more than this share of the pool it comes from.
        seed: the default seed of runs with this strategy.
    """

    name: str = "custom"
    description: str = ""
    days_recent: int | None = 30
    old_samples: int = 3000
    max_samples: int | None = None
    mode: str | None = None
    old_sampling: str = "uniform"
    eval_recent_share: float = 0.05
    eval_recent_min: int = 3
    old_probe_size: int = 200
    old_probe_max_share: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        _check_optional_count("days_recent", self.days_recent)
        _check_count("old_samples", self.old_samples)
        _check_optional_count("max_samples", self.max_samples)
        _check_count("eval_recent_min", self.eval_recent_min)
        _check_count("old_probe_size", self.old_probe_size)
        _check_count("seed", self.seed)
        _check_share("eval_recent_share", self.eval_recent_share)
        _check_share("old_probe_max_share", self.old_probe_max_share)
        if self.mode is not None and self.mode not in MODES:
            raise ConfigError(f"Unknown mode {self.mode!r}{_suggest(self.mode, MODES)}; use one of: "
                              f"{', '.join(MODES)} (or leave it empty for all modes).")
        if self.old_sampling not in OLD_SAMPLING:
            raise ConfigError(f"Unknown old_sampling {self.old_sampling!r}"
                              f"{_suggest(self.old_sampling, OLD_SAMPLING)}; use one of: "
                              f"{', '.join(OLD_SAMPLING)}.")

    @property
    def is_foundation(self) -> bool:
        """A foundation run trains on everything: there is no recent window."""
        return self.days_recent is None

    def with_overrides(self, **overrides: Any) -> Strategy:
        """A copy with some fields replaced; ``None`` values mean "keep the strategy's value".

        Flags and notebook parameters use ``None`` for "not given", so they can be passed
        through unchanged. To make a foundation run, load the ``foundation`` strategy.
        """
        changes = {key: value for key, value in overrides.items() if value is not None}
        _check_keys(changes, "override")
        if changes and "name" not in changes and any(
            getattr(self, key) != value for key, value in changes.items()
        ):
            changes["name"] = f"{self.name}+custom" if self.name != "custom" else "custom"
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The strategy as plain data (the manifest records it)."""
        return dataclasses.asdict(self)


STRATEGY_FIELDS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Strategy))


def _check_count(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key} must be a whole number >= 0, got {value!r}.")


def _check_optional_count(key: str, value: Any) -> None:
    if value is not None:
        _check_count(key, value)


def _check_share(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{key} must be a number between 0 and 1, got {value!r}.")


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _check_keys(block: dict[str, Any], where: str) -> None:
    for key in block:
        if key not in STRATEGY_FIELDS:
            raise ConfigError(f"Unknown selection key {key!r} in {where}{_suggest(key, STRATEGY_FIELDS)}; "
                              f"known keys: {', '.join(STRATEGY_FIELDS)}.")


def parameters_dir() -> Path:
    """The folder of the shipped parameter sets (``$METAHUMAN_PARAMETERS_DIR`` overrides it)."""
    override = os.environ.get(PARAMETERS_ENV_VAR)
    if override:
        return Path(override).expanduser().resolve()
    return Path(str(resources.files("metahuman_lib") / "resources" / "parameters"))


def list_strategies() -> list[str]:
    """Names of the parameter sets with a ``selection:`` block, sorted (other files are skipped)."""
    return sorted(path.stem for path in parameters_dir().glob("*.yaml") if _has_selection(path))


def _has_selection(path: Path) -> bool:
    try:
        data = load_yaml(path)
    except (OSError, ConfigError):
        return False
    return isinstance(data, dict) and "selection" in data


def parameter_set_path(name_or_path: str | os.PathLike[str]) -> Path:
    """The YAML file of a parameter set given by name (``monthly``) or by path.

    Raises:
        ConfigError: no such set; the message lists the available names and close matches.
    """
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or os.sep in text or "/" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"Parameter file {path} does not exist.")
        return path
    path = parameters_dir() / f"{text}.yaml"
    if not path.is_file():
        names = list_strategies()
        raise ConfigError(f"Unknown strategy {text!r}{_suggest(text, names)}; available: "
                          f"{', '.join(names)} (or pass the path of a YAML file).")
    return path


def read_parameter_set(name_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The whole parameter set as a mapping (each owner parses its own block)."""
    path = parameter_set_path(name_or_path)
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"Parameter file {path} must hold a mapping, got {type(data).__name__}.")
    return data


def strategy_from_mapping(block: dict[str, Any], *, name: str = "custom",
                          description: str = "", where: str = "selection") -> Strategy:
    """Build a :class:`Strategy` from a ``selection:`` mapping; unknown keys raise."""
    if not isinstance(block, dict):
        raise ConfigError(f"The selection block in {where} must be a mapping, got {type(block).__name__}.")
    _check_keys(block, where)
    values: dict[str, Any] = {"name": name, "description": description}
    values.update(block)
    return Strategy(**values)


def load_strategy(name_or_path: str | os.PathLike[str]) -> Strategy:
    """Load the ``selection:`` block of a parameter set by name or path.

    Example:
        >>> load_strategy("monthly").days_recent
        30
    """
    path = parameter_set_path(name_or_path)
    data = read_parameter_set(path)
    block = data.get("selection")
    if block is None:
        raise ConfigError(f"Parameter file {path} has no 'selection:' block.")
    return strategy_from_mapping(block, name=path.stem, description=str(data.get("description", "")),
                                 where=str(path))
