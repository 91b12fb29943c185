import os
import subprocess
import sys

import nbformat
import pytest

from metahuman_lib.errors import PipelineStepError
from metahuman_lib.training import launch as tl
from metahuman_lib.training.config import TrainConfig, read_train_config, write_train_config
from metahuman_lib.training.status import write_status
from metahuman_lib.training.tiny import profile_texts, train_tokenizer

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "03_training_launch.ipynb")


def test_overrides_keep_only_what_was_set():
    assert tl.training_overrides(method="full", learning_rate=None, epochs=2) == {"method": "full", "epochs": 2}


def test_prepare_launch_merges_overrides_into_the_run_config(tmp_path):
    write_train_config(tmp_path, TrainConfig(base_model="Qwen/Qwen3-14B", epochs=3, seed=4))
    plan = tl.prepare_launch(tmp_path, username="demo", root=None, overrides={"epochs": 1, "method": "full"})
    assert read_train_config(tmp_path) == plan.config
    assert (plan.config.epochs, plan.config.method, plan.config.seed) == (1, "full", 4)
    assert not plan.demo


def test_require_success_raises_the_reason(tmp_path):
    write_status(tmp_path, state="failed", phase="training", error="RuntimeError: out of memory")
    with pytest.raises(PipelineStepError, match=r"ended failed in phase 'training': RuntimeError: out of memory"):
        tl.require_success(tmp_path)
    (tmp_path / "trainer.log").write_text("".join(f"line {i}\n" for i in range(40)) + "CUDA out of memory. Tried 2 GiB\n")
    with pytest.raises(PipelineStepError) as failure:
        tl.require_success(tmp_path)
    assert str(failure.value).endswith("Last lines of trainer.log:\n" + "\n".join(f"line {i}" for i in range(26, 40))
                                       + "\nCUDA out of memory. Tried 2 GiB")


def test_step_03_checks_success_before_reading_any_result():
    import json
    from pathlib import Path

    notebook = json.loads((Path(__file__).parents[1] / "notebooks" / "03_training_launch.ipynb").read_text())
    code = ["".join(c["source"]).strip() for c in notebook["cells"] if c["cell_type"] == "code"]
    gate = code.index("table(tl.require_success(plan.run_dir))")
    assert code[gate - 1].startswith("status = tl.follow(")
    assert all("plan.run_dir" not in cell or "require_success" in cell for cell in code[:gate])


def test_tokenizer_trained_on_the_profile_text_round_trips(demo_profile):
    texts = profile_texts(demo_profile)
    assert len(texts) > 600
    tokenizer = train_tokenizer(texts, vocab_size=800)
    sample = texts[3]
    assert tokenizer.decode(tokenizer(sample, add_special_tokens=False)["input_ids"]) == sample
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id


def test_notebook_is_committed_clean_with_parameters_first():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not cell.get("outputs") and cell.get("execution_count") is None for cell in code)
    for name in ('username = "demo"', 'root = ""', 'run_dir = ""', 'backend = "local"', "method = None"):
        assert name in code[0].source


@pytest.mark.slow
def test_notebook_runs_a_demo_training_end_to_end(demo_root, tmp_path):
    output = tmp_path / "out.ipynb"
    command = [sys.executable, "-m", "papermill", NOTEBOOK, str(output), "-p", "root", str(demo_root), "-p", "epochs", "1",
               "-p", "demo", "True", "--cwd", str(tmp_path), "--execution-timeout", "300"]
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the demo run folder lands in tmp_path
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    book = nbformat.read(output, as_version=4)
    text = "\n".join(str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
                     for cell in book.cells if cell.cell_type == "code" for out in cell.get("outputs", []))
    assert "Demo run in " in text and "succeeded" in text and "JobStatus(" not in text
    run_dir = text.split("Demo run in ")[1].split(" ")[0]
    assert not os.path.exists(run_dir)  # the temporary demo folder went with the kernel
    metrics = next(line.split() for line in text.splitlines() if line.startswith("eval_recent "))
    assert float(metrics[3]) < float(metrics[2])  # loss after < loss before


def test_cli_train_cost(tmp_path, capsys):
    from _helpers_training import END

    from metahuman_lib.cli import main
    from metahuman_lib.samples import write_samples_jsonl
    from metahuman_lib.training.tiny import demo_samples

    write_samples_jsonl(demo_samples(50, seed=1, end=END), tmp_path / "dataset.jsonl")
    write_train_config(tmp_path, TrainConfig(base_model="Qwen/Qwen3-14B"))
    assert main(["train-cost", str(tmp_path), "--gpu", "NVIDIA A100 80GB PCIe"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Qwen/Qwen3-14B: 14.8B parameters, lora, 2048 tokens, effective batch 32"
    assert out[1].startswith("NVIDIA A100 80GB PCIe (80 GB): ") and "-> fits: micro-batch" in out[1]
    assert "weights 29.8, gradients 0.3, optimizer 0.5, activations" in out[1]
    assert main(["train-cost", str(tmp_path)]) == 0  # the run's runpod.gpu_types (defaults here)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("NVIDIA GeForce RTX 4090 (24 GB): ") and "does not fit" in line for line in lines)
    assert main(["train-cost", str(tmp_path), "--gpu", "A100"]) == 2
    assert "Unknown GPU type 'A100' in the GPU prices file. Did you mean" in capsys.readouterr().err


def test_cli_train_cancel_marks_a_run_that_is_not_running(tmp_path, capsys):
    from metahuman_lib.cli import main

    write_train_config(tmp_path, TrainConfig())
    assert main(["train", str(tmp_path), "--cancel"]) == 0
    assert capsys.readouterr().out.strip().endswith(": cancelled (cancelled) step 0/0")


def test_an_empty_run_dir_means_the_profiles_newest_run(tmp_path):
    from metahuman_lib.profile import Profile

    profile = Profile(tmp_path / "root", "tester")
    older, newer = (profile.run_dir(label) for label in ("2025-10-31-000000-aaaaaa", "2025-11-30-000000-bbbbbb"))
    for run in (older, newer):
        run.mkdir(parents=True)
        (run / "dataset.jsonl").write_text("")
        (run / "manifest.json").write_text("{}")
        write_train_config(run, TrainConfig(base_model="Qwen/Qwen3-14B"))
    plan = tl.prepare_launch("", username="tester", root=profile.root)
    assert plan.run_dir == newer and not plan.demo
