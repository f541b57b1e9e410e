"""``lookalike backbones``: which backbone names ``model.backbone`` accepts."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from lookalike.cli.app import app


@app.command("backbones")
def backbones(
    pattern: str = typer.Argument(None, help="Glob over names, e.g. '*dinov2*' or 'resnet*'."),
    pretrained: bool = typer.Option(False, "--pretrained", help="List timm arch.tag names with weights."),
) -> None:
    """List the backbones: lookalike's short aliases (with the timm name each stands for), then timm's."""
    from lookalike.models import BACKBONE_ALIASES, list_backbones

    names = list_backbones(pattern, pretrained=pretrained)
    table = Table(title=f"{len(names)} backbone(s)" + (f" matching {pattern!r}" if pattern else ""))
    table.add_column("name")
    table.add_column("timm model")
    for name in names:
        table.add_row(name, BACKBONE_ALIASES.get(name, name))
    Console().print(table)
