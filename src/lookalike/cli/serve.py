"""``lookalike serve``: the HTTP search service and its web page for a gallery (uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from lookalike.cli._model_options import OnnxOption
from lookalike.cli.app import app

console = Console(stderr=True)


@app.command("serve")
def serve(
    gallery: str = typer.Option(
        ..., "--gallery", help="Gallery folder or store URI (milvus-lite:PATH.db, milvus://HOST:PORT/COLL)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Checkpoint to embed with (default: the model the gallery names)."
    ),
    backbone: str | None = typer.Option(
        None, "--backbone", help="A frozen backbone instead of a checkpoint."
    ),
    weights: Path | None = typer.Option(None, "--weights", help="Local weights file for --backbone."),
    onnx: OnnxOption = None,
    device: str = typer.Option("auto", "--device", help="auto (cuda when available), cpu, cuda or cuda:N."),
    k: int = typer.Option(5, "--k", help="Neighbours returned when a request gives no k."),
    threshold: float | None = typer.Option(
        None, "--threshold", help="Match threshold overriding the gallery's."
    ),
    max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", help="Largest image accepted (MiB)."),
    batch_window_ms: float = typer.Option(
        5.0, "--batch-window-ms", help="Micro-batching window: concurrent requests share one forward pass."
    ),
    max_batch_size: int = typer.Option(32, "--max-batch-size", help="Most images per forward pass (1: off)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level (warning, info, debug)."),
) -> None:
    """Serve search (POST /search), gallery edits (POST/DELETE /items, with the key in LOOKALIKE_API_KEY)
    and the web page (GET /) for GALLERY. The model and gallery load once, before listening."""
    uvicorn, service = _imports()
    options = dict(gallery=gallery, host=host, port=port, checkpoint=checkpoint, backbone=backbone, onnx=onnx)
    options.update(weights=weights, k=k, threshold=threshold, max_upload_mb=max_upload_mb)
    settings = _settings(
        service, device, batch_window_ms=batch_window_ms, max_batch_size=max_batch_size, **options
    )
    matcher = _open(settings)
    try:
        _announce(settings, matcher)
        app = service.create_app(settings, matcher=matcher)
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    finally:
        matcher.close()


def _fail(message: object, code: int) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _imports() -> tuple[Any, Any]:
    """uvicorn and the service package, or a one-line error naming the extra to install."""
    try:
        import uvicorn

        import lookalike.service as service
    except ImportError as err:
        raise _fail(f"the service needs the serve extra ({err}): pip install 'lookalike[serve]'", 2) from None
    return uvicorn, service


def _settings(service: Any, device: str, **options: Any) -> Any:
    """The service settings (the API key and other limits come from LOOKALIKE_* variables)."""
    from pydantic import ValidationError

    from lookalike.cli._model_options import resolve_cli_device

    try:
        resolved = str(resolve_cli_device(device))
    except (ValueError, RuntimeError) as err:
        raise _fail(err, 2) from None
    try:
        return service.ServiceSettings(device=resolved, **options)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in err.errors()
        )
        raise _fail(problems, 2) from None


def _open(settings: Any) -> Any:
    """The matcher, opened before listening so that a bad gallery or model is one line, not a trace."""
    from lookalike.gallery import GalleryError
    from lookalike.service.app import open_matcher

    try:
        return open_matcher(settings)
    except (GalleryError, FileNotFoundError, ValueError, OSError, RuntimeError) as err:
        raise _fail(err, 1) from None


def _announce(settings: Any, matcher: Any) -> None:
    console.print(
        f"lookalike: serving {settings.gallery} ({len(matcher.gallery)} items, model {matcher.model.source}) "
        f"on http://{settings.host}:{settings.port}/ (API docs at /docs)"
    )
    if matcher.threshold is None:
        console.print(
            "[yellow]warning:[/yellow] the gallery has no calibrated threshold, so searches answer "
            "'no threshold' with the nearest label; set one with `lookalike index set-threshold GALLERY "
            "--threshold VALUE` (or --target-far F --calibrate-on SPLIT_MANIFEST), or pass --threshold"
        )
    if settings.writes_enabled:
        console.print(
            "adding and removing items is on; this server holds the gallery's writer lock, so other "
            "writers (`lookalike index add`) are refused while it runs"
        )
    else:
        console.print(
            "adding and removing items is off (set LOOKALIKE_API_KEY to turn it on); galleries written "
            "by other processes are picked up as they change"
        )
