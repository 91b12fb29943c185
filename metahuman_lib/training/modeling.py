"""Loading the model a run starts from, and saving what it produced.

Building on the previous version (defect 8 of MetaHuman OS: it silently did not happen):

* parent ``adapter`` + method ``lora``: load ``base_model``, then the parent adapter *as
  trainable*, and keep training that same adapter. The new adapter is the old one plus this
  month's update, still on the same base, so Ollama's ``FROM base`` + ``ADAPTER`` keeps working and
  the lineage stays one adapter per base. Its rank/alpha/targets come from the parent adapter.
* parent ``adapter`` + method ``full``: load the base, merge the adapter into it, fine-tune all.
* parent ``model`` (a full checkpoint): load it as the model; ``lora`` adds a new adapter on it.
* no parent, or parent ``base``: start from ``base_model``.

The run record names exactly what was loaded, with the sha256 of the parent weights; a parent
whose checksum differs from the one in ``train_config.json`` is refused.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from metahuman_lib._io import sha256_file, sha256_tree
from metahuman_lib.errors import ConfigError, MissingExtraError
from metahuman_lib.training.config import TrainConfig

WEIGHT_SUFFIXES = (".safetensors", ".bin")
#: The projections ``auto`` adapts, by the names the families use: attention, Qwen3.5's and
#: Qwen3-Next's linear attention (Gated DeltaNet), and the MLP.
AUTO_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "in_proj_qkv", "in_proj_z", "in_proj_qkvz",
                     "out_proj", "gate_proj", "up_proj", "down_proj")


def weights_sha256(folder: Path) -> str:
    """One sha256 over the weight files of a model or adapter folder (name and content, sorted).

    Only weights count, so re-saving a tokenizer or README does not change a version's identity.
    """
    import hashlib

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise ConfigError(f"No weight files (*.safetensors) in {folder}: is this an adapter or model folder?")
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0" + sha256_file(file).encode())
    return digest.hexdigest()


def resolve_precision(precision: str) -> str:
    """``auto`` -> bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on the CPU."""
    import torch

    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def model_dtype(method: str, precision: str) -> Any:
    """Weights dtype: LoRA keeps the frozen base in the compute dtype; a full fine-tune keeps fp32
    master weights and computes under bf16/fp16 autocast, so small updates are not rounded away."""
    import torch

    if method == "lora" and precision == "bf16":
        return torch.bfloat16
    if method == "lora" and precision == "fp16":
        return torch.float16
    return torch.float32


def linear_layer_names(model: Any) -> list[str]:
    """Leaf names of the linear layers inside the model's blocks (never the head or embeddings)."""
    import torch

    names = set()
    for full_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".layers." in f".{full_name}":
            names.add(full_name.rsplit(".", 1)[-1])
    return sorted(names)


def resolve_lora_targets(model: Any, requested: tuple[str, ...] | list[str]) -> list[str]:
    """The module names LoRA adapts on this architecture.

    ``auto`` takes every projection of :data:`AUTO_LORA_TARGETS` the model has (all linear layers of
    its blocks when it has none of them). Named targets must exist.

    Raises:
        ConfigError: a named target the model does not have, listing the ones it has.
    """
    available = linear_layer_names(model)
    if list(requested) == ["auto"]:
        chosen = [name for name in AUTO_LORA_TARGETS if name in available]
        return chosen or available
    missing = [name for name in requested if name not in available]
    if missing:
        raise ConfigError(f"training.lora_target_modules names {', '.join(missing)}, which "
                          f"{type(model).__name__} does not have; its linear layers are: {', '.join(available)} "
                          "(or use auto).")
    return list(requested)


def has_linear_attention(model: Any) -> bool:
    """True for hybrid models (Qwen3.5, Qwen3-Next) whose recurrent layers keep state along a row."""
    config = getattr(model, "config", None)
    layer_types = getattr(getattr(config, "text_config", None) or config, "layer_types", None) or ()
    return "linear_attention" in layer_types


def same_model(first: str | None, second: str | None) -> bool:
    """Two base-model references name the same model: equal ids, or the same local folder."""
    if not first or not second:
        return False
    if first == second:
        return True
    a, b = Path(first), Path(second)
    return a.is_dir() and b.is_dir() and a.resolve() == b.resolve()


def parent_record(config: TrainConfig, run_dir: Path | None = None) -> dict[str, Any] | None:
    """What the run builds on, with checksums; raises when the parent is missing or changed.

    A relative ``parent.path`` is taken relative to the run folder, so a backend can ship the
    parent inside the run folder (e.g. ``parent/``) to a machine where absolute paths differ.
    """
    parent = config.parent
    if parent is None or parent.kind == "base":
        return None
    folder = Path(parent.path)
    if not folder.is_absolute() and run_dir is not None:
        folder = Path(run_dir) / folder
    if not folder.is_dir():
        raise ConfigError(f"Parent version {parent.version} not found at {folder}: the run would not "
                          "build on it. Restore the folder or reset the registry to the original base.")
    record = {"version": parent.version, "kind": parent.kind, "path": str(folder),
              "weights_sha256": weights_sha256(folder), "tree_sha256": sha256_tree(folder)}
    if parent.sha256 and parent.sha256 not in (record["weights_sha256"], record["tree_sha256"]):
        raise ConfigError(f"Parent version {parent.version} at {folder} has sha256 "
                          f"{record['weights_sha256']}, but train_config.json expects {parent.sha256}: "
                          "the parent changed since it was registered.")
    if parent.kind == "adapter":
        adapter_base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
        record["adapter_base_model"] = adapter_base
        if adapter_base and not same_model(adapter_base, config.base_model):
            raise ConfigError(f"Parent adapter {folder} was trained on {adapter_base!r}, but base_model is "
                              f"{config.base_model!r}: set base_model to the adapter's base.")
    return record


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft still reads ``is_gradient_checkpointing``, which transformers 5 deprecates loudly."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def load_model(config: TrainConfig, precision: str, parent: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """The model this run trains (with a trainable adapter for LoRA), and a record of what was loaded.

    Args:
        parent: the checked :func:`parent_record` of ``config.parent`` (None for a foundation run).
    """
    try:
        import peft  # noqa: F401
        from transformers import AutoModelForCausalLM
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise MissingExtraError("train", exc.name or "transformers") from exc

    dtype = model_dtype(config.method, precision)
    on_full_parent = bool(parent and parent["kind"] == "model")
    source = parent["path"] if on_full_parent else config.base_model
    from metahuman_lib.training.lean import attention_implementation

    attention = attention_implementation()
    extra = {"attn_implementation": attention} if attention == "flash_attention_2" else {}
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **extra)
    # a LoRA on a full-model parent sits on that parent: it is this version's base
    base = str(config.parent.path) if on_full_parent and config.method == "lora" else config.base_model
    loaded: dict[str, Any] = {"base_model": base, "weights_from": source,
                              "dtype": str(dtype).replace("torch.", ""), "parent": parent}
    with _quiet_peft():
        model = _attach_adapter(model, config, parent, loaded)
    if config.gradient_checkpointing:
        enable_checkpointing(model)
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    return model, loaded


def _attach_adapter(model: Any, config: TrainConfig, parent: dict[str, Any] | None, loaded: dict[str, Any]) -> Any:
    from peft import LoraConfig, PeftModel, get_peft_model

    if parent and parent["kind"] == "adapter":
        if config.method == "lora":
            model = PeftModel.from_pretrained(model, parent["path"], is_trainable=True)
            loaded["adapter"] = "continued_parent_adapter"
        else:
            model = PeftModel.from_pretrained(model, parent["path"]).merge_and_unload()
            loaded["adapter"] = "parent_adapter_merged_into_base"
    elif config.method == "lora":
        targets = resolve_lora_targets(model, config.lora_target_modules)
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=targets, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
        loaded["adapter"] = "new_adapter"
    if config.method == "lora":
        # the adapter names the base it sits on as the lineage names it, so the next run can check it
        model.peft_config["default"].base_model_name_or_path = loaded["base_model"]
    return model


def enable_checkpointing(model: Any) -> None:
    """Recompute each decoder layer in the backward pass (non-reentrant, as PEFT needs)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.2x and later
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def lora_settings(model: Any) -> dict[str, Any] | None:
    """The LoRA settings the model really trains with (from the parent adapter when continued)."""
    peft_config = getattr(model, "peft_config", None)
    if not peft_config:
        return None
    lora = peft_config["default"]
    return {"r": lora.r, "alpha": lora.lora_alpha, "dropout": lora.lora_dropout,
            "target_modules": sorted(lora.target_modules)}


def save_output(model: Any, tokenizer: Any, run_dir: Path, method: str) -> Path:
    """Save only the final weights, tokenizer and config under ``output/adapter`` or ``output/model``.

    No optimizer state and no checkpoint ever lands here (defect 10), so a download of
    ``output/`` is exactly what the registry needs.
    """
    out = Path(run_dir) / "output" / ("adapter" if method == "lora" else "model")
    out.mkdir(parents=True, exist_ok=True)
    with _quiet_peft():
        model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "README.md").unlink(missing_ok=True)  # peft's empty model card template
    return out


def count_parameters(model: Any) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
