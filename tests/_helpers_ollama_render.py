"""Ollama's own template engine for tests: Go's text/template over Ollama's data model.

``tests/ollama_render/main.go`` is built once per session with Debian's ``golang-go`` (installed by
``scripts/install-system-deps.sh``); :func:`render` feeds it a TEMPLATE and a chat request.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).parent / "ollama_render" / "main.go"


def build(out_dir: Path) -> Path:
    """Compile the renderer into ``out_dir``; a missing Go toolchain is an error, never a skip."""
    go = shutil.which("go") or ("/usr/lib/go/bin/go" if Path("/usr/lib/go/bin/go").exists() else None)
    if go is None:
        raise RuntimeError("Go is not installed: run scripts/install-system-deps.sh (Debian package golang-go).")
    binary = out_dir / "ollama-render"
    env = {**os.environ, "GOCACHE": str(out_dir / "gocache"), "GOPATH": str(out_dir / "gopath"),
           "GO111MODULE": "off", "HOME": str(out_dir)}
    subprocess.run([go, "build", "-o", str(binary), str(SOURCE)], check=True, env=env, cwd=out_dir,
                   capture_output=True, text=True)
    return binary


def render(binary: Path, template: str, messages: list[dict[str, str]]) -> str:
    """What Ollama's server renders for ``messages`` with ``template``."""
    done = subprocess.run([str(binary)], input=json.dumps({"template": template, "messages": messages}),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"Go template failed: {done.stderr}")
    return done.stdout
