"""A Modelfile per registered version, and ``ollama create`` (or the exact commands to run).

Ollama imports (spec section 7):

- a full fine-tune: ``FROM /path/to/output/model`` (a safetensors folder);
- a LoRA adapter: ``FROM <the base model>`` plus ``ADAPTER /path/to/output/adapter``. The base must
  be the model the adapter was trained on. Older Ollama versions accepted adapters only for Llama,
  Mistral and Gemma, so :func:`merge_lora` (PEFT ``merge_and_unload``) writes a merged folder that
  imports as a full model anywhere.

``TEMPLATE`` is the Go template of the version's chat format (:mod:`metahuman_lib.chat_formats`,
the family the trainer formatted with, read from the run's ``prompt_format.json``), so Ollama serves
exactly the prompt the model learned; ``PARAMETER stop`` lists its end-of-turn markers. ``SYSTEM``
is the system prompt of the mode the version was trained for (the curation step owns the text).
A full fine-tune can also be converted to a Q8_0 GGUF, as MetaHuman OS does, where llama.cpp's
``convert_hf_to_gguf.py`` is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metahuman_lib import chat_formats
from metahuman_lib.chat_formats import CHATML, ChatFormat
from metahuman_lib.errors import ConfigError, MissingExtraError, WorkbenchError

DEFAULT_PARAMETERS: tuple[tuple[str, str | int | float], ...] = (
    ("temperature", 0.7),
    ("top_p", 0.9),
    ("num_ctx", 2048),
)
SMOKE_PROMPT = "How are you feeling today?"

GGUF_QUANTIZATION = "Q8_0"

# Hub ids of bases the workbench trains on, and the Ollama library names of the same weights,
# for ``FROM`` under an ``ADAPTER``. Anything else needs ``ollama_base`` or a merged export.
OLLAMA_BASE_NAMES = {
    **{f"Qwen/Qwen3-{size}": f"qwen3:{size.lower()}" for size in ("0.6B", "1.7B", "4B", "8B", "14B", "32B")},
    **{f"Qwen/Qwen3.5-{size}": f"qwen3.5:{size.lower()}" for size in ("0.8B", "2B", "4B", "9B", "27B")},
    "unsloth/Qwen3.5-9B": "qwen3.5:9b",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2.5:7b-instruct",
    "Qwen/Qwen2.5-14B-Instruct": "qwen2.5:14b-instruct",
    "meta-llama/Meta-Llama-3-8B-Instruct": "llama3:8b",
    "meta-llama/Llama-3.1-8B-Instruct": "llama3.1:8b",
    "meta-llama/Meta-Llama-3.1-8B-Instruct": "llama3.1:8b",
    "meta-llama/Llama-3.1-70B-Instruct": "llama3.1:70b",
    "meta-llama/Llama-3.2-1B-Instruct": "llama3.2:1b",
    "meta-llama/Llama-3.2-3B-Instruct": "llama3.2:3b",
    "meta-llama/Llama-3.3-70B-Instruct": "llama3.3:70b",
    **{f"google/gemma-2-{size}-it": f"gemma2:{size}" for size in ("2b", "9b", "27b")},
    **{f"google/gemma-3-{size}-it": f"gemma3:{size}" for size in ("1b", "4b", "12b", "27b")},
    "mistralai/Mistral-7B-Instruct-v0.3": "mistral:7b",
    "mistralai/Mistral-Nemo-Instruct-2407": "mistral-nemo:12b",
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
    """What goes into one Modelfile: the weights, the version's chat format and its system prompt."""

    from_: str
    system: str
    adapter: str | None = None
    fmt: ChatFormat = CHATML
    parameters: tuple[tuple[str, str | int | float], ...] = DEFAULT_PARAMETERS

    def render(self) -> str:
        """The Modelfile text."""
        lines = [f"FROM {self.from_}"]
        if self.adapter:
            lines.append(f"ADAPTER {self.adapter}")
        lines.append(f"TEMPLATE {_quote(self.fmt.ollama_template)}")
        lines.append(f"SYSTEM {_quote(self.system)}")
        lines += [f"PARAMETER {name} {value}" for name, value in self.parameters]
        lines += [f'PARAMETER stop "{token}"' for token in self.fmt.stop]
        return "\n".join(lines) + "\n"


def _tokenizer_template(folder: Path) -> str | None:
    """The chat template saved in a model, adapter or tokenizer folder, if any."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.is_file():
        import orjson

        try:
            return orjson.loads(config.read_bytes()).get("chat_template")
        except (orjson.JSONDecodeError, AttributeError):
            return None
    return None


def version_chat_format(record: dict[str, Any], root: Path) -> ChatFormat:
    """The chat format a version was trained in: its run's ``prompt_format.json``, else the chat
    template saved with its weights (imported versions), else ChatML (MetaHuman OS's own format)."""
    root = Path(root)
    if record.get("run_dir"):
        recorded = root / record["run_dir"] / "prompt_format.json"
        if recorded.is_file():
            import orjson

            return chat_formats.by_name(orjson.loads(recorded.read_bytes())["chat_format"]["name"])
    for stored in (record.get("output_path"), record.get("base_model")):
        if stored:
            folder = Path(stored) if Path(stored).is_absolute() else root / stored
            template = _tokenizer_template(folder) if folder.is_dir() else None
            if template:
                return chat_formats.detect(template, where=str(folder))
    return CHATML


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
    fmt = version_chat_format(record, Path(root))
    if merged_dir is not None:
        return ModelfileSpec(from_=str(Path(merged_dir).resolve()), system=system, fmt=fmt)
    if record.get("output_kind") == "adapter" or record.get("method") == "lora":
        base = _base_for_adapter(record.get("base_model"), Path(root), ollama_base)
        return ModelfileSpec(from_=base, adapter=str(output_path.resolve()), system=system, fmt=fmt)
    return ModelfileSpec(from_=str(output_path.resolve()), system=system, fmt=fmt)


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


def find_gguf_converter() -> list[str] | None:
    """llama.cpp's ``convert_hf_to_gguf.py``: under ``$LLAMA_CPP_DIR``, or on PATH; None when absent."""
    import os
    import sys

    folder = os.environ.get("LLAMA_CPP_DIR")
    if folder and (Path(folder) / "convert_hf_to_gguf.py").is_file():
        return [sys.executable, str(Path(folder) / "convert_hf_to_gguf.py")]
    for name in ("convert_hf_to_gguf.py", "convert_hf_to_gguf", "convert-hf-to-gguf"):
        found = shutil.which(name)
        if found:
            return [found]
    return None


def convert_to_gguf(model_dir: Path, out_file: Path, converter: list[str], *,
                    runner: Runner = subprocess.run, timeout_s: float = 7200.0) -> Path:
    """A Q8_0 GGUF of a full model folder, as MetaHuman OS makes, written under a temporary name
    and renamed, so a cut conversion never leaves a file that looks whole.

    Raises:
        WorkbenchError: the converter failed, with its own last words.
    """
    out_file = Path(out_file)
    partial = out_file.with_name(f".{out_file.name}.partial")
    command = [*converter, str(model_dir), "--outtype", GGUF_QUANTIZATION.lower(), "--outfile", str(partial)]
    done = runner(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise WorkbenchError(f"GGUF conversion of {model_dir} failed (exit {done.returncode}): "
                             f"{(done.stderr or done.stdout or '').strip()[-500:]}")
    partial.replace(out_file)
    return out_file


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
    gguf = gguf_for_full_model(profile, record)
    try:
        result = export_version(record, username=profile.username, root=profile.root, system=system,
                                modelfile_path=modelfile, ollama_base=ollama_base, run=run,
                                smoke_prompt=smoke_prompt)
    except ConfigError as exc:
        return {"modelfile": None, "note": str(exc)}
    return {"modelfile": str(modelfile), "name": result.name, "ran": result.ran,
            "commands": list(result.commands), "smoke_answer": result.smoke_answer, "gguf": gguf}


def gguf_for_full_model(profile: Any, record: dict[str, Any]) -> str:
    """Convert a full fine-tune to ``output/model-Q8_0.gguf`` and record ``gguf_path``, where llama.cpp
    is installed; otherwise say why not (a LoRA adapter is served on its base and needs none)."""
    from metahuman_lib import registry

    output = record.get("output_path")
    if not output or (record.get("output_kind") or Path(output).name) != "model":
        return "not needed: a LoRA adapter is served on its base"
    converter = find_gguf_converter()
    if converter is None:
        return "skipped: llama.cpp's convert_hf_to_gguf.py not found (set LLAMA_CPP_DIR to convert)"
    model_dir = Path(profile.root) / output
    out = convert_to_gguf(model_dir, model_dir.parent / f"model-{GGUF_QUANTIZATION}.gguf", converter)
    registry.set_gguf_path(profile, record["version"], out, now=registry.utc_now())
    return str(out)
