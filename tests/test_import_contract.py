"""The core library works without the ``train`` extra, and the layer contract holds."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN_EXTRA = ("torch", "transformers", "tokenizers", "safetensors", "peft", "accelerate")
CORE_MODULES = ("metahuman_lib", "metahuman_lib.profile", "metahuman_lib.memory", "metahuman_lib.demo",
                "metahuman_lib.samples", "metahuman_lib.runfolder", "metahuman_lib.cli")

_BLOCKER = f"""
import sys
BLOCKED = {TRAIN_EXTRA!r}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked for the test: {{name}}")
        return None

sys.meta_path.insert(0, Blocker())
import importlib
for module in {CORE_MODULES!r}:
    importlib.import_module(module)
loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
print("loaded:", loaded)
from metahuman_lib.demo import generate_demo_files
print(len(generate_demo_files(memories=5, months=1)))
"""


def _env() -> dict[str, str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def test_core_imports_without_the_train_extra() -> None:
    result = subprocess.run([sys.executable, "-c", _BLOCKER], capture_output=True, text=True,
                            env=_env(), cwd=REPO, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["loaded: []", "15"]


def test_blocker_really_blocks() -> None:
    code = _BLOCKER.replace(f"for module in {CORE_MODULES!r}:", "for module in ('torch',):")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=_env(), cwd=REPO, timeout=120, check=False)
    assert result.returncode == 1 and "blocked for the test: torch" in result.stderr


def _existing(modules: list[str]) -> list[str]:
    """Modules of the contract that exist in this checkout (others land with later branches)."""
    return [m for m in modules if not m.startswith("metahuman_lib.") or importlib.util.find_spec(m)]


def test_import_linter_contracts_hold(tmp_path: Path) -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    lines = ["[tool.importlinter]", f'root_package = "{config["root_package"]}"',
             f"include_external_packages = {str(config['include_external_packages']).lower()}"]
    layers = next(c for c in config["contracts"] if c["name"].startswith("Pure data layers"))
    assert {"metahuman_lib.memory", "metahuman_lib.demo"} <= set(_existing(layers["source_modules"]))
    assert any(c["source_modules"] == ["metahuman_lib.reports"] and "metahuman_lib.pipeline" in c["forbidden_modules"]
               for c in config["contracts"])  # no pipeline <-> reports import circle
    for contract in config["contracts"]:
        sources = _existing(contract["source_modules"])
        lines += ["", "[[tool.importlinter.contracts]]", f'name = "{contract["name"]}"',
                  f'type = "{contract["type"]}"', f"source_modules = {sources!r}",
                  f"forbidden_modules = {_existing(contract['forbidden_modules'])!r}"]
    (tmp_path / "importlinter.toml").write_text("\n".join(lines).replace("'", '"') + "\n")
    executable = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    result = subprocess.run([executable, "--config", str(tmp_path / "importlinter.toml")],
                            capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(config['contracts'])} kept, 0 broken" in result.stdout


def test_public_surface_exports_the_loader_and_demo() -> None:
    import metahuman_lib

    for name in ("load_memories", "LoadReport", "SkippedFile", "SKIP_REASONS", "MemorySummary",
                 "summarize_memories", "write_demo_profile", "resolve_profile", "DEMO_END"):
        assert name in metahuman_lib.__all__, name
    assert all(hasattr(metahuman_lib, name) for name in metahuman_lib.__all__)
