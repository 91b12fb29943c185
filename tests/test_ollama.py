"""Modelfiles, `ollama create` through a fake `ollama` program on PATH, and the LoRA merge."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest
from _helpers_registry import T0, make_run

from metahuman_lib import ollama, registry
from metahuman_lib.errors import ConfigError, WorkbenchError
from metahuman_lib.profile import Profile

SYSTEM = "You are Tester's digital personality extension. Speak naturally in first person as Tester."
FAKE_OLLAMA = """#!{python}
import json, os, sys
with open(os.environ["FAKE_OLLAMA_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if os.environ.get("FAKE_OLLAMA_FAIL") == sys.argv[1]:
    sys.stderr.write("Error: unsupported architecture\\n")
    sys.exit(1)
print("I'm doing well, thanks." if sys.argv[1] == "run" else "success")
"""


@pytest.fixture
def fake_ollama(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An executable called `ollama` first on PATH that records its arguments."""
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "ollama"
    script.write_text(FAKE_OLLAMA.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "ollama-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_OLLAMA_LOG", str(log))
    return log


def calls(log: Path) -> list[list[str]]:
    return [orjson.loads(line) for line in log.read_text().splitlines()]


def test_lora_modelfile(tmp_path: Path) -> None:
    record = {"version": 2, "output_kind": "adapter", "method": "lora", "base_model": "Qwen/Qwen3-14B",
              "output_path": "profiles/t/out/run/output/adapter"}
    text = ollama.modelfile_for_version(record, root=tmp_path, system=SYSTEM).render()
    adapter = (tmp_path / "profiles/t/out/run/output/adapter").resolve()
    assert text == (
        "FROM qwen3:14b\n"
        f"ADAPTER {adapter}\n"
        'TEMPLATE """{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}'
        '<|im_start|>assistant\n"""\n'
        f'SYSTEM """{SYSTEM}"""\n'
        "PARAMETER temperature 0.7\nPARAMETER top_p 0.9\nPARAMETER num_ctx 2048\n"
        'PARAMETER stop "<|im_end|>"\nPARAMETER stop "<|im_start|>"\n'
    )


def test_full_and_merged_modelfiles_import_a_folder(tmp_path: Path) -> None:
    record = {"version": 1, "output_kind": "model", "method": "full", "base_model": "x",
              "output_path": str(tmp_path / "run/output/model")}
    full = ollama.modelfile_for_version(record, root=tmp_path, system=SYSTEM)
    assert full.from_ == str(tmp_path / "run/output/model") and full.adapter is None
    lora = {**record, "output_kind": "adapter", "method": "lora"}
    merged = ollama.modelfile_for_version(lora, root=tmp_path, system=SYSTEM, merged_dir=tmp_path / "merged")
    assert merged.render().startswith(f"FROM {tmp_path / 'merged'}\nTEMPLATE")


def test_lora_base_resolution(tmp_path: Path) -> None:
    record = {"version": 1, "output_kind": "adapter", "base_model": "org/unknown-7b", "output_path": "a"}
    with pytest.raises(ConfigError, match=r"No Ollama name is known for base model 'org/unknown-7b'; pass ollama_base"):
        ollama.modelfile_for_version(record, root=tmp_path, system=SYSTEM)
    assert ollama.modelfile_for_version(record, root=tmp_path, system=SYSTEM, ollama_base="mine:7b").from_ == "mine:7b"
    (tmp_path / "bases/tiny").mkdir(parents=True)
    local = {**record, "base_model": "bases/tiny"}
    assert ollama.modelfile_for_version(local, root=tmp_path, system=SYSTEM).from_ == str(tmp_path / "bases/tiny")


def test_modelfile_refuses_triple_quotes_and_versions_without_output(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'cannot contain three double quotes'):
        ollama.ModelfileSpec(from_="x", system='say """hi"""').render()
    with pytest.raises(WorkbenchError, match=r"v3 has no model output to load into Ollama"):
        ollama.modelfile_for_version({"version": 3, "output_path": None}, root=tmp_path, system=SYSTEM)


def test_names_and_training_system_prompt() -> None:
    from metahuman_lib.curation import system_prompt

    assert ollama.ollama_model_name("Greggles", 3) == "greggles-v3"
    assert ollama.training_system_prompt("greggles") == system_prompt("greggles", "emulation")
    assert ollama.training_system_prompt("greggles", "dual") == system_prompt("greggles", "dual")


def test_create_runs_ollama_create_and_a_smoke_prompt(tmp_path: Path, fake_ollama: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    result = ollama.create_in_ollama("tester-v1", modelfile)
    assert result.ran and result.smoke_answer == "I'm doing well, thanks."
    assert calls(fake_ollama) == [["create", "tester-v1", "-f", str(modelfile)],
                                  ["run", "tester-v1", "How are you feeling today?"]]


def test_create_reports_ollama_failures(tmp_path: Path, fake_ollama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_OLLAMA_FAIL", "create")
    with pytest.raises(WorkbenchError, match=r"'ollama create tester-v1 -f .*' failed \(exit 1\): "
                                             r"Error: unsupported architecture"):
        ollama.create_in_ollama("tester-v1", tmp_path / "Modelfile")
    assert len(calls(fake_ollama)) == 1  # no smoke prompt after a failed create


def test_without_ollama_the_exact_commands_are_returned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = ollama.create_in_ollama("tester-v1", tmp_path / "my run" / "Modelfile")
    assert not result.ran
    assert result.commands == (f'ollama create tester-v1 -f "{tmp_path}/my run/Modelfile"',
                               'ollama run tester-v1 "How are you feeling today?"')


def test_cli_exports_the_current_version(tmp_path: Path, fake_ollama: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from metahuman_lib.cli import main

    profile = Profile(tmp_path / "root", "tester")
    run = make_run(profile, 1, method="full", evaluation={"passed": True, "reasons": []})
    registry.register(profile, run, now=T0)
    registry.promote(profile, 1, now=T0)
    assert main(["registry", "ollama", "--username", "tester", "--root", str(profile.root)]) == 0
    modelfile = run / "Modelfile"
    assert modelfile.read_text().startswith(f"FROM {run / 'output' / 'model'}\n")
    assert f'SYSTEM """{ollama.training_system_prompt("tester")}"""' in modelfile.read_text()
    assert calls(fake_ollama)[0] == ["create", "tester-v1", "-f", str(modelfile)]
    assert "smoke answer: I'm doing well, thanks." in capsys.readouterr().out
    assert main(["registry", "ollama", "v1", "--print-only", "--username", "tester", "--root", str(profile.root)]) == 0
    assert f"  ollama create tester-v1 -f {modelfile}" in capsys.readouterr().out
    assert len(calls(fake_ollama)) == 2


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # peft vs transformers
def test_merge_lora_writes_a_full_model_folder(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    from tokenizers import Tokenizer, models, pre_tokenizers

    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    config = transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(base_dir)
    vocab = {f"w{i}": i for i in range(31)} | {"<unk>": 31}
    raw_tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw_tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=raw_tokenizer, unk_token="<unk>").save_pretrained(base_dir)
    lora = peft.get_peft_model(transformers.LlamaForCausalLM.from_pretrained(base_dir),
                               peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                               init_lora_weights=False))
    lora.save_pretrained(adapter_dir)
    out = ollama.merge_lora(adapter_dir, str(base_dir), tmp_path / "merged")
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert (out / "tokenizer.json").is_file()
    merged = transformers.LlamaForCausalLM.from_pretrained(out)
    base = transformers.LlamaForCausalLM.from_pretrained(base_dir)
    q_merged = merged.model.layers[0].self_attn.q_proj.weight
    assert not torch.allclose(q_merged, base.model.layers[0].self_attn.q_proj.weight)


def test_export_run_writes_the_modelfile_of_the_current_version_only(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    profile = Profile(tmp_path / "root", "tester")
    passed = {"passed": True, "reasons": []}
    first = make_run(profile, 1, evaluation=passed)
    registry.register_and_promote(profile, first, now=T0)
    second = make_run(profile, 2, parent_version=1, evaluation={"passed": False, "reasons": ["worse"]})
    registry.register_and_promote(profile, second, now=T0)
    assert ollama.export_run(profile, "") == {"modelfile": None, "note": "no run_dir: nothing to export"}
    assert ollama.export_run(profile, second)["note"] == (
        f"run {second.name} is not the current version; no Modelfile written")
    assert not (second / "Modelfile").exists()
    unknown_base = ollama.export_run(profile, first)
    assert unknown_base["modelfile"] is None
    assert unknown_base["note"].startswith("No Ollama name is known for base model 'tiny/base-model'")
    exported = ollama.export_run(profile, first, ollama_base="tiny:latest")
    assert exported["modelfile"] == str(first / "Modelfile") and exported["ran"] is False
    assert exported["commands"][0] == f"ollama create tester-v1 -f {first / 'Modelfile'}"
    assert (first / "Modelfile").read_text().startswith(
        f"FROM tiny:latest\nADAPTER {first / 'output' / 'adapter'}\n")


CONVERTER = """#!{python}
import sys
args = sys.argv[1:]
if "--outtype" not in args or args[args.index("--outtype") + 1] != "q8_0":
    sys.exit("expected --outtype q8_0")
open(args[args.index("--outfile") + 1], "wb").write(b"GGUF" + args[0].encode())
"""


def test_a_full_fine_tune_gets_a_q8_0_gguf_where_llama_cpp_is_installed(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    profile = Profile(tmp_path / "root", "tester")
    run = make_run(profile, 1, method="full", evaluation={"passed": True, "reasons": []})
    registry.register_and_promote(profile, run, now=T0)
    assert ollama.export_run(profile, run)["gguf"].startswith("skipped: llama.cpp")
    llama_cpp = tmp_path / "llama.cpp"
    llama_cpp.mkdir()
    (llama_cpp / "convert_hf_to_gguf.py").write_text(CONVERTER.format(python=sys.executable))
    monkeypatch.setenv("LLAMA_CPP_DIR", str(llama_cpp))
    result = ollama.export_run(profile, run)
    gguf = run / "output" / "model-Q8_0.gguf"
    assert result["gguf"] == str(gguf) and gguf.read_bytes() == b"GGUF" + str(run / "output" / "model").encode()
    record = registry.get_version(profile, 1)
    assert record["gguf_path"] == gguf.relative_to(profile.root).as_posix()
    mirror = orjson.loads(profile.registry_path.read_bytes())["training_history"][0]
    assert mirror["gguf_path"] == record["gguf_path"]
    assert (run / "Modelfile").read_text().startswith(f"FROM {(run / 'output' / 'model').resolve()}\n")
    assert not list((run / "output").glob(".*partial"))


def test_a_failed_conversion_leaves_no_file_that_looks_whole(tmp_path: Path) -> None:
    import sys

    script = tmp_path / "convert.py"
    script.write_text("import sys\nopen(sys.argv[-1], 'wb').write(b'half')\nsys.exit('out of disk')\n")
    with pytest.raises(WorkbenchError, match="out of disk"):
        ollama.convert_to_gguf(tmp_path, tmp_path / "model-Q8_0.gguf", [sys.executable, str(script)])
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*partial"))


def test_imported_versions_are_served_in_the_format_saved_with_their_weights(tmp_path: Path) -> None:
    from metahuman_lib.training.tiny_families import GEMMA2_TEMPLATE

    model = tmp_path / "profiles/greggles/out/run/model"
    model.mkdir(parents=True)
    (model / "chat_template.jinja").write_text(GEMMA2_TEMPLATE)
    record = {"version": 1, "output_path": "profiles/greggles/out/run/model", "base_model": "google/gemma-2-9b-it"}
    spec = ollama.modelfile_for_version(record, root=tmp_path, system=SYSTEM)
    assert spec.fmt.name == "gemma" and spec.from_ == str(model.resolve())
    assert 'PARAMETER stop "<end_of_turn>"' in spec.render()


@pytest.mark.parametrize(("base", "tag"), [
    ("Qwen/Qwen3-14B", "qwen3:14b"), ("Qwen/Qwen3.5-9B", "qwen3.5:9b"),
    ("meta-llama/Llama-3.2-3B-Instruct", "llama3.2:3b"), ("meta-llama/Llama-3.1-8B-Instruct", "llama3.1:8b"),
    ("google/gemma-2-9b-it", "gemma2:9b"), ("google/gemma-3-12b-it", "gemma3:12b"),
    ("mistralai/Mistral-7B-Instruct-v0.3", "mistral:7b")])
def test_common_bases_have_their_ollama_library_tag(tmp_path: Path, base: str, tag: str) -> None:
    record = {"version": 2, "output_kind": "adapter", "method": "lora", "base_model": base,
              "output_path": "run/output/adapter"}
    assert ollama.modelfile_for_version(record, root=tmp_path, system=SYSTEM).from_ == tag
