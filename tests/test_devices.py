import pytest
import torch

from lookalike.devices import resolve_device


def test_auto_is_cuda_only_where_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_cuda_without_a_gpu_and_a_bad_name_are_clear_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"device 'cuda:0' asked for, but CUDA is not available here"):
        resolve_device("cuda:0")
    with pytest.raises(ValueError, match=r"device 'gpu' is not a device; use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu")
    assert resolve_device("cpu") == torch.device("cpu")


#: Modules that still decide "auto" themselves (path below src/lookalike: why). May only shrink.
_OWN_DEVICE_RULE: dict[str, str] = {}


def test_no_module_but_devices_decides_what_auto_means():
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "lookalike"
    rule = re.compile(r"""["']cuda["']\s+if\s+torch\.cuda\.is_available\(\)""")
    found = {
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if path.name != "devices.py" and rule.search(path.read_text())
    }
    assert found - set(_OWN_DEVICE_RULE) == set(), "use lookalike.devices.resolve_device instead"
    assert set(_OWN_DEVICE_RULE) - found == set(), "no longer there: remove from _OWN_DEVICE_RULE"
