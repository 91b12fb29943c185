"""A Modelfile per registered version, and ``ollama create`` (or the exact commands to run).

Ollama imports (spec section 7):

- a full fine-tune: ``FROM /path/to/output/model`` (a safetensors folder);
- a LoRA adapter: ``FROM <the base model>`` plus ``ADAPTER /path/to/output/adapter``. The base must
  be the model the adapter was trained on. Older Ollama versions accepted adapters only for Llama,
  Mistral and Gemma, so :func:`merge_lora` (PEFT ``merge_and_unload``) writes a merged folder that
  imports as a full model anywhere.

``TEMPLATE`` is the ChatML template the trainer formats samples with, and ``SYSTEM`` must be the
system prompt used in training; the builder takes it as an argument (the curation step owns it).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metahuman_lib.errors import ConfigError, MissingExtraError, WorkbenchError

# ChatML, as the trainer renders samples (spec section 5): system, then each turn, then the
# assistant's opening tag for the answer to be generated.
CHATML_TEMPLATE = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)
STOP_TOKENS = ("<|im_start|>", "<|im_end|>")
DEFAULT_PARAMETERS: tuple[tuple[str, str | int | float], ...] = (
    ("temperature", 0.7),
    ("top_p", 0.9),
    ("num_ctx", 2048),
)
SMOKE_PROMPT = "How are you feeling today?"

# Hub ids of bases the workbench trains on, and the Ollama library names of the same weights,
# for ``FROM`` under an ``ADAPTER``. Anything else needs ``ollama_base`` or a merged export.
OLLAMA_BASE_NAMES = {
    "Qwen/Qwen3-14B": "qwen3:14b",
    "Qwen/Qwen3-8B": "qwen3:8b",
    "Qwen/Qwen3-4B": "qwen3:4b",
    "Qwen/Qwen3-1.7B": "qwen3:1.7b",
    "Qwen/Qwen3-0.6B": "qwen3:0.6b",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2.5:7b-instruct",
    "Qwen/Qwen2.5-14B-Instruct": "qwen2.5:14b-instruct",
}


def training_system_prompt(username: str, mode: str | None = "emulation") -> str:
    """The system prompt the samples were trained with (curation owns the text, defect 6).

    Chat through Ollama is the persona talking with people, so the default is the ``emulation``
    mode's prompt; a version trained with a mode filter should pass that mode.
    """
    from metahuman_lib.curation import system_prompt

    return system_prompt(username, mode)


def ollama_model_name(username: str, version: int) -> str:
    """The Ollama name of a version, ``<user>-v<N>`` (lowercase: Ollama names are)."""
    return f"{username.lower()}-v{int(version)}"


def _quote(text: str) -> str:
    if '"""' in text:
        raise ConfigError('A Modelfile value cannot contain three double quotes (""").')
    return f'"""{text}"""'


@dataclass(frozen=True)
class ModelfileSpec:
    """What goes into one Modelfile."""

    from_: str
    system: str
    adapter: str | None = None
    template: str = CHATML_TEMPLATE
    parameters: tuple[tuple[str, str | int | float], ...] = DEFAULT_PARAMETERS
    stop: tuple[str, ...] = STOP_TOKENS

    def render(self) -> str:
        """The Modelfile text."""
        lines = [f"FROM {self.from_}"]
        if self.adapter:
            lines.append(f"ADAPTER {self.adapter}")
        lines.append(f"TEMPLATE {_quote(self.template)}")
        lines.append(f"SYSTEM {_quote(self.system)}")
        lines += [f"PARAMETER {name} {value}" for name, value in self.parameters]
        lines += [f'PARAMETER stop "{token}"' for token in self.stop]
        return "\n".join(lines) + "\n"


def _base_for_adapter(base_model: str | None, root: Path, ollama_base: str | None) -> str:
    if ollama_base:
        return ollama_base
    if not base_model:
        raise ConfigError("The version records no base model; pass ollama_base (e.g. --ollama-base qwen3:14b).")
    local = Path(base_model) if Path(base_model).is_absolute() else root / base_model
    if local.is_dir():
        return str(local.resolve())
    if base_model in OLLAMA_BASE_NAMES:
        return OLLAMA_BASE_NAMES[base_model]
    raise ConfigError(
        f"No Ollama name is known for base model {base_model!r}; pass ollama_base "
        "(the Ollama model with the same weights, e.g. --ollama-base qwen3:14b) or export merged (--merge)."
    )


def modelfile_for_version(record: dict[str, Any], *, root: Path, system: str,
                          ollama_base: str | None = None, merged_dir: Path | None = None) -> ModelfileSpec:
    """The Modelfile of a registry version record.

    Args:
        record: a version from :mod:`metahuman_lib.registry` (``output_kind``, ``output_path``,
            ``base_model``; imported MetaHuman OS versions are full models).
        root: the MetaHuman OS root the record's paths are relative to.
        system: the system prompt the model was trained with.
        ollama_base: the Ollama model to put under a LoRA adapter (default: the local base
            folder, or the Ollama name of a known hub id).
        merged_dir: a merged LoRA folder (:func:`merge_lora`); imported as a full model.
    """
    output = record.get("output_path")
    if not output:
        raise WorkbenchError(f"v{record.get('version')} has no model output to load into Ollama.")
    output_path = Path(output) if Path(output).is_absolute() else Path(root) / output
    if merged_dir is not None:
        return ModelfileSpec(from_=str(Path(merged_dir).resolve()), system=system)
    if record.get("output_kind") == "adapter" or record.get("method") == "lora":
        base = _base_for_adapter(record.get("base_model"), Path(root), ollama_base)
        return ModelfileSpec(from_=base, adapter=str(output_path.resolve()), system=system)
    return ModelfileSpec(from_=str(output_path.resolve()), system=system)


def write_modelfile(spec: ModelfileSpec, path: Path) -> Path:
    """Write the Modelfile (for a run, ``<run folder>/Modelfile``)."""
    from metahuman_lib._io import atomic_write_bytes

    atomic_write_bytes(Path(path), spec.render().encode("utf-8"))
    return Path(path)


def merge_lora(adapter_dir: Path, base_model: str, out_dir: Path) -> Path:
    """Merge a LoRA adapter into its base (PEFT ``merge_and_unload``) and save safetensors + tokenizer.

    The merged folder imports into any Ollama version as a full model (``FROM <folder>``).
    """
    try:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingExtraError("train", exc.name or "peft") from exc
    base = AutoModelForCausalLM.from_pretrained(base_model)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    out_dir = Path(out_dir)
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer_source = adapter_dir if (Path(adapter_dir) / "tokenizer_config.json").is_file() else base_model
    try:
        AutoTokenizer.from_pretrained(str(tokenizer_source)).save_pretrained(str(out_dir))
    except (OSError, ValueError) as exc:
        raise WorkbenchError(f"Merged weights saved to {out_dir}, but no tokenizer could be copied "
                             f"from {tokenizer_source} ({exc}); copy it there by hand.") from exc
    return out_dir


@dataclass(frozen=True)
class OllamaResult:
    """The commands for a version, and what happened when they were run (if Ollama was found)."""

    name: str
    commands: tuple[str, ...]
    ran: bool
    outputs: tuple[str, ...] = ()
    smoke_answer: str | None = None


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def ollama_commands(name: str, modelfile: Path, smoke_prompt: str = SMOKE_PROMPT) -> tuple[list[str], list[str]]:
    """The two commands: ``ollama create NAME -f MODELFILE`` and the smoke prompt ``ollama run``."""
    return (["ollama", "create", name, "-f", str(modelfile)], ["ollama", "run", name, smoke_prompt])


def create_in_ollama(name: str, modelfile: Path, *, smoke_prompt: str = SMOKE_PROMPT,
                     ollama: str | None = None, runner: Runner = subprocess.run,
                     timeout_s: float = 1800.0) -> OllamaResult:
    """Run ``ollama create`` and a smoke prompt when an ``ollama`` binary is on PATH.

    Without one, nothing runs and the result carries the exact commands to run by hand.

    Raises:
        WorkbenchError: ``ollama create`` or the smoke prompt failed, with Ollama's own message.
    """
    create, smoke = ollama_commands(name, modelfile, smoke_prompt)
    printable = tuple(subprocess.list2cmdline(c) for c in (create, smoke))
    binary = ollama or shutil.which("ollama")
    if binary is None:
        return OllamaResult(name=name, commands=printable, ran=False)
    outputs = []
    for command in (create, smoke):
        done = runner([binary, *command[1:]], capture_output=True, text=True, timeout=timeout_s, check=False)
        outputs.append((done.stdout or "") + (done.stderr or ""))
        if done.returncode != 0:
            raise WorkbenchError(f"'{subprocess.list2cmdline(command)}' failed (exit {done.returncode}): "
                                 f"{(done.stderr or done.stdout or '').strip()[:500]}")
    return OllamaResult(name=name, commands=printable, ran=True, outputs=tuple(outputs),
                        smoke_answer=outputs[-1].strip())


def export_version(record: dict[str, Any], *, username: str, root: Path, system: str,
                   modelfile_path: Path, ollama_base: str | None = None,
                   merged_dir: Path | None = None, run: bool = True,
                   smoke_prompt: str = SMOKE_PROMPT) -> OllamaResult:
    """Write a version's Modelfile and load it into Ollama (or return the commands to do so)."""
    spec = modelfile_for_version(record, root=root, system=system, ollama_base=ollama_base, merged_dir=merged_dir)
    write_modelfile(spec, modelfile_path)
    name = ollama_model_name(username, record["version"])
    if not run:
        create, smoke = ollama_commands(name, modelfile_path, smoke_prompt)
        return OllamaResult(name, tuple(subprocess.list2cmdline(c) for c in (create, smoke)), ran=False)
    return create_in_ollama(name, modelfile_path, smoke_prompt=smoke_prompt)


def default_modelfile_path(record: dict[str, Any], root: Path) -> Path:
    """Where a version's Modelfile goes: its run folder, or beside an imported model's folder."""
    if record.get("run_dir"):
        return Path(root) / record["run_dir"] / "Modelfile"
    output = Path(record["output_path"])
    output = output if output.is_absolute() else Path(root) / output
    return output.parent / "Modelfile"


def export_run(profile: Any, run_dir: str | Path, *, run: bool = False, ollama_base: str | None = None,
               smoke_prompt: str = SMOKE_PROMPT) -> dict[str, Any]:
    """The Ollama step of a run: write ``<run folder>/Modelfile`` when its version is current.

    Returns what happened in words and the commands, never raising for what is a normal outcome
    (nothing to export, a rejected candidate, a base model with no known Ollama name). ``run``
    also runs ``ollama create`` and the smoke prompt when an ``ollama`` binary is on PATH.
    """
    from metahuman_lib import registry

    if not run_dir:
        return {"modelfile": None, "note": "no run_dir: nothing to export"}
    label = Path(run_dir).name
    state = registry.profile_state(profile)
    record = next((r for r in state["versions"] if r.get("run_label") == label), None)
    if record is None or state["aliases"].get("current") != record["version"]:
        return {"modelfile": None, "note": f"run {label} is not the current version; no Modelfile written"}
    modelfile = Path(run_dir) / "Modelfile"
    system = training_system_prompt(profile.username, record.get("mode_filter") or "emulation")
    try:
        result = export_version(record, username=profile.username, root=profile.root, system=system,
                                modelfile_path=modelfile, ollama_base=ollama_base, run=run,
                                smoke_prompt=smoke_prompt)
    except ConfigError as exc:
        return {"modelfile": None, "note": str(exc)}
    return {"modelfile": str(modelfile), "name": result.name, "ran": result.ran,
            "commands": list(result.commands), "smoke_answer": result.smoke_answer}
