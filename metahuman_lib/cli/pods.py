"""``metahuman pods list`` and ``metahuman pods reap``: find and terminate our orphaned RunPod pods.

A pod is ours when its name starts with ``<prefix>-`` (every pod the backend rents is called
``metahuman-<user>-<run-label>``). It is an orphan when no run folder under the root claims it,
or the run that claims it has finished; pods of runs still in progress are kept unless ``--all``.
"""

from __future__ import annotations

import typer

from metahuman_lib.profile import resolve_root

app = typer.Typer(help="List and reap the RunPod pods this workbench rented.", no_args_is_help=True)

_PREFIX = typer.Option("metahuman", "--prefix", help="Name prefix of our pods.")
_ROOT = typer.Option("", "--root", help="MetaHuman OS root whose run folders claim pods "
                                        "(default: $METAHUMAN_ROOT or the current folder).")


def _cost_so_far(hourly: float | None, uptime_s: float | None) -> str:
    if hourly is None or uptime_s is None:
        return "?"
    return f"${hourly * uptime_s / 3600:.2f}"


@app.command("list")
def list_pods(prefix: str = _PREFIX, root: str = _ROOT) -> None:
    """Show our pods with price, uptime, cost so far and the run folder that claims each."""
    from metahuman_lib.training.pods import PodApi, find_claims, is_ours, resolve_api_key

    api = PodApi(resolve_api_key())
    claims = find_claims(resolve_root(root or None))
    ours = [pod for pod in api.list() if is_ours(pod, prefix)]
    if not ours:
        typer.echo(f"No pods named {prefix}-*.")
        return
    for pod in ours:
        claim = claims.get(pod.id)
        owner = f"{claim.run_dir} ({claim.state or 'unknown'})" if claim else "no run folder (orphan)"
        hourly = f"${pod.cost_per_hr:.2f}/h" if pod.cost_per_hr is not None else "?/h"
        uptime = f"{(pod.uptime_s or 0) / 3600:.2f} h"
        typer.echo(f"{pod.id}  {pod.name}  {pod.desired_status}  {pod.gpu or '?'}  {hourly}  "
                   f"up {uptime}  {_cost_so_far(pod.cost_per_hr, pod.uptime_s)}  {owner}")


@app.command("reap")
def reap(
    prefix: str = _PREFIX,
    root: str = _ROOT,
    include_active: bool = typer.Option(False, "--all", help="Also terminate pods of runs still in progress."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be terminated."),
) -> None:
    """Terminate our orphaned pods (none claimed by a run in progress, unless --all)."""
    from metahuman_lib.training.pods import (
        PodApi,
        find_claims,
        plan_reap,
        resolve_api_key,
        terminate_confirmed,
    )

    api = PodApi(resolve_api_key())
    claims = find_claims(resolve_root(root or None))
    decisions = plan_reap(api.list(), claims, prefix=prefix, include_active=include_active)
    failures = 0
    for decision in decisions:
        pod = decision.pod
        if decision.action == "keep":
            typer.echo(f"keep       {pod.id}  {pod.name}  ({decision.reason})")
        elif dry_run:
            typer.echo(f"would reap {pod.id}  {pod.name}  ({decision.reason})")
        else:
            try:
                terminate_confirmed(api, pod.id, attempts=3, delay_s=2.0)
                typer.echo(f"terminated {pod.id}  {pod.name}  ({decision.reason})")
            except Exception as exc:  # noqa: BLE001 - report every pod, then fail once
                failures += 1
                typer.echo(f"FAILED     {pod.id}  {pod.name}: {exc}", err=True)
    if not decisions:
        typer.echo(f"No pods named {prefix}-* to reap.")
    if failures:
        raise typer.Exit(code=1)
