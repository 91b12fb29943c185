"""``metahuman registry ...``: the model registry, its lineage and backups, and Ollama export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from metahuman_lib import ollama as _ollama
from metahuman_lib import registry as _registry
from metahuman_lib.profile import Profile, resolve_root

app = typer.Typer(help="Model versions: lineage, promotion, rollback, backups, Ollama export.",
                  no_args_is_help=True)

_USER = typer.Option(..., "--username", "-u", help="Profile name under profiles/.")
_ROOT = typer.Option(None, "--root", help="MetaHuman OS root (default: $METAHUMAN_ROOT or the current folder).")


def _profile(username: str, root: str | None) -> Profile:
    return Profile.open(username, root)


def _registry_path(root: str | None) -> Path:
    return resolve_root(root) / "etc" / "model-registry.json"


def _echo_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode())


@app.command("show")
def show(username: str = _USER, root: str = _ROOT) -> None:
    """Which model the next run builds on, the aliases and counts by status."""
    _echo_json(_registry.show(_profile(username, root)))


@app.command("history")
def history(username: str = _USER, root: str = _ROOT) -> None:
    """Every version of the profile, oldest first."""
    frame = _registry.history(_profile(username, root))
    columns = ["version", "status", "aliases", "parent_version", "run_label", "samples_train",
               "recent_loss_after", "old_change_pct", "weights_present"]
    typer.echo("no versions yet" if frame.empty else frame[columns].to_string(index=False))


@app.command("lineage")
def lineage(version: str = typer.Argument(None, help="Start version (default: current)."),
            username: str = _USER, root: str = _ROOT) -> None:
    """The chain from a version back to the original base model."""
    start = _registry.parse_version(version) if version else None
    for link in _registry.lineage(_profile(username, root), start):
        name = f"v{link['version']}" if link["version"] is not None else "original"
        typer.echo(f"{name:>9}  {link['status']:<9}  {link['model']}")


@app.command("register")
def register(run_dir: Annotated[Path, typer.Argument(help="A finished run folder of this profile.")],
             username: str = _USER, root: str = _ROOT) -> None:
    """Register a complete, verified run as the next version (a candidate)."""
    record = _registry.register(_profile(username, root), run_dir, now=_registry.utc_now())
    typer.echo(f"registered {run_dir.name} as v{record['version']} ({record['status']})")


@app.command("promote")
def promote(version: str = typer.Argument(...), force: bool = typer.Option(False, help="Promote without a passed gate."),
            username: str = _USER, root: str = _ROOT) -> None:
    """Make a version current (the model the next run builds on)."""
    record = _registry.promote(_profile(username, root), _registry.parse_version(version),
                               now=_registry.utc_now(), force=force)
    typer.echo(f"v{record['version']} is now current: {record['output_path']}")


@app.command("rollback")
def rollback(version: str = typer.Argument(None, help="Version to return to (default: previous)."),
             username: str = _USER, root: str = _ROOT) -> None:
    """Make an earlier promoted version current again."""
    target = _registry.parse_version(version) if version else None
    record = _registry.rollback(_profile(username, root), target, now=_registry.utc_now())
    typer.echo(f"rolled back: v{record['version']} is now current")


@app.command("reset")
def reset(username: str = _USER, root: str = _ROOT) -> None:
    """Point current back at the original base model, keeping the history (resetToOriginalBase)."""
    summary = _registry.reset(_profile(username, root), now=_registry.utc_now())
    typer.echo(f"reset: the next run builds on {summary['original_base_model']}")


@app.command("prune")
def prune(keep: int = typer.Option(_registry.DEFAULT_KEEP, help="Versions with weights to keep."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be removed."),
          username: str = _USER, root: str = _ROOT) -> None:
    """Delete the weights of old versions; never current, its parent or previous."""
    result = _registry.prune(_profile(username, root), keep=keep, now=_registry.utc_now(), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    removed = ", ".join(f"v{v}" for v in result.removed) or "nothing"
    typer.echo(f"{verb} the weights of {removed} ({result.freed_bytes / 1e6:.1f} MB)")
    for version, why in result.kept.items():
        typer.echo(f"  kept v{version}: {why}")


@app.command("backup")
def backup(list_: bool = typer.Option(False, "--list", help="List the backups instead."), root: str = _ROOT) -> None:
    """Write a timestamped backup of the registry (or list them)."""
    path = _registry_path(root)
    if list_:
        for item in _registry.list_backups(path):
            typer.echo(str(item))
        return
    typer.echo(f"backup written: {_registry.backup(path, now=_registry.utc_now())}")


@app.command("restore")
def restore(source: Annotated[Path | None, typer.Argument(help="Backup file (default: the newest).")] = None,
            root: str = _ROOT) -> None:
    """Replace the registry with a backup (the replaced file is backed up first)."""
    used = _registry.restore(_registry_path(root), source, now=_registry.utc_now())
    typer.echo(f"restored from {used}")


@app.command("import")
def import_(source: Annotated[Path | None, typer.Option(help="A MetaHuman OS registry file (default: etc/model-registry.json).")] = None,
            username: str = _USER, root: str = _ROOT) -> None:
    """Take an existing MetaHuman OS registry's history into this profile."""
    result = _registry.import_metahuman_os(_profile(username, root), source, now=_registry.utc_now())
    typer.echo(f"imported {len(result.added)} version(s) into {result.username!r}; "
               f"{len(result.already_known)} already known; current: v{result.current_version}")
    for note in result.notes:
        typer.echo(f"  note: {note}")


@app.command("mirror")
def mirror(username: str = _USER, root: str = _ROOT) -> None:
    """Make this profile's lineage the one MetaHuman OS reads from the top-level fields."""
    _registry.set_mirror_profile(_profile(username, root), now=_registry.utc_now())
    typer.echo(f"MetaHuman OS fields now follow {username!r}")


@app.command("ollama")
def ollama(version: str = typer.Argument(None, help="Version (default: current)."),
           system: str = typer.Option(None, help="System prompt (default: the training prompt of the version's mode)."),
           ollama_base: str = typer.Option(None, help="Ollama model under a LoRA adapter, e.g. qwen3:14b."),
           merge: bool = typer.Option(False, help="Merge the LoRA into its base first (portable)."),
           print_only: bool = typer.Option(False, "--print-only", help="Write the Modelfile, print the commands."),
           username: str = _USER, root: str = _ROOT) -> None:
    """Write the version's Modelfile and run `ollama create` + a smoke prompt (or print the commands)."""
    profile = _profile(username, root)
    record = (_registry.get_version(profile, _registry.parse_version(version)) if version
              else _registry.current_version(profile))
    if record is None:
        raise _registry.RegistryError(f"Profile {username!r} has no current version; name one.")
    modelfile = _ollama.default_modelfile_path(record, profile.root)
    merged = None
    if merge and record.get("output_kind") == "adapter":
        base = record["base_model"]
        base = str(profile.root / base) if (profile.root / base).is_dir() else base  # a full-model parent
        merged = _ollama.merge_lora(profile.root / record["output_path"], base,
                                    modelfile.parent / "output" / "merged")
    result = _ollama.export_version(record, username=username, root=profile.root,
                                    system=system or _ollama.training_system_prompt(username, record.get("mode_filter") or "emulation"),
                                    modelfile_path=modelfile, ollama_base=ollama_base,
                                    merged_dir=merged, run=not print_only)
    typer.echo(f"Modelfile: {modelfile}")
    if not print_only:
        typer.echo(f"GGUF: {_ollama.gguf_for_full_model(profile, record)}")
    if not result.ran:
        typer.echo("Ollama is not on PATH (or --print-only); run:" if not print_only else "Run:")
    for command in result.commands:
        typer.echo(f"  {command}")
    if result.smoke_answer is not None:
        typer.echo(f"smoke answer: {result.smoke_answer}")
