"""The GPU check's dry run on the CPU: the script that a GPU session runs stays green without one."""

import importlib.util
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_dry_run_passes_on_cpu(capsys):
    # torchrun's check runs the same `lookalike train` under torchrun as
    # tests/training/test_distributed.py, which also checks the line it looks for
    code = _gpu_check().main(["--device", "cpu", "--quick", "--only", "vit-bf16-fit", "evaluation"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.split(" ")[0] in {"PASS", "FAIL"}]
    assert code == 0, lines
    assert [line.split(" ")[:2] for line in lines] == [["PASS", "vit-bf16-fit"], ["PASS", "evaluation"]]
    assert "fc1 in torch.bfloat16" in lines[0]


def test_gpu_check_script_runs_topk_against_faiss(tmp_path):
    import sys

    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        [str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick", "--only", "topk-vs-faiss"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "PASS topk-vs-faiss" in proc.stdout and "ids agree 100.00%" in proc.stdout
