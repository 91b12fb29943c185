"""The exact software a run trains with: recorded from this environment, pinned on the pod, checked
by the trainer when it starts.

A rented pod used to ``pip install 'transformers>=4.45' ...``, so what trained was whatever those
packages' newest versions were that day. Now the versions tested here are recorded in the run's
manifest (``training.software``), the pod installs exactly them, and the trainer refuses to start
when what it imports differs.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from importlib import metadata

from metahuman_lib.errors import ConfigError

#: What the trainer imports to train, and the kernels it uses when present.
TRAINING_PACKAGES = ("transformers", "peft", "accelerate", "tokenizers", "safetensors", "huggingface-hub",
                     "liger-kernel", "bitsandbytes", "flash-attn")
#: What the trainer module needs besides (installed at the same versions as here).
RUNTIME_PACKAGES = ("numpy", "pandas", "orjson", "pyyaml", "filelock", "typer", "tqdm")


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def local_versions(packages: tuple[str, ...] = TRAINING_PACKAGES + RUNTIME_PACKAGES) -> dict[str, str]:
    """``{package: version}`` of the packages of this environment (the absent optional ones left out)."""
    return {name: version for name in packages if (version := installed_version(name)) is not None}


def pip_pins(versions: Mapping[str, str]) -> str:
    """``'transformers==5.24.0' 'peft==...'``: every package pinned to its recorded version, shell-quoted."""
    return " ".join(shlex.quote(f"{name}=={version}") for name, version in sorted(versions.items()))


def check_versions(expected: Mapping[str, str]) -> None:
    """Refuse to train when an imported training package is not the recorded version.

    Raises:
        ConfigError: one line naming every mismatch, and how to fix it.
    """
    wrong = [f"{name} {installed_version(name) or 'missing'} (recorded {version})"
             for name, version in sorted(expected.items())
             if name in TRAINING_PACKAGES and installed_version(name) != version]
    if wrong:
        raise ConfigError("This machine's training packages differ from the run's manifest: " + ", ".join(wrong)
                          + f"; install the recorded versions: pip install {pip_pins(expected)}")
