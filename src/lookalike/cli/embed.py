"""``lookalike embed``: embed a manifest or a folder of images into a Parquet file.

The output (one row per image, in the order of the manifest or of the sorted file names):

| column | what |
|---|---|
| ``path`` | the image file (absolute) |
| ``id`` | the manifest's ``id`` column, when it has one |
| ``label`` | the class, when known (from a manifest; absent for ``--images``) |
| ``split``, ``role`` | from a split manifest, when present (as there: ``val``, ``query+gallery``...) |
| ``row`` | the manifest row (0-based, header not counted) or the file's position |
| ``embedding`` | (D,) float32, L2-normalised (fixed-size list) |

The file's Parquet schema metadata ``lookalike`` holds JSON with ``model_fingerprint``,
``model_source``, ``preprocessing``, ``distance``, ``embed_dim`` and ``format_version``.
``lookalike evaluate-embeddings EMB.parquet [--split S]`` and ``lookalike index build --embeddings
EMB.parquet`` read it; in Python, :func:`lookalike.embed.read_embeddings`.

Under ``torchrun --nproc-per-node N -m lookalike embed ...`` each process embeds a contiguous shard
of the rows (on ``cuda:LOCAL_RANK`` with ``--device auto`` when there are GPUs) and rank 0 writes
the one file, rows in the original order.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from lookalike.cli._model_options import (
    BackboneOption,
    CheckpointOption,
    DeviceOption,
    ImageSizeOption,
    ModelOptions,
    OnnxOption,
    PretrainedOption,
    WeightsOption,
    resolve_cli_device,
)
from lookalike.cli.app import app

_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)


@app.command("embed")
def embed(
    checkpoint: CheckpointOption = None,
    backbone: BackboneOption = None,
    weights: WeightsOption = None,
    image_size: ImageSizeOption = None,
    pretrained: PretrainedOption = False,
    onnx: OnnxOption = None,
    manifest: Path | None = typer.Option(None, "--manifest", help="A manifest (CSV/Parquet) of the images."),
    images: Path | None = typer.Option(
        None, "--images", help="Or a folder: every image below it (recursive)."
    ),
    split: str | None = typer.Option(None, "--split", help="With a split manifest: only this split's rows."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the embeddings (.parquet)."),
    device: DeviceOption = "auto",
    batch_size: int = typer.Option(128, "--batch-size", min=1),
    num_workers: int = typer.Option(0, "--num-workers", min=0, help="DataLoader worker processes."),
) -> None:
    """Embed images with a checkpoint or a frozen backbone and write path, label, split/role and the
    embedding of each to a Parquet file (the input of evaluate-embeddings and index build)."""
    from lookalike.distributed import cleanup, init_distributed
    from lookalike.embed import embed_frame_distributed, embeddings_frame, list_images, write_embeddings

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    options = ModelOptions(checkpoint, backbone, weights, image_size, pretrained, onnx)
    try:
        options.check()
        if (manifest is None) == (images is None):
            raise ValueError("give the images with exactly one of --manifest FILE or --images DIR")
        if images is not None and split is not None:
            raise ValueError("--split selects rows of a split manifest; it does not apply to --images DIR")
        if out.suffix.lower() != ".parquet":
            raise ValueError(f"--out must be a .parquet file, got {out.name!r}")
        frame = _read_rows(manifest, split) if manifest is not None else list_images(images)
        dev = resolve_cli_device(device, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
        model = options.load(dev)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        _err.print(f"error: {err}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    info = init_distributed(dev)
    try:
        emb = embed_frame_distributed(
            model.embedder.to(info.device),
            frame,
            info=info,
            batch_size=batch_size,
            num_workers=num_workers,
            progress=info.is_main,
        )
        if info.is_main:
            assert emb is not None
            metadata = {
                "model_fingerprint": model.fingerprint,
                "model_source": model.source,
                "preprocessing": model.preprocessing.to_dict(),
                "distance": model.distance,
                "embed_dim": model.embed_dim,
            }
            write_embeddings(embeddings_frame(frame, emb), out, metadata=metadata)
            shards = f" by {world_size} processes" if world_size > 1 else ""
            _out.print(
                f"{len(frame)} embeddings of size {model.embed_dim} from {options.describe()}{shards} "
                f"written to {out}",
                markup=False,
                highlight=False,
            )
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        _err.print(f"error: {err}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    finally:
        cleanup(info)


def _read_rows(manifest: Path, split: str | None):
    from lookalike.data import read_manifest

    frame = read_manifest(manifest)
    if split is None:
        return frame
    if "split" not in frame.columns:
        raise ValueError(f"--split {split}: {manifest} has no 'split' column (run `lookalike split` first)")
    rows = frame[frame["split"].astype(str) == split]
    if len(rows) == 0:
        present = sorted(frame["split"].dropna().astype(str).unique())
        raise ValueError(f"{manifest} has no rows of split {split!r}; splits present: {present}")
    return rows
