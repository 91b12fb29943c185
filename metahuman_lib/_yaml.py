"""YAML for parameter files: safe, and without aliases.

An alias (``*name``) repeats a node without copying it; nested aliases make a few hundred bytes
stand for billions of items (a "billion laughs" file), which ran a run to 4.6 GB and a
``MemoryError``. Parameter files never need them, so they are refused before anything is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from metahuman_lib.errors import ConfigError


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing anchors and aliases at the first one it meets."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed "
                              "in parameter files; write the values out.")
        return super().compose_node(parent, index)


def load_yaml(path: Path | str) -> Any:
    """The YAML document of ``path``; a one-line ConfigError names the file when it is not valid
    YAML or uses an alias."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)
    except ConfigError as exc:
        raise ConfigError(f"Parameter file {path}, {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"Parameter file {path} is not valid YAML: {' '.join(str(exc).split())}") from exc
