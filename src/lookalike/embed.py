"""Embed images with an embedder: the one path shared by evaluation, the ``embed`` and ``evaluate``
commands, calibration, gallery indexing and search.

- :func:`embed_frame`: the images of a manifest frame (read from disk, in row order).
- :func:`embed_images`: PIL images already in memory (uploads, search queries).

Both prepare images with :func:`eval_transform` of the embedder's preprocessing, so one edit there
changes both."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from lookalike._io import atomic_path
from lookalike.data import IMAGE_EXTENSIONS, ManifestDataset, eval_transform, to_rgb

if TYPE_CHECKING:
    import pandas as pd
    from PIL import Image

    from lookalike.distributed import DistInfo
    from lookalike.models import Embedder
    from lookalike.models.inference import InferenceModel

__all__ = [
    "CARRIED_COLUMNS",
    "embed_frame",
    "embed_frame_distributed",
    "embed_images",
    "embeddings_frame",
    "eval_transform",
    "list_images",
    "read_embeddings",
    "shard_rows",
    "write_embeddings",
]


@torch.no_grad()
def embed_frame(
    embedder: Embedder,
    frame: pd.DataFrame,
    *,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    amp: bool = False,
    features_only: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Embed every row of ``frame`` (``path`` column; ``label`` optional) with :func:`eval_transform`
    of the embedder's preprocessing. Returns (N, embed_dim) float32 on the CPU, in row order; with
    ``features_only`` the pooled backbone features (N, feature_dim) instead."""
    transform = eval_transform(embedder.preprocessing)
    if "label" not in frame.columns:  # unlabelled images (a folder): the dataset needs some label
        frame = frame.assign(label="")
    dataset = ManifestDataset(frame, transform=transform)
    device = torch.device(device)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    was_training = embedder.training
    embedder.eval()
    outputs = []
    iterator = loader
    if progress:
        from rich.progress import track

        iterator = track(loader, description=f"embedding {len(dataset)} images", transient=True)
    try:
        for images, _, _ in iterator:
            images = images.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                out = embedder.features(images) if features_only else embedder(images)
            outputs.append(out.float().cpu())
    finally:
        embedder.train(was_training)
    if not outputs:
        dim = embedder.feature_dim if features_only else embedder.embed_dim
        return torch.empty(0, dim)
    return torch.cat(outputs)


@torch.no_grad()
def embed_images(
    model: InferenceModel | Embedder,
    images: Sequence[Image.Image],
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    amp: bool = False,
) -> torch.Tensor:
    """Embed PIL images held in memory. Returns (N, D) float32 on the CPU, in input order.

    ``model`` is an :class:`~lookalike.models.inference.InferenceModel` or an Embedder. Each image is
    converted to RGB as the data set loader does (:func:`~lookalike.data.to_rgb`: grayscale, 16-bit
    and palette images converted, transparency composited on white, EXIF rotation applied), then goes
    through :func:`eval_transform`, so an image embeds the same from memory as from its file.
    ``device``: where to run (default: where the embedder's parameters are).
    """
    embedder = model.embedder if hasattr(model, "fingerprint") else model
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is None:
        device = next(iter(embedder.parameters()), torch.empty(0)).device
    device = torch.device(device)
    transform = eval_transform(embedder.preprocessing)
    was_training = embedder.training
    embedder.eval()
    outputs = []
    try:
        for start in range(0, len(images), batch_size):
            batch = []
            for i in range(start, min(start + batch_size, len(images))):
                image = images[i]
                if not hasattr(image, "convert") or not hasattr(image, "mode"):
                    raise TypeError(f"images[{i}] is a {type(image).__name__}, expected a PIL.Image.Image")
                batch.append(transform(to_rgb(image)))
            tensor = torch.stack(batch).to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                out = embedder(tensor)
            outputs.append(out.float().cpu())
    finally:
        embedder.train(was_training)
    if not outputs:
        return torch.empty(0, embedder.embed_dim)
    return torch.cat(outputs)


#: Columns of the manifest that ``lookalike embed`` copies into its output, when present.
CARRIED_COLUMNS: tuple[str, ...] = ("id", "label", "split", "role")
EMBEDDINGS_FORMAT_VERSION = 1
_PARQUET_META_KEY = b"lookalike"


def list_images(root: str | Path) -> pd.DataFrame:
    """Every image file below ``root`` (recursive, sorted, hidden files skipped) as a frame with one
    column ``path`` (absolute). Raises FileNotFoundError / ValueError when there is none."""
    import pandas as pd

    from lookalike.data import is_image_file

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    paths = sorted(
        str(p.resolve())
        for p in root.rglob("*")
        if p.is_file()
        and is_image_file(p)
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not paths:
        raise ValueError(f"no image files under {root} (looked for {sorted(IMAGE_EXTENSIONS)})")
    return pd.DataFrame({"path": paths})


def shard_rows(n: int, rank: int, world_size: int) -> range:
    """The contiguous rows of ``n`` that rank ``rank`` of ``world_size`` embeds (sizes differ by <= 1)."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def embed_frame_distributed(
    embedder: Embedder,
    frame: pd.DataFrame,
    *,
    info: DistInfo,
    batch_size: int = 128,
    num_workers: int = 0,
    amp: bool = False,
    progress: bool = False,
) -> torch.Tensor | None:
    """Under ``torchrun`` (``info`` from :func:`lookalike.distributed.init_distributed`):
    each rank embeds its :func:`shard_rows` of ``frame`` on ``info.device``; rank 0 returns all
    (N, D) embeddings in row order, the other ranks None. In one plain process: :func:`embed_frame`."""
    from lookalike.distributed import gather_to_main

    rows = shard_rows(len(frame), info.rank, info.world_size)
    try:
        local: torch.Tensor | RuntimeError = embed_frame(
            embedder,
            frame.iloc[rows.start : rows.stop],
            batch_size=batch_size,
            device=info.device,
            num_workers=num_workers,
            amp=amp,
            progress=progress,
        )
    except Exception as err:  # sent to rank 0 instead of a shard, so that no rank waits forever
        if not info.enabled:
            raise
        local = RuntimeError(f"process {info.rank} of {info.world_size}: {err}")
    parts = gather_to_main(local, info)
    if isinstance(local, RuntimeError):
        raise local
    if parts is None:
        return None
    failed = [p for p in parts if isinstance(p, RuntimeError)]
    if failed:
        raise failed[0]
    return torch.cat(parts)


def embeddings_frame(frame: pd.DataFrame, embeddings: torch.Tensor | np.ndarray) -> pd.DataFrame:
    """The table ``lookalike embed`` writes: ``path``, then those of :data:`CARRIED_COLUMNS` the frame
    has (``id``, ``label``, ``split``, ``role``), ``row`` (the frame's index: the manifest row), and
    ``embedding`` ((D,) float32 per row)."""
    import pandas as pd

    emb = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
    if emb.ndim != 2 or emb.shape[0] != len(frame):
        raise ValueError(f"embeddings must be ({len(frame)}, D) for {len(frame)} rows, got {emb.shape}")
    out = pd.DataFrame({"path": frame["path"].astype(str).to_numpy()})
    for column in CARRIED_COLUMNS:
        if column in frame.columns:
            out[column] = frame[column].to_numpy()
    out["row"] = frame.index.to_numpy()
    out["embedding"] = list(emb)
    return out


def write_embeddings(
    table: pd.DataFrame, path: str | Path, *, metadata: dict[str, Any] | None = None
) -> Path:
    """Write :func:`embeddings_frame`'s table as Parquet, atomically. The embedding column is a
    fixed-size list of float32; ``metadata`` (the model's fingerprint, source, preprocessing, distance;
    plain JSON types) is kept in the file's schema metadata under ``lookalike``
    (:func:`read_embeddings` returns it)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix.lower() != ".parquet":
        raise ValueError(f"the embeddings file must end in .parquet, got {path.name!r}")
    emb = (
        np.stack(table["embedding"].to_list()).astype(np.float32)
        if len(table)
        else np.zeros((0, 0), np.float32)
    )
    dim = emb.shape[1] if emb.ndim == 2 and len(table) else int((metadata or {}).get("embed_dim", 0))
    columns = table.drop(columns=["embedding"])
    arrow = pa.Table.from_pandas(columns, preserve_index=False)
    values = pa.array(emb.reshape(-1), type=pa.float32())
    arrow = arrow.append_column("embedding", pa.FixedSizeListArray.from_arrays(values, dim))
    meta = {"format_version": EMBEDDINGS_FORMAT_VERSION, "embed_dim": dim, **(metadata or {})}
    schema_meta = dict(arrow.schema.metadata or {})
    schema_meta[_PARQUET_META_KEY] = json.dumps(meta).encode()
    arrow = arrow.replace_schema_metadata(schema_meta)
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(arrow, tmp)
    return path


def read_embeddings(path: str | Path) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """Read a file written by ``lookalike embed``: (the table without the embedding column,
    (N, D) float32 embeddings, the metadata dict; empty when the file has none)."""
    import json

    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such embeddings file: {path}")
    arrow = pq.read_table(path)
    if "embedding" not in arrow.column_names:
        raise ValueError(f"{path} has no 'embedding' column; columns: {arrow.column_names}")
    raw = (arrow.schema.metadata or {}).get(_PARQUET_META_KEY)
    meta = json.loads(raw) if raw else {}
    column = arrow.column("embedding").combine_chunks()
    if len(column) == 0:
        emb = np.zeros((0, int(meta.get("embed_dim", 0))), np.float32)
    else:
        emb = np.stack([np.asarray(v, dtype=np.float32) for v in column.to_pylist()])
    return arrow.drop(["embedding"]).to_pandas(), emb, meta
