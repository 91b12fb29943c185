"""``metahuman pods list`` and ``metahuman pods reap``: find and terminate our orphaned RunPod pods.

A pod is ours only when it carries the workbench's mark (``-wb<mark>`` at the end of its name and
``METAHUMAN_WORKBENCH_RUN`` in its environment) and a run folder under the root recorded that mark.
It is an orphan when that run finished or moved on to another pod; the pod of a run in progress is
kept unless ``--all``. Every other pod of the account is "not ours" and never touched, whatever
its name (MetaHuman OS's own server pod is often called ``metahuman-...``).
"""

from __future__ import annotations

import typer

from metahuman_lib.profile import resolve_root

app = typer.Typer(help="List and reap the RunPod pods this workbench rented.", no_args_is_help=True)

_ROOT = typer.Option("", "--root", help="MetaHuman OS root whose run folders claim pods "
                                        "(default: $METAHUMAN_ROOT or the current folder).")


def _cost_so_far(hourly: float | None, uptime_s: float | None) -> str:
    if hourly is None or uptime_s is None:
        return "?"
    return f"${hourly * uptime_s / 3600:.2f}"


@app.command("list")
def list_pods(root: str = _ROOT) -> None:
    """Show every pod of the account: ours with the run folder that claims it, the others as not ours."""
    from metahuman_lib.training.pods import PodApi, find_claims, plan_reap, resolve_api_key

    api = PodApi(resolve_api_key())
    decisions = plan_reap(api.list(), find_claims(resolve_root(root or None)), include_active=False)
    if not decisions:
        typer.echo("No pods on this account.")
    for decision in decisions:
        pod, claim = decision.pod, decision.claim
        owner = f"{claim.run_dir} ({claim.state or 'unknown'})" if claim else f"not ours ({decision.reason})"
        hourly = f"${pod.cost_per_hr:.2f}/h" if pod.cost_per_hr is not None else "?/h"
        uptime = f"{(pod.uptime_s or 0) / 3600:.2f} h"
        typer.echo(f"{pod.id}  {pod.name}  {pod.desired_status}  {pod.gpu or '?'}  {hourly}  "
                   f"up {uptime}  {_cost_so_far(pod.cost_per_hr, pod.uptime_s)}  {owner}")


@app.command("reap")
def reap(
    root: str = _ROOT,
    include_active: bool = typer.Option(False, "--all", help="Also terminate our pods of runs still in progress."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be terminated."),
) -> None:
    """Terminate our orphaned pods (never a pod that is not ours; a run in progress only with --all)."""
    from metahuman_lib.training.pods import (
        PodApi,
        find_claims,
        plan_reap,
        resolve_api_key,
        terminate_confirmed,
    )

    api = PodApi(resolve_api_key())
    claims = find_claims(resolve_root(root or None))
    decisions = plan_reap(api.list(), claims, include_active=include_active)
    failures = 0
    for decision in decisions:
        pod = decision.pod
        if decision.action == "not_ours":
            typer.echo(f"not ours   {pod.id}  {pod.name}  ({decision.reason}; left alone)")
        elif decision.action == "keep":
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
    if not any(d.action != "not_ours" for d in decisions):
        typer.echo("No pods of ours to reap.")
    if failures:
        raise typer.Exit(code=1)
