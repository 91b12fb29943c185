"""One run's parameters: a named parameter set from ``parameters/<name>.yaml`` plus CLI flags.

A parameter set has one block per concern (``selection``, ``quality``, ``training``, ``gate``,
``runpod``, ``report``, ``pipeline``). Each block is parsed by its owner's frozen dataclass (``from_dict``)
when that module is installed, so a typo in any block fails before anything runs. The
``fine-tune-cycle`` flags are applied on top with the seed's semantics:

=================================  ==============================================================
flags                              meaning
=================================  ==============================================================
(no window flag)                   the ``foundation`` set: every memory
``--monthly``                      the ``monthly`` set: 30 days recent + 3,000 old samples
``--days-recent N``                N days recent; old samples from ``--old-samples`` or 3,000
``--old-samples K``                K old samples; recent window from ``--days-recent`` or 30 days
``--max N`` / ``--mode M``         cap the total / keep one cognitive mode (before sampling)
``--base-model B``                 train from B instead of the registry's current version
``--seed S`` / ``--now DATE``      the run's random seed / the moment that splits recent from old
=================================  ==============================================================

Every flag given is honoured or refused with an error (MetaHuman OS defect 1: its monthly flags
were parsed and then ignored).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from metahuman_lib._types import check_types
from metahuman_lib._yaml import load_yaml
from metahuman_lib.errors import ConfigError

MONTHLY_DAYS_RECENT = 30
MONTHLY_OLD_SAMPLES = 3000
MODES = ("dual", "emulation", "agent")

# block -> "module:Class" whose ``from_dict`` (or ``from_mapping``) parses it
BLOCK_PARSERS: dict[str, str] = {
    "selection": "metahuman_lib.strategies:Strategy",
    "training": "metahuman_lib.training.config:TrainConfig",
    "gate": "metahuman_lib.evaluation:GateConfig",
    "runpod": "metahuman_lib.training.runpod_config:RunPodConfig",
    "report": "metahuman_lib.reports:ReportParams",
    "pipeline": "metahuman_lib.pipeline:PipelineParams",
    "quality": "metahuman_lib.quality:QualityGates",
}
# blocks whose owner builds them with a function of (values, name=set name) instead
BLOCK_BUILDERS: dict[str, str] = {"selection": "metahuman_lib.strategies:strategy_from_mapping"}
BLOCK_NAMES: tuple[str, ...] = tuple(BLOCK_PARSERS)
_TOP_LEVEL_SCALARS = ("name", "description", "seed")

# selection-block keys the window flags write (issue 4's strategy fields)
SELECTION_KEYS = {
    "days_recent": "days_recent",
    "old_samples": "old_samples",
    "max_samples": "max_samples",
    "mode": "mode",
    "seed": "seed",
}
TRAINING_KEYS = {"base_model": "base_model", "seed": "seed"}


@dataclass(frozen=True)
class CycleFlags:
    """The ``fine-tune-cycle`` flags as given (None: not given)."""

    params: str | None = None
    monthly: bool = False
    days_recent: int | None = None
    old_samples: int | None = None
    max_samples: int | None = None
    mode: str | None = None
    base_model: str | None = None
    seed: int | None = None
    now: str | datetime | None = None
    smoke_test: bool = False

    def given(self) -> tuple[str, ...]:
        """The flags that were given, as they are spelled on the command line."""
        names = []
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is not None and value is not False:
                names.append(_flag_name(item.name))
        return tuple(names)


@dataclass(frozen=True)
class RunParameters:
    """Everything one run needs to know, resolved once at the edge and never changed.

    Attributes:
        name: the parameter set's name (``foundation``, ``monthly``, or a file's stem).
        source: where the set came from (a path, or ``record`` when rebuilt from a manifest).
        kind: ``foundation`` (every memory) or ``update`` (recent window + old samples).
        seed: the run's seed, shared by every random choice.
        now: the moment that splits recent from old (UTC).
        raw: the merged blocks after the flags, as plain data (what the manifest records).
        blocks: each block parsed by its owner (a frozen dataclass, or a read-only mapping).
        flags: the CLI flags that were applied, for the record.
    """

    name: str
    source: str
    kind: str
    seed: int
    now: datetime
    raw: Mapping[str, Any]
    blocks: Mapping[str, Any] = field(repr=False)
    flags: tuple[str, ...] = ()

    def block(self, name: str) -> Any:
        """The parsed block ``name`` (raises ConfigError naming the known blocks)."""
        if name not in BLOCK_NAMES:
            raise ConfigError(_unknown_message("parameter block", name, BLOCK_NAMES))
        return self.blocks[name]

    @property
    def selection(self) -> Any:
        return self.blocks["selection"]

    @property
    def training(self) -> Any:
        return self.blocks["training"]

    @property
    def gate(self) -> Any:
        return self.blocks["gate"]

    @property
    def runpod(self) -> Any:
        return self.blocks["runpod"]

    @property
    def report(self) -> Any:
        return self.blocks["report"]

    @property
    def pipeline(self) -> Any:
        return self.blocks["pipeline"]

    def to_record(self) -> dict[str, Any]:
        """Plain JSON data from which :meth:`from_record` rebuilds these parameters exactly."""
        return {
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "seed": self.seed,
            "now": _iso(self.now),
            "flags": list(self.flags),
            "blocks": plain_data(self.raw),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RunParameters:
        """Rebuild the parameters a run started with (used to resume it unchanged)."""
        raw = copy.deepcopy(dict(record["blocks"]))
        return _build(
            name=record["name"],
            source=record.get("source", "record"),
            raw=raw,
            seed=int(record["seed"]),
            now=parse_now(record["now"]),
            flags=tuple(record.get("flags", ())),
        )

    def fingerprint(self, *, include_now: bool = True) -> str:
        """A sha256 of what decides the run's result; equal fingerprints mean the same run."""
        record = self.to_record()
        record.pop("source")
        record.pop("flags")
        if not include_now:
            record.pop("now")
        return hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()


def find_parameter_file(name_or_file: str, search_dirs: list[Path] | None = None) -> Path:
    """The YAML file for a set name (``monthly``) or a path.

    ``search_dirs`` are tried first (tests, private sets); then the shipped sets
    (``strategies.parameter_set_path``, ``$METAHUMAN_PARAMETERS_DIR`` overrides them), whose
    error lists the known names.
    """
    from metahuman_lib.strategies import parameter_set_path

    if not (name_or_file.endswith((".yaml", ".yml")) or "/" in name_or_file or os.sep in name_or_file):
        for folder in search_dirs or []:
            for suffix in (".yaml", ".yml"):
                path = Path(folder) / f"{name_or_file}{suffix}"
                if path.is_file():
                    return path.resolve()
    return parameter_set_path(name_or_file).resolve()


def load_parameter_set(
    name_or_file: str, *, now: datetime, search_dirs: list[Path] | None = None
) -> RunParameters:
    """Load one parameter set as it is, without flags."""
    path = find_parameter_file(name_or_file, search_dirs)
    name, raw, seed = _read_set(path)
    return _build(name=name, source=str(path), raw=raw, seed=seed, now=now, flags=())


def resolve_parameters(
    flags: CycleFlags, *, now: datetime | None = None, search_dirs: list[Path] | None = None
) -> RunParameters:
    """Apply the ``fine-tune-cycle`` flags to the parameter set they select.

    Args:
        flags: the flags as given.
        now: the default run time when ``--now`` is not given (UTC; the caller's clock).
        search_dirs: extra folders holding parameter sets.

    Raises:
        ConfigError: conflicting or out-of-range flags, an unknown set, or a bad block.
    """
    _check_flags(flags)
    run_now = parse_now(flags.now) if flags.now is not None else now
    if run_now is None:
        raise ConfigError("No run time: pass --now DATE (or let the command use the current time).")
    window_given = flags.days_recent is not None or flags.old_samples is not None
    set_name = flags.params or ("monthly" if flags.monthly or window_given else "foundation")
    path = find_parameter_file(set_name, search_dirs)
    name, raw, seed = _read_set(path)
    selection = dict(raw.get("selection") or {})
    if flags.monthly:
        selection[SELECTION_KEYS["days_recent"]] = MONTHLY_DAYS_RECENT
        selection[SELECTION_KEYS["old_samples"]] = MONTHLY_OLD_SAMPLES
    if window_given:
        _apply_window(selection, flags)
    _set_if_given(selection, SELECTION_KEYS["max_samples"], flags.max_samples)
    _set_if_given(selection, SELECTION_KEYS["mode"], flags.mode)
    raw["selection"] = selection
    if flags.base_model is not None:
        raw["training"] = {**(raw.get("training") or {}), TRAINING_KEYS["base_model"]: flags.base_model}
    if flags.seed is not None:
        seed = flags.seed
    if flags.smoke_test:
        raw["pipeline"] = {**(raw.get("pipeline") or {}), "smoke_test": True}
    return _build(name=name, source=str(path), raw=raw, seed=seed, now=run_now, flags=flags.given())


def parse_now(value: str | datetime) -> datetime:
    """A run time from ``--now``: an ISO date or date-time; naive values are taken as UTC."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(
                f"--now {text!r} is not a date: use ISO 8601, e.g. 2025-12-01 or 2025-12-01T09:00:00Z."
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def run_kind(selection: Mapping[str, Any]) -> str:
    """``update`` when the selection has a recent window, else ``foundation`` (all memories)."""
    days = selection.get(SELECTION_KEYS["days_recent"])
    return "foundation" if days is None else "update"


def _check_flags(flags: CycleFlags) -> None:
    """Refuse flags that contradict each other or make no sense, naming them."""
    window = [n for n, v in (("--days-recent", flags.days_recent), ("--old-samples", flags.old_samples))
              if v is not None]
    if flags.monthly and window:
        raise ConfigError(
            f"--monthly means --days-recent {MONTHLY_DAYS_RECENT} --old-samples {MONTHLY_OLD_SAMPLES}; "
            f"pass either --monthly or {' / '.join(window)}, not both."
        )
    if flags.monthly and flags.params is not None:
        raise ConfigError(
            f"--monthly selects the 'monthly' parameter set; pass either --monthly or --params "
            f"{flags.params}, not both (use --days-recent/--old-samples to change a set's window)."
        )
    for flag, value, minimum in (("--days-recent", flags.days_recent, 0),
                                 ("--old-samples", flags.old_samples, 0),
                                 ("--max", flags.max_samples, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise ConfigError(f"{flag} must be a whole number >= {minimum}, got {value!r}.")
    if flags.mode is not None and flags.mode not in MODES:
        raise ConfigError(_unknown_message("--mode", flags.mode, MODES))
    if flags.base_model is not None and not flags.base_model.strip():
        raise ConfigError("--base-model is empty: pass a Hugging Face id or a local model folder.")
    if flags.seed is not None and (isinstance(flags.seed, bool) or not isinstance(flags.seed, int)
                                   or flags.seed < 0):
        raise ConfigError(f"--seed must be a whole number >= 0, got {flags.seed!r}.")


def _apply_window(selection: dict[str, Any], flags: CycleFlags) -> None:
    """Set the recent window and old-sample count; a missing half takes the seed's default."""
    days_key, old_key = SELECTION_KEYS["days_recent"], SELECTION_KEYS["old_samples"]
    if selection.get(days_key) is None:  # a foundation set given a window: the seed's old default
        selection[old_key] = None
    if flags.days_recent is not None:
        selection[days_key] = flags.days_recent
    elif selection.get(days_key) is None:
        selection[days_key] = MONTHLY_DAYS_RECENT
    if flags.old_samples is not None:
        selection[old_key] = flags.old_samples
    elif selection.get(old_key) is None:
        selection[old_key] = MONTHLY_OLD_SAMPLES


def _set_if_given(block: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        block[key] = value


def _read_set(path: Path) -> tuple[str, dict[str, Any], int]:
    """Read a YAML set: (name, blocks as plain dicts, seed); unknown top-level keys raise."""
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"Parameter file {path} must hold a mapping of blocks, got {type(data).__name__}.")
    raw: dict[str, Any] = {}
    for key, value in data.items():
        if key in _TOP_LEVEL_SCALARS:
            continue
        if key not in BLOCK_NAMES:
            raise ConfigError(f"{path}: " + _unknown_message("parameter block", str(key),
                                                             BLOCK_NAMES + _TOP_LEVEL_SCALARS))
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{path}: block '{key}' must be a mapping, got {type(value).__name__}.")
        raw[key] = dict(value or {})
    seed = data.get("seed", (raw.get("selection") or {}).get(SELECTION_KEYS["seed"], 0))
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{path}: seed must be a whole number, got {seed!r}.")
    return str(data.get("name") or Path(path).stem), raw, seed


def _build(*, name: str, source: str, raw: dict[str, Any], seed: int, now: datetime,
           flags: tuple[str, ...]) -> RunParameters:
    """Parse every block with its owner's dataclass and freeze the result."""
    raw = {block: dict(raw.get(block) or {}) for block in BLOCK_NAMES}
    _inject_seed(raw, seed)
    blocks = {block: _parse_block(block, raw[block], name) for block in BLOCK_NAMES}
    selection = blocks["selection"]
    kind = run_kind(raw["selection"]) if not hasattr(selection, "is_foundation") else (
        "foundation" if selection.is_foundation else "update")
    return RunParameters(
        name=name,
        source=source,
        kind=kind,
        seed=seed,
        now=now,
        raw=_freeze(raw),
        blocks=MappingProxyType(blocks),
        flags=flags,
    )


def _inject_seed(raw: dict[str, dict[str, Any]], seed: int) -> None:
    """Give the run's seed to every block whose parser has a ``seed`` field."""
    for block, key in (("selection", SELECTION_KEYS["seed"]), ("training", TRAINING_KEYS["seed"])):
        parser = _parser(block)
        names = {f.name for f in dataclasses.fields(parser)} if parser is not None else set()
        if key in names or (parser is None and key in raw[block]):
            raw[block][key] = seed


def _parser(block: str) -> type:
    """The owner's dataclass for a block (imported lazily: the training config loads no torch)."""
    module_name, class_name = BLOCK_PARSERS[block].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def _parse_block(block: str, values: dict[str, Any], set_name: str) -> Any:
    values = copy.deepcopy(values)
    try:
        values = check_types(block, _parser(block), values)
        if block in BLOCK_BUILDERS:
            module_name, function_name = BLOCK_BUILDERS[block].split(":")
            return getattr(importlib.import_module(module_name), function_name)(values, name=set_name)
        parser = _parser(block)
        build = getattr(parser, "from_dict", None) or parser.from_mapping
        return build(values)
    except ConfigError as exc:
        raise ConfigError(f"parameters block '{block}': {exc}") from exc


def _freeze(raw: dict[str, dict[str, Any]]) -> Mapping[str, Any]:
    return MappingProxyType({k: MappingProxyType(copy.deepcopy(v)) for k, v in raw.items()})


def plain_data(value: Any) -> Any:
    """Mappings and tuples as plain dicts and lists (JSON-able), recursively."""
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _flag_name(field_name: str) -> str:
    return {"max_samples": "--max", "params": "--params"}.get(field_name, "--" + field_name.replace("_", "-"))


def _unknown_message(what: str, value: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(value, list(known), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"Unknown {what} {value!r}.{hint} Known: {', '.join(known) or '(none)'}."
