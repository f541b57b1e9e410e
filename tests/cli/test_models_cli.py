from typer.testing import CliRunner

from lookalike import __version__
from lookalike.cli import app
from lookalike.models import resolve_backbone_name

runner = CliRunner()


def test_backbones_lists_aliases_with_their_timm_names():
    res = runner.invoke(app, ["backbones", "dinov2_vits14*"])
    assert res.exit_code == 0, res.output
    assert resolve_backbone_name("dinov2_vits14") in res.output
    assert "dinov2_vits14_reg" in res.output and "resnet50" not in res.output


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"lookalike {__version__}"
