"""Self-contained HTML reports: each executed notebook, one page per run, one index per profile.

Every page works offline and can be mailed as one file: plotly.js is embedded once per page
(never an external ``<script src=...>``), images are inlined, and Jupyter's CDN scripts
(require.js, MathJax, the widget manager) are left out. Two protections apply to every page:

* secrets: the values of secret-looking environment variables (``RUNPOD_API_KEY``, ``*_TOKEN``,
  ...) are replaced by ``[secret removed]`` wherever they appear;
* ``redact=True``: any output that quotes memory text (six consecutive words of a memory, or a
  whole short memory) is replaced by a note, so the report can be shared without the memories.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import orjson

from metahuman_lib._io import atomic_write_bytes, read_json
from metahuman_lib.display import rows as record_rows
from metahuman_lib.errors import ConfigError
from metahuman_lib.profile import Profile
from metahuman_lib.runfolder import list_run_dirs, read_manifest

PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
SECRET_PLACEHOLDER = "[secret removed]"
REDACTED_NOTE = "[output removed: it quotes memory text (redacted report)]"
SECRET_ENV_PATTERN = re.compile(r"(API_KEY|APIKEY|TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE_KEY)", re.IGNORECASE)
_SHINGLE_WORDS = 6
_MIN_WHOLE_TEXT_CHARS = 12
_WORD = re.compile(r"\w+", re.UNICODE)

_TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{{ resources.get('plotly_script', '') }}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


@dataclass(frozen=True)
class ReportParams:
    """The ``report`` block of a parameter set.

    Attributes:
        redact: leave memory text out of every report (shareable reports); ``--redact`` also sets it.
        runs_per_year: how often the job runs, for the projected annual cost (None: from the
            recent window, e.g. 30 days -> 12 runs, 14 days -> 26 runs).
    """

    redact: bool = False
    runs_per_year: int | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ReportParams:
        """Build from a YAML block; unknown keys and bad values raise ConfigError."""
        from metahuman_lib.parameters import _unknown_message

        names = list(cls.__dataclass_fields__)
        for key in values:
            if key not in names:
                raise ConfigError(_unknown_message("report key", str(key), names))
        params = cls(**dict(values))
        if not isinstance(params.redact, bool):
            raise ConfigError(f"report.redact must be true or false, got {params.redact!r}.")
        runs = params.runs_per_year
        if runs is not None and (isinstance(runs, bool) or not isinstance(runs, int) or runs < 1):
            raise ConfigError(f"report.runs_per_year must be a whole number >= 1, got {runs!r}.")
        return params


# --------------------------------------------------------------------------- secrets, redaction


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-looking environment variables (8+ characters), longest first."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if SECRET_ENV_PATTERN.search(k) and v and len(v) >= 8}
    return sorted(values, key=len, reverse=True)


def scrub_secrets(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every secret value replaced by ``[secret removed]``."""
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, SECRET_PLACEHOLDER)
    return text


@dataclass(frozen=True)
class MemoryText:
    """What redaction looks for: 6-word shingles of every memory, and whole short memories."""

    shingles: frozenset[tuple[str, ...]]
    short_texts: frozenset[str]

    def found_in(self, text: str) -> bool:
        """Whether ``text`` (HTML or plain) quotes any memory."""
        plain = html.unescape(re.sub(r"<[^>]+>", " ", text))
        words = tuple(w.lower() for w in _WORD.findall(plain))
        for start in range(len(words) - _SHINGLE_WORDS + 1):
            if words[start:start + _SHINGLE_WORDS] in self.shingles:
                return True
        if self.short_texts:
            joined = " ".join(words)
            return any(short in joined for short in self.short_texts)
        return False


def memory_text_index(texts: Iterable[str]) -> MemoryText:
    """Index memory texts for :meth:`MemoryText.found_in`."""
    shingles: set[tuple[str, ...]] = set()
    short: set[str] = set()
    for text in texts:
        words = tuple(w.lower() for w in _WORD.findall(text or ""))
        if len(words) >= _SHINGLE_WORDS:
            shingles.update(words[i:i + _SHINGLE_WORDS] for i in range(len(words) - _SHINGLE_WORDS + 1))
        elif len(" ".join(words)) >= _MIN_WHOLE_TEXT_CHARS:
            short.add(" ".join(words))
    return MemoryText(frozenset(shingles), frozenset(short))


def run_memory_texts(run_dir: Path, profile: Profile | None = None) -> list[str]:
    """Every message text of the run's JSONL files, plus the profile's memories when readable."""
    texts: list[str] = []
    for path in sorted(Path(run_dir).glob("*.jsonl")):
        with open(path, "rb") as handle:
            for line in handle:
                record = _json_line(line)
                for message in record.get("messages", []) if isinstance(record, dict) else []:
                    if isinstance(message, dict) and isinstance(message.get("content"), str):
                        texts.append(message["content"])
    if profile is not None:
        texts.extend(_profile_texts(profile))
    return texts


def _profile_texts(profile: Profile) -> list[str]:
    try:
        from metahuman_lib.memory import load_memories
    except ImportError:
        return []
    if not profile.episodic_dir.is_dir():
        return []
    memories, _report = load_memories(profile)
    texts = [str(t) for t in memories["content"].tolist()]
    texts.extend(str(t) for t in memories["response"].dropna().tolist())
    return texts


def _json_line(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}


# --------------------------------------------------------------------------- notebook export


def export_notebook_html(notebook: Path, target: Path, *, redact: bool = False,
                         run_dir: Path | None = None, memory: MemoryText | None = None) -> Path:
    """Export an executed notebook to one self-contained HTML file.

    The page shows the notebook's text and results, not its code (the executed notebook beside it
    keeps the code). Plotly figures become static ``<div>``s drawn by the one embedded plotly.js;
    widget views and progress bars are left out; with ``redact`` every output quoting memory text
    is removed.
    The executed notebook itself is rewritten when it holds a secret.
    """
    from nbconvert import HTMLExporter

    secrets = secret_values()
    _scrub_notebook_file(Path(notebook), secrets)
    nb = nbformat.read(str(notebook), as_version=4)
    if redact and memory is None:
        memory = memory_text_index(run_memory_texts(run_dir, _run_profile(run_dir)) if run_dir else [])
    nb.metadata.pop("widgets", None)  # live widget state (megabytes of JS) cannot run offline
    has_plotly = _prepare_outputs(nb, memory if redact else None)
    # a step report is for reading results: the code that made them stays in the executed notebook
    exporter = HTMLExporter(template_name="lab", extra_loaders=[_template_loader()],
                            template_file="offline.html.j2", embed_images=True, exclude_input=True,
                            exclude_input_prompt=True, exclude_output_prompt=True)
    resources = {"metadata": {"name": Path(notebook).stem},
                 "plotly_script": plotly_script() if has_plotly else ""}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    body = strip_external_scripts(scrub_secrets(body, secrets))
    atomic_write_bytes(Path(target), body.encode("utf-8"))
    return Path(target)


def plotly_script() -> str:
    """plotly.js as one inline ``<script>`` (offline; no CDN)."""
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def strip_external_scripts(page: str) -> str:
    """Remove any ``<script src="http...">`` a template or output may have added."""
    return re.sub(r"<script[^>]*\bsrc=[\"']?(https?:)?//[^>]*>\s*</script>", "", page, flags=re.IGNORECASE)


def _template_loader() -> Any:
    import jinja2

    return jinja2.DictLoader({"offline.html.j2": _TEMPLATE})


def _prepare_outputs(nb: Any, memory: MemoryText | None) -> bool:
    """Turn figures into static HTML; drop widget views (and their reprs), progress bars and plotly.js
    loaders; redact memory text."""
    has_plotly = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            output = _convert_output(output)
            if output is None:
                continue
            if memory is not None and memory.found_in(_output_text(output)):
                output = nbformat.v4.new_output("stream", name="stdout", text=REDACTED_NOTE + "\n")
            has_plotly = has_plotly or bool(output.get("metadata", {}).get("plotly_figure"))
            kept.append(output)
        cell.outputs = kept
    return has_plotly


_PROGRESS_LINE = re.compile(r"^.*\d+%\|.*\|.*$|^\s*$", re.MULTILINE)


def _convert_output(output: Any) -> Any:
    if output.get("output_type") == "stream" and output.get("name") == "stderr":
        text = output.get("text", "")
        text = "".join(text) if isinstance(text, list) else text
        kept = [line for line in text.replace("\r", "\n").split("\n") if not _PROGRESS_LINE.fullmatch(line)]
        if not kept:
            return None  # download and progress bars: noise in a report
        output.text = "\n".join(kept) + "\n"
        return output
    data = output.get("data")
    if not data:
        return output
    if PLOTLY_MIME in data:
        figure = data[PLOTLY_MIME]
        div = figure_div(figure if isinstance(figure, dict) else json.loads(figure))
        output.data = {"text/html": div}
        output.metadata = {"plotly_figure": True}
        return output
    text_html = data.get("text/html", "")
    if isinstance(text_html, list):
        text_html = "".join(text_html)
    if "get_plotlyjs" in text_html or ("plotly.js" in text_html and len(text_html) > 100_000):
        return None
    if WIDGET_MIME in data:
        return None  # an interactive control: its Python repr ("VBox(...)") means nothing on a page
    return output


def _output_text(output: Any) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        return "".join(text) if isinstance(text, list) else text
    if output.get("output_type") == "error":
        return " ".join([output.get("evalue", "")] + list(output.get("traceback", [])))
    parts = []
    for mime, value in output.get("data", {}).items():
        if mime.startswith("image/") and mime != "image/svg+xml":
            continue
        parts.append("".join(value) if isinstance(value, list) else str(value))
    return "\n".join(parts)


def _scrub_notebook_file(path: Path, secrets: list[str]) -> None:
    if not secrets:
        return
    text = path.read_text(encoding="utf-8")
    cleaned = scrub_secrets(text, secrets)
    if cleaned != text:
        atomic_write_bytes(path, cleaned.encode("utf-8"))


def _run_profile(run_dir: Path | None) -> Profile | None:
    """The profile a run folder belongs to (``<root>/profiles/<user>/out/fine-tuned-models/...``)."""
    if run_dir is None:
        return None
    parts = Path(run_dir).resolve().parts
    if "profiles" not in parts:
        return None
    at = len(parts) - 1 - parts[::-1].index("profiles")
    if at + 1 >= len(parts):
        return None
    return Profile(Path(*parts[:at]), parts[at + 1])


# --------------------------------------------------------------------------- figures and pages


def figure_div(figure: Any) -> str:
    """A plotly figure (object or dict) as a ``<div>`` drawn by the page's embedded plotly.js."""
    import plotly.io as pio

    return pio.to_html(figure, include_plotlyjs=False, full_html=False,
                       config={"displaylogo": False, "responsive": True})


_PAGE_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#1f2328;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #d0d7de;padding:.3rem .6rem;
text-align:left;font-size:.9rem}th{background:#f6f8fa}
.succeeded,.pass,.promoted{color:#1a7f37;font-weight:600}.failed,.fail,.rejected,.refused{color:#cf222e;
font-weight:600}.skipped,.warn,.pending,.dry_run,.interrupted,.running{color:#9a6700;font-weight:600}
.note{color:#57606a;font-size:.85rem}.good{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
pre{white-space:pre-wrap;background:#f6f8fa;border:1px solid #d0d7de;padding:.5rem;font-size:.85rem}
pre.completion{background:#dafbe1}
.verdict{border:1px solid #d0d7de;border-left:6px solid #9a6700;padding:.4rem 1rem;margin:1rem 0;background:#f6f8fa}
.verdict.promoted{border-left-color:#1a7f37}.verdict.rejected,.verdict.failed{border-left-color:#cf222e}
.verdict .headline{font-size:1.1rem;font-weight:600}
"""


def html_page(title: str, sections: list[str], *, with_plotly: bool) -> str:
    """A whole self-contained HTML page."""
    script = plotly_script() if with_plotly else ""
    body = "\n".join(sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_PAGE_CSS}</style>{script}</head>"
            f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def html_table(rows: list[Mapping[str, Any]], columns: list[str] | None = None) -> str:
    """A plain table; cells whose value is a known status get its colour."""
    if not rows:
        return '<p class="note">(none)</p>'
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            text = _cell(value)
            css = f' class="{html.escape(str(value))}"' if isinstance(value, str) and \
                re.fullmatch(r"[a-z_]+", value) else ""
            cells.append(f"<td{css}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, RawHtml):
        return value.html
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return "&ndash;" if math.isnan(value) else f"{value:,.4g}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value, default=str))
    return html.escape(str(value))


@dataclass(frozen=True)
class RawHtml:
    """A table cell that is already HTML (a link)."""

    html: str


# --------------------------------------------------------------------------- run summaries


def _get(mapping: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _metrics(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "metrics.json"
    try:
        return read_json(path) if path.is_file() else {}
    except orjson.JSONDecodeError:
        return {}


def run_summary(run_dir: Path) -> dict[str, Any]:
    """One run's figures for reports: dataset size, learning, forgetting, cost, gate, status.

    Reads only the run folder (manifest sections and ``metrics.json``); a figure a run does
    not have (a dry run has no metrics) is None.
    """
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    cycle = manifest.get("cycle", {})
    params = cycle.get("parameters", {})
    selection = manifest.get("selection", {})
    metrics = _metrics(run_dir)
    counts = _get(selection, "counts") or {}
    loss = lambda when, split: _number(_get(metrics, when, split, "loss"))
    recent_before, recent_after = loss("before", "eval_recent"), loss("after", "eval_recent")
    old_before, old_after = loss("before", "eval_old"), loss("after", "eval_old")
    training = manifest.get("training", {})
    registry = manifest.get("registry", {})
    evaluation = manifest.get("evaluation", {})
    return {
        "run": run_dir.name,
        "run_dir": str(run_dir),
        "date": params.get("now", run_dir.name[:10]),
        "kind": cycle.get("kind", params.get("kind")),
        "parameters": params.get("name"),
        "status": cycle.get("status", "unknown"),
        "train_samples": _first(_number(_get(counts, "train_samples")),
                                _count_lines(run_dir / "dataset.jsonl")),
        "recent_samples": _number(_get(counts, "recent_selected")),
        "old_samples": _number(_get(counts, "old_selected")),
        "recent_loss_before": recent_before,
        "recent_loss_after": recent_after,
        "learning": _delta(recent_before, recent_after, sign=-1),
        "old_loss_before": old_before,
        "old_loss_after": old_after,
        "forgetting": _delta(old_before, old_after, sign=1),
        "cost_estimate": _first(_number(_get(cycle, "cost", "estimate_usd")),
                                _number(_get(training, "cost", "estimate_usd"))),
        "cost_actual": _first(_number(_get(training, "actual_cost", "usd")),
                              _number(_get(cycle, "cost", "actual_usd")),
                              _number(_get(training, "cost", "actual_usd"))),
        "cost_gpu": _get(cycle, "cost", "gpu"),
        "hours_estimate": _number(_get(cycle, "cost", "estimate_hours")),
        "cloud_estimate": _number(_get(cycle, "cost", "cloud_estimate_usd")),
        "cloud_gpu": _get(cycle, "cost", "cloud_gpu"),
        "hours_actual": _number(_get(cycle, "cost", "actual_hours")),
        "backend": cycle.get("backend"),
        "gate": _gate_word(evaluation),
        "version": _get(registry, "version"),
        "registry_status": _get(registry, "status"),
        "days_recent": _get(params, "blocks", "selection", "days_recent"),
        "error": cycle.get("error"),
    }


def _gate_word(evaluation: Mapping[str, Any]) -> str | None:
    """``passed`` / ``rejected`` from the evaluation section (issue 7's gate decision)."""
    passed = _get(evaluation, "passed")
    if passed is None:
        return None
    return "passed" if passed else "rejected"


# what a local run would have cost on the seed's rented GPU, shown beside its real (zero) cost
CLOUD_GPU = "NVIDIA A100 80GB PCIe"


def run_cost(run_dir: Path, *, backend: str, gpu_types: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The run's projected and real cost, from issue 5's cost model and the trainer's figures.

    The projection prices the run's dataset and training config on the GPU it trained on (from
    ``effective_config.json``), else the first RunPod GPU type for a RunPod run, else ``cpu``.
    The real cost is what the RunPod backend billed (``training.actual_cost``), else the
    measured training time at that GPU's price. None when the run has no training config yet.
    """
    try:
        from metahuman_lib.training.cost import load_gpu_prices, project_run
    except ImportError:
        return None
    run_dir = Path(run_dir)
    if not (run_dir / "train_config.json").is_file() or not (run_dir / "dataset.jsonl").is_file():
        return None
    prices = load_gpu_prices()
    device = _get(_read_optional_json(run_dir / "effective_config.json"), "devices", "device_name")
    gpu = device if device in prices.gpus else (gpu_types[0] if backend == "runpod" and gpu_types else "cpu")
    estimate = project_run(run_dir, gpu, prices=prices)
    runtime = _number(_get(_metrics(run_dir), "train", "runtime_s"))
    billed = _number(_get(read_manifest(run_dir), "training", "actual_cost", "usd"))
    measured = None if runtime is None else runtime / 3600 * prices.gpu(gpu).price_per_hour
    cloud_gpu = gpu_types[0] if gpu_types else CLOUD_GPU
    cloud = estimate if cloud_gpu == gpu else project_run(run_dir, cloud_gpu, prices=prices)
    return {"gpu": gpu, "estimate_usd": round(estimate.dollars, 4), "estimate_hours": round(estimate.hours, 4),
            "cloud_gpu": cloud_gpu, "cloud_estimate_usd": round(cloud.dollars, 4),
            "actual_usd": _first(billed, None if measured is None else round(measured, 4)),
            "actual_hours": None if runtime is None else round(runtime / 3600, 4)}


def record_cost(run_dir: Path, *, backend: str, gpu_types: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """Compute :func:`run_cost` and keep it in the manifest's ``cycle.cost`` for the index."""
    from metahuman_lib.runfolder import update_manifest

    cost = run_cost(run_dir, backend=backend, gpu_types=gpu_types)
    if cost is not None:
        update_manifest(Path(run_dir), lambda manifest: manifest.setdefault("cycle", {}).__setitem__("cost", cost))
    return cost


def _read_optional_json(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path) if Path(path).is_file() else {}
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _delta(before: float | None, after: float | None, *, sign: int) -> float | None:
    """Relative change after vs before, signed so that learning and forgetting read positive."""
    if before is None or after is None or before == 0:
        return None
    return sign * (after - before) / before


def _count_lines(path: Path) -> float | None:
    if not path.is_file():
        return None
    with open(path, "rb") as handle:
        return float(sum(1 for line in handle if line.strip()))


def cost_of(summary: Mapping[str, Any]) -> float | None:
    """A run's cost: the real figure when known, else the estimate."""
    return _first(summary.get("cost_actual"), summary.get("cost_estimate"))


def projected_annual_cost(summaries: list[Mapping[str, Any]], runs_per_year: int | None = None) -> float | None:
    """The seed's annual arithmetic on real figures: one foundation + the rest as updates.

    ``runs_per_year`` defaults to 365 / the latest update's recent window (30 days -> 12).
    """
    costed = [s for s in summaries if cost_of(s) is not None and s.get("status") == "succeeded"]
    if not costed:
        return None
    foundations = [cost_of(s) for s in costed if s.get("kind") == "foundation"]
    updates = [cost_of(s) for s in costed if s.get("kind") == "update"]
    if runs_per_year is None:
        days = next((s.get("days_recent") for s in reversed(costed) if s.get("days_recent")), 30)
        runs_per_year = max(1, round(365 / days))
    foundation = foundations[-1] if foundations else 0.0
    update = sum(updates) / len(updates) if updates else (foundation or 0.0)
    return foundation + update * (runs_per_year - (1 if foundations else 0))


# --------------------------------------------------------------------------- run report


def write_run_report(run_dir: Path, *, redact: bool = False) -> Path:
    """Write ``<run_dir>/report.html``: summary, steps with links, gates, cost, metrics."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    summary = run_summary(run_dir)
    sections = [_verdict_card(summary, manifest), _summary_section(summary, manifest, redact),
                _old_probe_section(run_dir), _steps_section(manifest), _gates_section(manifest),
                _cost_section(summary), _prompt_format_section(run_dir, redact), _artifacts_section(run_dir)]
    figures = run_figures(run_dir)
    if figures:
        sections.append("<h2>Charts</h2>" + "".join(figure_div(f) for f in figures))
    page = html_page(f"Run {run_dir.name}", sections, with_plotly=bool(figures))
    target = run_dir / "report.html"
    atomic_write_bytes(target, scrub_secrets(page).encode("utf-8"))
    return target


def _percent_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


def verdict(summary: Mapping[str, Any], manifest: Mapping[str, Any]) -> tuple[str, str, str]:
    """The run in one sentence, and what to do next: ``(css class, headline, next step)``."""
    cycle = manifest.get("cycle", {})
    username = cycle.get("username") or "USER"
    version = summary.get("version")
    status, registry_status = summary.get("status"), summary.get("registry_status")
    learned = f"recent loss {_percent_text(None if summary.get('learning') is None else -summary['learning'])}"
    forgot = f"old probe {_percent_text(summary.get('forgetting'))}"
    limit = _old_limit(manifest)
    if limit is not None:
        forgot += f" (limit +{100 * limit:g}%)"
    samples = (f"{int(summary['recent_samples']):,} new + {int(summary['old_samples']):,} replayed"
               if summary.get("recent_samples") is not None and summary.get("old_samples") is not None
               else f"{int(summary['train_samples'] or 0):,} samples")
    cost = summary.get("cost_actual")
    cost_text = f"${cost:.2f}" if cost is not None else "cost not recorded"
    if summary.get("cloud_estimate") is not None and summary.get("cloud_gpu"):
        cost_text += f" (about ${summary['cloud_estimate']:.2f} on a {summary['cloud_gpu']})"
    if status == "succeeded" and registry_status == "promoted":
        head = f"v{version} promoted: {learned}, {forgot}, {samples}, {cost_text}."
        return "promoted", head, (f"Next: metahuman registry ollama --username {username}; the next monthly run "
                                  f"around {_next_month(summary.get('date'))}.")
    if status == "succeeded" and registry_status == "smoke_test":
        return "warn", f"v{version} trained as a smoke test: {learned}, {forgot}, {samples}.", \
            "Next: collect more memories; a smoke test never becomes current."
    if status == "succeeded" and registry_status:
        reasons = " ".join(_get(manifest, "evaluation", "reasons") or [])
        return "rejected", f"v{version} {registry_status}: {learned}, {forgot}, {samples}. {reasons}".strip(), \
            "Next: the current version stays in use; more replayed old samples (--old-samples) reduce forgetting."
    if status == "dry_run":
        return "warn", f"Dry run: {samples} selected, nothing trained.", "Next: run again without --dry-run."
    if status == "refused":
        return "rejected", f"Run refused by a gate: {summary.get('error')}", \
            "Next: the next run starts fresh once there are enough memories (or use --smoke-test)."
    if status in ("failed", "interrupted"):
        return "failed", f"Run {status}: {summary.get('error')}", \
            (f"Next: fix the cause, then metahuman fine-tune-cycle --username {username} --resume "
             f"{summary.get('run_dir')}")
    return "warn", f"Run {status}.", ""


def run_verdict(run_dir: Path) -> tuple[str, str, str]:
    """:func:`verdict` of a run folder: ``(css class, headline, next step)``."""
    return verdict(run_summary(Path(run_dir)), read_manifest(Path(run_dir)))


def _old_limit(manifest: Mapping[str, Any]) -> float | None:
    """The gate's old-probe limit as a fraction: the one the evaluation applied, else the run's
    ``gate`` block (None when neither says)."""
    limit = _first(_get(manifest, "evaluation", "figures", "config", "max_old_worsening"),
                   _get(manifest, "cycle", "parameters", "blocks", "gate", "max_old_worsening"))
    return _number(limit)


def _next_month(date: Any) -> str:
    from datetime import datetime, timedelta

    try:
        moment = datetime.fromisoformat(str(date))
    except ValueError:
        return "a month from now"
    return f"{moment + timedelta(days=30):%Y-%m-%d}"


def _verdict_card(summary: Mapping[str, Any], manifest: Mapping[str, Any]) -> str:
    css, head, next_step = verdict(summary, manifest)
    return (f'<div class="verdict {css}"><p class="headline">{html.escape(head)}</p>'
            f'<p>{html.escape(next_step)}</p></div>')


def old_probe_by_month(run_dir: Path) -> list[dict[str, Any]]:
    """The old probe's loss per month before and after training: the forgetting the monthly
    strategy exists to prevent, month by month."""
    metrics = _metrics(Path(run_dir))
    before = _get(metrics, "before", "eval_old", "by_month") or {}
    after = _get(metrics, "after", "eval_old", "by_month") or {}
    rows = []
    for month in sorted(set(before) | set(after)):
        b, a = _number(_get(before, month, "loss")), _number(_get(after, month, "loss"))
        rows.append({"month": month, "samples": _get(before, month, "samples"), "loss before": b,
                     "loss after": a, "change": _percent_text(_delta(b, a, sign=1))})
    return rows


def _old_probe_section(run_dir: Path) -> str:
    rows = old_probe_by_month(run_dir)
    if not rows:
        return ""
    return ("<h2>Old probe per month</h2><p class=\"note\">Loss on held-out samples of earlier months, before "
            "and after this run: a rise means the model forgot that month.</p>" + html_table(rows))


def _summary_section(summary: Mapping[str, Any], manifest: Mapping[str, Any], redact: bool) -> str:
    cycle = manifest.get("cycle", {})
    rows = [{"item": k, "value": summary.get(k)} for k in
            ("run", "kind", "parameters", "date", "status", "train_samples", "recent_samples",
             "old_samples", "version", "gate")]
    rows.insert(5, {"item": "backend", "value": cycle.get("backend")})
    rows.append({"item": "dry run", "value": bool(cycle.get("dry_run"))})
    if ((_get(cycle, "parameters", "blocks", "pipeline") or {}).get("smoke_test")):
        rows.append({"item": "smoke test", "value": "yes: trained below the sample-count gate as a test; "
                                                     "this version never becomes current"})
    if summary.get("error"):
        rows.append({"item": "stopped because", "value": summary["error"]})
    blocks = _get(cycle, "parameters", "blocks") or {}
    params_rows = [{"parameter": key, "value": value} for name, values in blocks.items() if values
                   for key, value in record_rows(values, name)]
    note = '<p class="note">Redacted report: outputs quoting memory text are removed.</p>' if redact else ""
    return ("<h2>Summary</h2>" + note + html_table(rows) + "<h2>Parameters</h2>" + html_table(params_rows)
            + f'<p class="note">flags: {html.escape(" ".join(_get(cycle, "parameters", "flags") or []) or "none")}'
            f"; seed {html.escape(str(_get(cycle, 'parameters', 'seed')))}</p>")


def _prompt_format_section(run_dir: Path, redact: bool) -> str:
    """The chat format trained, and the first sample's exact prompt and completion (prompt_format.json)."""
    recorded = _read_optional_json(run_dir / "prompt_format.json")
    if not recorded:
        return ""
    fmt = recorded.get("chat_format") or {}
    served = recorded.get("served_prompt")
    same = served is not None and (fmt.get("bos_token") or "") + served == recorded.get("prompt")
    rows = [{"item": "family", "value": fmt.get("label")},
            {"item": "template settings", "value": ", ".join(f"{k}={v}" for k, v in
                                                           (fmt.get("template_kwargs") or {}).items()) or "none"},
            {"item": "system text", "value": "its own role" if fmt.get("system_role") else "leads the first user turn"},
            {"item": "end-of-turn markers (PARAMETER stop)", "value": " ".join(fmt.get("stop") or [])},
            {"item": "BOS added by Ollama's runner", "value": fmt.get("bos_token") or "none"},
            {"item": "Ollama serves the trained prompt", "value": "yes, byte for byte" if same else "no"}]
    text = "" if redact else (
        f'<p class="note">Sample {html.escape(str(recorded.get("sample_index")))} of dataset.jsonl, '
        "as the trainer fed it: the prompt (no loss), then the completion it learned.</p>"
        f'<pre class="prompt">{html.escape(str(recorded.get("prompt")))}</pre>'
        f'<pre class="completion">{html.escape(str(recorded.get("completion")))}</pre>')
    return "<h2>Prompt format</h2>" + html_table(rows) + text


_ARTIFACTS = (("dataset.jsonl", "the training samples"), ("eval_recent.jsonl", "held-out recent samples"),
              ("eval_old.jsonl", "the old probe"), ("prompt_format.json", "the exact prompt trained and served"),
              ("Modelfile", "for ollama create"), ("output/adapter", "the LoRA adapter"),
              ("output/model", "the model weights"), ("output/model-Q8_0.gguf", "the Q8_0 GGUF"),
              ("metrics.json", "before/after evaluation"), ("train_log.jsonl", "loss per step"),
              ("trainer.log", "the trainer's output"), ("manifest.json", "everything the run recorded"))


def _artifacts_section(run_dir: Path) -> str:
    """Links to what the run produced, the executed notebooks included (only what exists)."""
    found = [(name, what) for name, what in _ARTIFACTS if (run_dir / name).exists()]
    found += [(f"notebooks/{p.name}", "executed step notebook")
              for p in sorted((run_dir / "notebooks").glob("*.ipynb"))]
    if not found:
        return ""
    rows = [{"file": RawHtml(f'<a href="{html.escape(name)}">{html.escape(name)}</a>'), "what": what}
            for name, what in found]
    return "<h2>Artifacts</h2>" + html_table(rows)


def _steps_section(manifest: Mapping[str, Any]) -> str:
    rows = []
    for name, info in manifest.get("steps", {}).items():
        report = info.get("report")
        link = RawHtml(f'<a href="{html.escape(report)}">{html.escape(name)}</a>') if report else name
        rows.append({"step": link, "what": info.get("title"), "status": info.get("status"),
                     "started": info.get("started_at"), "seconds": info.get("duration_s"),
                     "reason": info.get("error") or info.get("reason")})
    return "<h2>Steps</h2>" + html_table(rows)


def _gates_section(manifest: Mapping[str, Any]) -> str:
    rows = []
    for section in ("quality", "selection", "evaluation", "registry"):
        for gate in _gate_rows(manifest.get(section, {})):
            rows.append({"from": section, **gate})
    return "<h2>Gates</h2>" + html_table(rows, ["from", "gate", "result", "reason"])


def _gate_rows(section: Any) -> list[dict[str, Any]]:
    """Gate decisions a step recorded: ``checks`` (the promotion gate), ``gates`` lists or maps."""
    found = []
    for check in _get(section, "checks") or []:
        if isinstance(check, Mapping):
            found.append({"gate": check.get("name"), "result": "pass" if check.get("passed") else "fail",
                          "reason": check.get("detail")})
    gates = _first(_get(section, "gates"), _get(section, "quality", "gates"))
    if isinstance(gates, Mapping):
        gates = [{"gate": k, **(v if isinstance(v, Mapping) else {"result": v})} for k, v in gates.items()]
    for gate in gates if isinstance(gates, list) else []:
        if isinstance(gate, Mapping):
            found.append({"gate": _first(gate.get("gate"), gate.get("name")),
                          "result": _first(gate.get("result"), gate.get("status"), gate.get("decision")),
                          "reason": _first(gate.get("reason"), gate.get("message"))})
    single = _get(section, "gate")
    if isinstance(single, Mapping):
        found.append({"gate": "promotion", "result": _first(single.get("decision"), single.get("result")),
                      "reason": _first(single.get("reason"), single.get("reasons"))})
    return found


def _cost_section(summary: Mapping[str, Any]) -> str:
    rows = [{"priced on": summary.get("cost_gpu"), "backend": summary.get("backend"),
             "estimate (hours)": summary.get("hours_estimate"), "actual (hours)": summary.get("hours_actual"),
             "estimate (USD)": summary.get("cost_estimate"), "actual (USD)": summary.get("cost_actual"),
             f"on RunPod {summary.get('cloud_gpu') or ''} (USD)": summary.get("cloud_estimate")}]
    note = ('<p class="note">Estimate: the cost model\'s projection for this dataset and config '
            "(training, evaluation and pod overhead). Actual: what RunPod billed, or the measured "
            "training time at the GPU's price (a local run on your own machine costs nothing).</p>")
    estimate, actual = summary.get("cost_estimate"), summary.get("cost_actual")
    if estimate and actual and not 1 / 3 <= estimate / actual <= 3:
        note += (f'<p class="note">The estimate is {estimate / actual:.0f}x the actual: it adds a fixed '
                 "overhead per run (pod start, upload, download) and assumes the projected GPU and model size, "
                 "while the actual counts only the measured training time on the machine that trained. "
                 "For a tiny run the overhead is nearly all of the estimate.</p>"
                 if estimate > actual else
                 f'<p class="note">The actual is {actual / estimate:.0f}x the estimate: the training ran '
                 "slower than the cost model's assumed GPU throughput (its mfu in parameters/gpu_prices.yaml); "
                 "metahuman_lib.training.cost.compare_with_actual shows where.</p>")
    return "<h2>Cost</h2>" + html_table(rows) + note


def _loss_points(run_dir: Path) -> list[dict[str, Any]]:
    """The logged steps of a run's ``train_log.jsonl`` that carry a loss (none when absent)."""
    log = run_dir / "train_log.jsonl"
    if not log.is_file():
        return []
    return [r for r in (_json_line(x) for x in log.read_bytes().splitlines() if x.strip())
            if isinstance(r, dict) and "loss" in r]


def run_figures(run_dir: Path) -> list[Any]:
    """The run's charts: training loss per step, the old probe per month, and eval losses before vs after."""
    import plotly.graph_objects as go

    figures = []
    rows = _loss_points(Path(run_dir))
    if rows:
        steps = [r.get("step", i + 1) for i, r in enumerate(rows)]
        figures.append(go.Figure(go.Scatter(x=steps, y=[r["loss"] for r in rows], mode="lines+markers"),
                                 layout={"title": "Training loss", "xaxis_title": "step",
                                         "yaxis_title": "loss", "height": 360}))
    months = old_probe_by_month(run_dir)
    if months:
        fig = go.Figure(layout={"title": "Old probe loss per month, before and after", "barmode": "group",
                                "height": 360, "xaxis": {"type": "category", "title": "month"},
                                "yaxis_title": "loss"})
        for when in ("before", "after"):
            fig.add_bar(name=when, x=[r["month"] for r in months], y=[r[f"loss {when}"] for r in months])
        figures.append(fig)
    metrics = _metrics(run_dir)
    splits = [s for s in ("eval_recent", "eval_old", "train_sample") if _get(metrics, "before", s, "loss") is not None]
    if splits:
        fig = go.Figure(layout={"title": "Loss before and after training", "barmode": "group", "height": 360})
        for when in ("before", "after"):
            fig.add_bar(name=when, x=splits, y=[_get(metrics, when, s, "loss") for s in splits])
        figures.append(fig)
    return figures


# --------------------------------------------------------------------------- cross-run index


def write_index(profile: Profile, *, redact: bool = False, runs_per_year: int | None = None) -> Path:
    """Write ``profiles/<u>/out/reports/index.html``: every run, and metrics across months."""

    summaries = [run_summary(d) for d in list_run_dirs(profile)]
    cumulative = 0.0
    rows = []
    for summary in summaries:
        cost = cost_of(summary) if summary["status"] == "succeeded" else None
        cumulative += cost or 0.0
        report = Path(summary["run_dir"]) / "report.html"
        rel = os.path.relpath(report, profile.reports_dir)
        link = RawHtml(f'<a href="{html.escape(rel)}">{html.escape(summary["run"])}</a>') \
            if report.is_file() else summary["run"]
        rows.append({"run": link, "date": str(summary["date"])[:10], "kind": summary["kind"],
                     "parameters": summary["parameters"], "status": summary["status"],
                     "samples": summary["train_samples"], "replayed": summary["old_samples"],
                     "recent loss change": _percent(None if summary["learning"] is None else -summary["learning"]),
                     "old-probe change": _good_or_bad(summary["forgetting"]),
                     "worst old month": _worst_month(Path(summary["run_dir"])) if summary["kind"] == "update"
                     else None,
                     "gate": summary["gate"], "version": summary["version"],
                     "cost (USD)": cost, "cumulative (USD)": round(cumulative, 4),
                     "RunPod estimate (USD)": summary.get("cloud_estimate")})
    annual = projected_annual_cost(summaries, runs_per_year)
    cloud = [{**s, "cost_actual": None, "cost_estimate": s.get("cloud_estimate")} for s in summaries]
    annual_cloud = projected_annual_cost(cloud, runs_per_year)
    sections = [(f'<p class="note">Profile {html.escape(profile.username)}: {len(summaries)} run(s). '
                 "Recent loss change = learning (the held-out loss of the new month; a drop is good); "
                 "old-probe change = forgetting (the loss on held-out earlier months; a rise is bad). Both "
                 "are relative to the model the run started from.</p>"),
                "<h2>Runs</h2>" + html_table(rows),
                "<h2>What changed against the parent</h2>" + html_table(parameter_changes(summaries)),
                "<h2>Cost</h2>" + html_table([{"cumulative (USD)": round(cumulative, 4),
                                               "projected annual (USD)": annual,
                                               "projected annual on RunPod (USD)": annual_cloud}])]
    figures = index_figures(summaries)
    sections.append("".join(figure_div(f) for f in figures))
    if redact:
        sections.insert(0, '<p class="note">Redacted: no memory text.</p>')
    page = html_page(f"Training runs of {profile.username}", sections, with_plotly=bool(figures))
    target = profile.reports_dir / "index.html"
    atomic_write_bytes(target, scrub_secrets(page).encode("utf-8"))
    return target


def _percent(value: float | None) -> str | None:
    return None if value is None else f"{value * 100:+.1f}%"


def _worst_month(run_dir: Path) -> Any:
    """The old-probe month this run forgot most (``2025-06 +12.3%``), coloured like the overall change."""
    changes = [(m, _delta(m["loss before"], m["loss after"], sign=1)) for m in old_probe_by_month(run_dir)]
    changes = [(m, c) for m, c in changes if c is not None]
    if not changes:
        return None
    month, change = max(changes, key=lambda pair: pair[1])
    css = "good" if change <= 0 else "bad"
    return RawHtml(f'<span class="{css}">{html.escape(month["month"])} {html.escape(_percent(change) or "")}</span>')


def run_labels(summaries: list[Mapping[str, Any]]) -> list[str]:
    """One distinct chart label per run: version, date and parameter set (two monthly runs on the
    same date, one with and one without replay, must not share a bar)."""
    labels = []
    for summary in summaries:
        parts = [f"v{summary['version']}" if summary.get("version") else None, str(summary["date"])[:10],
                 summary.get("parameters") or summary.get("kind")]
        labels.append(" ".join(str(p) for p in parts if p))
    repeated = {label for label in labels if labels.count(label) > 1}
    return [f"{label} ({summary['run'][-6:]})" if label in repeated else label
            for label, summary in zip(labels, summaries, strict=True)]


def _good_or_bad(forgetting: float | None) -> Any:
    """The old-probe change, green when the model kept (or improved) its old months, red when it forgot."""
    if forgetting is None:
        return None
    css = "good" if forgetting <= 0 else "bad"
    return RawHtml(f'<span class="{css}">{html.escape(_percent(forgetting) or "")}</span>')


def parameter_changes(summaries: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per run that built on an earlier version, the parameters that differ from the run that
    trained that parent version (``key: parent's -> this run's``)."""
    blocks_of = {s["run"]: dict(record_rows(_get(read_manifest(Path(s["run_dir"])).get("cycle", {}),
                                                 "parameters", "blocks") or {})) for s in summaries}
    run_of_version = {s["version"]: s["run"] for s in summaries if s.get("version") is not None}
    out = []
    for summary in summaries:
        parent_run = run_of_version.get(_parent_version(Path(summary["run_dir"])))
        if parent_run is None:
            continue
        previous, current = blocks_of[parent_run], blocks_of[summary["run"]]
        changed = [f"{key}: {previous.get(key, '—')} → {current.get(key, '—')}"
                   for key in sorted(set(previous) | set(current)) if previous.get(key) != current.get(key)]
        out.append({"run": summary["run"], "parent": parent_run, "changes": "; ".join(changed) or "none"})
    return out


def _parent_version(run_dir: Path) -> int | None:
    """The registry version this run continued (its ``train_config.json`` parent), if any."""
    parent = _get(_read_optional_json(run_dir / "train_config.json"), "parent", "version")
    return parent if isinstance(parent, int) and not isinstance(parent, bool) else None


def index_figures(summaries: list[Mapping[str, Any]]) -> list[Any]:
    """Dataset size, learning vs forgetting, the losses of each version, the training curves
    overlaid, and cost per run (with the cumulative cost)."""
    import plotly.graph_objects as go

    if not summaries:
        return []
    labels = run_labels(summaries)
    size = go.Figure(layout={"title": "Dataset size per run", "barmode": "stack", "height": 340})
    size.add_bar(name="recent", x=labels, y=[s.get("recent_samples") for s in summaries])
    size.add_bar(name="old", x=labels, y=[s.get("old_samples") for s in summaries])
    size.add_scatter(name="train total", x=labels, y=[s.get("train_samples") for s in summaries],
                     mode="markers")
    quality = go.Figure(layout={"title": "Loss change per run: recent (learning) and old probe (forgetting)",
                                "height": 340, "yaxis_tickformat": ".0%", "xaxis": {"type": "category"}})
    quality.add_bar(name="recent loss (a drop is learning)", x=labels,
                    y=[None if s.get("learning") is None else -s["learning"] for s in summaries])
    quality.add_bar(name="old-probe loss (a rise is forgetting)", x=labels,
                    y=[s.get("forgetting") for s in summaries])
    money = cost_figure(summaries, labels)
    versions = go.Figure(layout={"title": "Recent and old-probe loss of each version (after its run)",
                                 "height": 340, "xaxis": {"type": "category"}})
    versions.add_scatter(name="recent loss", x=labels, y=[s.get("recent_loss_after") for s in summaries],
                         mode="lines+markers")
    versions.add_scatter(name="old-probe loss", x=labels, y=[s.get("old_loss_after") for s in summaries],
                         mode="lines+markers")
    curves = go.Figure(layout={"title": "Training loss of each run", "height": 340,
                               "xaxis_title": "step", "yaxis_title": "loss"})
    for name, summary in zip(labels, summaries, strict=True):
        points = _loss_points(Path(summary["run_dir"]))
        if points:
            curves.add_scatter(name=name, x=[r.get("step") for r in points], y=[r["loss"] for r in points],
                               mode="lines")
    by_month = forgetting_by_month_figure(summaries, labels)
    return [size, quality, versions, *([by_month] if by_month else []), curves, money]


def cost_figure(summaries: list[Mapping[str, Any]], labels: list[str]) -> Any:
    """What each run cost and the running total, beside what it would have cost on RunPod: a run
    trained here costs $0, and a chart of zeros alone says nothing."""
    import plotly.graph_objects as go

    fig = go.Figure(layout={"title": "Cost per run and cumulative (USD)", "height": 340, "barmode": "group",
                            "xaxis": {"type": "category"}, "yaxis": {"rangemode": "tozero",
                                                                     "tickformat": "$.2f"}})
    series = [("paid", [cost_of(s) if s.get("status") == "succeeded" else None for s in summaries])]
    cloud = [s.get("cloud_estimate") if s.get("status") == "succeeded" else None for s in summaries]
    if any(value for value in cloud):
        series.append(("RunPod estimate", cloud))
    for name, costs in series:
        running, cumulative = 0.0, []
        for cost in costs:
            running += cost or 0.0
            cumulative.append(round(running, 4))
        fig.add_bar(name=f"{name} per run", x=labels, y=costs)
        fig.add_scatter(name=f"{name}, cumulative", x=labels, y=cumulative, mode="lines+markers")
    return fig


def forgetting_by_month_figure(summaries: list[Mapping[str, Any]], labels: list[str]) -> Any:
    """Old-probe change per month for every update run, side by side, with the gate's limit: the
    run that replayed old memories stays near zero, the one that did not climbs (None without
    update runs)."""
    import plotly.graph_objects as go

    fig = go.Figure(layout={"title": "Old-probe change per month, per monthly run (a rise is forgetting)",
                            "barmode": "group", "height": 380, "yaxis_tickformat": ".0%",
                            "xaxis": {"type": "category", "title": "month of the old probe"}})
    limits = []
    for label, summary in zip(labels, summaries, strict=True):
        if summary.get("kind") != "update":
            continue
        months = old_probe_by_month(Path(summary["run_dir"]))
        if not months:
            continue
        fig.add_bar(name=label, x=[m["month"] for m in months],
                    y=[_delta(m["loss before"], m["loss after"], sign=1) for m in months])
        limit = _old_limit(read_manifest(Path(summary["run_dir"])))
        if limit is not None:
            limits.append(limit)
    if not fig.data:
        return None
    if limits:
        fig.add_hline(y=min(limits), line_dash="dash", line_color="#b91c1c",
                      annotation_text=f"gate limit +{min(limits):.0%}")
    return fig

