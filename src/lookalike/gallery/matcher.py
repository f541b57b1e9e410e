"""The matcher: embed query images with the gallery's model, search the gallery, decide.

"Which known object is this, if any?": for each query the gallery's nearest items (nearest
first) and a decision from a *decision score* (:mod:`lookalike.metrics.identification`: the
nearest distance, the ratio of the nearest distance to the nearest of another label, or a cohort
z-norm), the one the gallery's calibration chose (the nearest distance when it has none):

- ``"match"``: the score is within the threshold (``score <= threshold``); ``label`` is the
  nearest item's label and ``margin = threshold - score`` is positive (or zero).
- ``"no match"``: the score is above the threshold (``margin`` negative), or the gallery is empty.
- ``"no threshold"``: neither the gallery nor the caller gave a threshold; ``label`` is the
  nearest item's label, ``margin`` is None. Calibrate one (``lookalike index build --target-fpir
  F --calibrate-on SPLIT.csv``, or ``index set-threshold``).
- ``"error"``: the query could not be read (``error`` says why); the other queries still answer.

One search per query: the gallery is asked for ``max(k, depth)`` items, ``depth`` being the
calibration's (:data:`lookalike.calibration.record.DECISION_DEPTH`, 32), and the score is computed
from them (for a batch of queries: one store search and one score computation); the first k are
returned, and only their item rows (path, metadata) are read: the deeper neighbours' labels come
from the store's labels-only read. The threshold is the gallery's, set for its size when it was
built or last changed; a gallery outside the size range its calibration covers warns
(:class:`CalibrationRangeWarning`) when the matcher opens it.

The pure decision and the result records live in :mod:`lookalike.gallery.decision` (re-exported
here); :class:`Matcher` wires a gallery store, an inference model and the decision together, and
refuses a model other than the one the gallery was built with.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.gallery.decision import (
    DECISIONS,
    Neighbour,
    SearchResult,
    decide,
    decide_all,
    error_result,
    kept_ids,
)

if TYPE_CHECKING:
    from PIL import Image

    from lookalike.gallery.store import GalleryStore
    from lookalike.models.inference import InferenceModel

__all__ = [
    "DECISIONS",
    "CalibrationRangeWarning",
    "Matcher",
    "Neighbour",
    "SearchResult",
    "decide",
    "error_result",
    "query_name",
    "read_query_image",
]


class CalibrationRangeWarning(UserWarning):
    """The gallery holds more (or fewer) objects than its calibration covers."""


def query_name(source: object, index: int) -> str:
    """A readable name for a query: the file name of a path (or of the file a PIL image was read
    from), else ``"query <index>"``."""
    if isinstance(source, (str, Path)):
        return Path(source).name or str(source)
    filename = getattr(source, "filename", None)
    if isinstance(filename, str) and filename:
        return Path(filename).name
    return f"query {index}"


def read_query_image(source: object) -> Image.Image:
    """Open one query: a path or encoded bytes as an RGB PIL image, the way the training data is read
    (:func:`lookalike.data.load_rgb`: EXIF rotation, grayscale/palette converted, transparency on
    white); a PIL image decoded as it is (embedding converts it the same way). Raises ValueError
    saying what is wrong."""
    from PIL import Image

    from lookalike.data import load_rgb

    if isinstance(source, Image.Image):
        try:
            source.load()  # a lazily opened file decodes here, so a broken one fails by name
        except Exception as exc:
            raise ValueError(f"not a readable image ({type(exc).__name__}: {exc})") from None
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ValueError("empty data, not an image")
        try:
            return load_rgb(io.BytesIO(data))  # type: ignore[arg-type]
        except Exception as exc:
            raise ValueError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ValueError(f"no such file: {str(path)!r}")
        if not path.is_file():
            raise ValueError(f"{str(path)!r} is not a file")
        try:
            return load_rgb(str(path))
        except Exception as exc:
            raise ValueError(f"cannot read {str(path)!r} as an image ({type(exc).__name__}: {exc})") from None
    raise ValueError(f"a query must be a PIL image, a file path or image bytes, got {type(source).__name__}")


class Matcher:
    """Search a gallery with the model it was built with, and decide match / no match.

    Args:
        gallery: an open :class:`~lookalike.gallery.GalleryStore`.
        model: the :class:`~lookalike.models.inference.InferenceModel` to embed queries with; its
            fingerprint must be the gallery's (another model is refused with
            :class:`~lookalike.gallery.GalleryError`), as must its embedding size and distance.
        batch_size: images embedded per forward pass.
        threshold: overrides the gallery's threshold (``score <= threshold`` is a match).

    ``calibration`` is the gallery's :class:`~lookalike.calibration.CalibrationRecord` (None when it
    has none), ``score`` the decision score it chose, ``depth`` how many items a search retrieves to
    compute it, ``warnings`` what limits the decision (a gallery outside the calibrated size range).
    """

    def __init__(
        self,
        gallery: GalleryStore,
        model: InferenceModel,
        *,
        batch_size: int = 64,
        threshold: float | None = None,
    ) -> None:
        from lookalike.gallery.store import GalleryError, check_model

        header = gallery.header
        check_model(header, model.fingerprint)
        dim = int(model.embedder.embed_dim)
        if dim != int(header.embed_dim):
            raise GalleryError(
                f"dimension mismatch: the gallery holds {header.embed_dim}-d embeddings but the model "
                f"({model.source}) makes {dim}-d ones; use the model the gallery was built with"
            )
        if model.distance != header.distance:
            raise GalleryError(
                f"distance mismatch: the gallery compares by {header.distance!r} but the model "
                f"({model.source}) was trained for {model.distance!r}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if threshold is not None and not math.isfinite(float(threshold)):
            raise ValueError(f"threshold must be a finite number, got {threshold!r}")
        from lookalike.calibration import read_calibration

        self.gallery = gallery
        self.model = model
        self.batch_size = int(batch_size)
        self._threshold = None if threshold is None else float(threshold)
        self.calibration = read_calibration(header.calibration, threshold=header.threshold)
        self.score = "nearest" if self.calibration is None else self.calibration.score
        self.depth = 1 if self.score == "nearest" else int(self.calibration.depth)  # type: ignore[union-attr]
        self.warnings = self._range_warnings()
        for text in self.warnings:
            warnings.warn(text, CalibrationRangeWarning, stacklevel=2)

    def _range_warnings(self) -> tuple[str, ...]:
        """The calibration's size-range warning for this gallery (from the size its threshold was
        last set for, which the header records; no item scan)."""
        record = self.calibration
        if record is None or self._threshold is not None or record.method != "object-profiles":
            return ()
        n = record.figures.get("gallery_objects")
        return () if n is None else self._range_warnings_for(int(n))

    @classmethod
    def open(
        cls,
        gallery: str | Path,
        *,
        checkpoint: str | Path | None = None,
        backbone: str | None = None,
        weights: str | Path | None = None,
        device: str | Any = "cpu",
        writable: bool = False,
        batch_size: int = 64,
        threshold: float | None = None,
        onnx: str | Path | None = None,
    ) -> Matcher:
        """Open the gallery at ``gallery`` (a folder, ``milvus-lite:PATH.db``, ``milvus://...``)
        with its model: ``checkpoint``, ``backbone`` [+ ``weights``] or ``onnx`` (a ``lookalike
        export`` file, run by onnxruntime) when given, else the one its header names
        (``model_source``; a backbone's weights file is not recorded, give it).
        ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``; ``writable`` takes the writer lock
        (for :meth:`add` / :meth:`remove`)."""
        from lookalike.gallery.opening import open_gallery
        from lookalike.gallery.store import GalleryError
        from lookalike.models.inference import load_inference_model

        if checkpoint is not None and backbone is not None:
            raise ValueError("give either checkpoint or backbone, not both")
        if onnx is not None and (checkpoint is not None or backbone is not None):
            raise ValueError("onnx chooses the model too: give either onnx or checkpoint/backbone, not both")
        from lookalike.devices import resolve_device

        device = resolve_device(device)
        store = open_gallery(gallery, writable=writable)
        try:
            from_header = checkpoint is None and backbone is None and onnx is None
            if from_header:
                checkpoint, backbone, onnx = _model_from_source(store.header.model_source, gallery)
            image_size = None
            if backbone is not None and store.header.preprocessing:
                image_size = store.header.preprocessing.get("image_size")
            try:
                model = (
                    _load_onnx(onnx, device)
                    if onnx is not None
                    else load_inference_model(
                        checkpoint=checkpoint,
                        backbone=backbone,
                        weights=weights,
                        image_size=image_size,
                        device=device,
                    )
                )
            except FileNotFoundError as exc:
                raise GalleryError(
                    f"cannot load the model of gallery {str(gallery)!r}: {exc}; give the model with "
                    "--checkpoint CKPT (or --backbone NAME [--weights FILE], or --onnx FILE)"
                ) from None
            recorded = store.header.model_fingerprint
            if from_header and backbone is not None and recorded not in (None, model.fingerprint):
                raise GalleryError(
                    f"gallery {str(gallery)!r} was built with the backbone {backbone} and weights it does "
                    f"not record; give them: --backbone {backbone} --weights FILE (Python: weights=PATH)"
                )
            return cls(store, model, batch_size=batch_size, threshold=threshold)
        except BaseException:
            store.close()
            raise

    @property
    def threshold(self) -> float | None:
        """The threshold in use: the one given to the matcher, else the gallery's (None: none)."""
        return self._threshold if self._threshold is not None else self.gallery.header.threshold

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, D) float32 embeddings of PIL images with the model's eval preprocessing."""
        from lookalike.embed import embed_images

        if len(images) == 0:
            return np.empty((0, int(self.gallery.header.embed_dim)), dtype=np.float32)
        out = embed_images(self.model, list(images), batch_size=self.batch_size, device=self._device())
        return np.ascontiguousarray(out.detach().cpu().numpy(), dtype=np.float32)

    def search(
        self,
        images: Sequence[Any],
        k: int = 5,
        *,
        names: Sequence[str] | None = None,
    ) -> list[SearchResult]:
        """Search each query (a PIL image, a path or encoded bytes): one result per query, in order.

        A query that cannot be read gets a result with ``decision == "error"`` and ``error`` set;
        the others still answer.
        """
        _check_k(k)
        images = list(images)
        names = _names(images, names)
        results: list[SearchResult] = []
        chunk = max(self.batch_size, 256)  # images held decoded at once: bounded memory for long lists
        for start in range(0, len(images), chunk):
            results.extend(self._search_chunk(images[start : start + chunk], names[start : start + chunk], k))
        return results

    def _search_chunk(self, images: list[Any], names: list[str], k: int) -> list[SearchResult]:
        results: list[SearchResult | None] = [None] * len(images)
        readable: list[Image.Image] = []
        positions: list[int] = []
        for i, source in enumerate(images):
            try:
                readable.append(read_query_image(source))
                positions.append(i)
            except ValueError as exc:
                results[i] = error_result(names[i], str(exc), self.threshold)
        if readable:
            embeddings = self.embed(readable)
            found = self.search_embeddings(embeddings, k, names=[names[i] for i in positions])
            for i, result in zip(positions, found, strict=True):
                results[i] = result
        return [r for r in results if r is not None]

    def search_embeddings(
        self,
        embeddings: np.ndarray,
        k: int = 5,
        *,
        names: Sequence[str] | None = None,
    ) -> list[SearchResult]:
        """Search (Q, D) query embeddings (already made with the gallery's model): one result each."""
        _check_k(k)
        emb = np.asarray(embeddings, dtype=np.float32)
        dim = int(self.gallery.header.embed_dim)
        if emb.ndim != 2 or emb.shape[1] != dim:
            raise ValueError(f"query embeddings must be (Q, {dim}) for this gallery, got shape {emb.shape}")
        if names is None:
            names = [f"query {i}" for i in range(len(emb))]
        elif len(names) != len(emb):
            raise ValueError(f"got {len(names)} names for {len(emb)} queries")
        if len(emb) == 0:
            return []
        distances, ids = self.gallery.search(np.ascontiguousarray(emb), max(k, self.depth))
        rows = _item_rows(self.gallery, kept_ids(ids, k))
        labels = _labels(self.gallery, ids, rows)
        return decide_all(names, distances, ids, labels, rows, self.threshold, score=self.score, k=k)

    def add(
        self,
        images: Sequence[Any],
        labels: Sequence[str],
        *,
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any]] | None = None,
        paths: Sequence[str | None] | None = None,
    ) -> list[str]:
        """Embed ``images`` (PIL images, paths or bytes) and add them with their ``labels`` (and
        optional ``ids``, per-item ``metadata`` and source ``paths``; a path query's path is used
        when ``paths`` is not given). Returns the ids. Any unreadable image or bad id: ValueError
        naming it, and nothing is added."""
        import pandas as pd

        images = list(images)
        n = len(images)
        for what, seq in (("labels", labels), ("ids", ids), ("metadata", metadata), ("paths", paths)):
            if seq is not None and len(seq) != n:
                raise ValueError(f"got {len(seq)} {what} for {n} images")
        names = _names(images, None)
        chunks = []
        step = max(self.batch_size, 256)  # images held decoded at once; the store gets one batch
        for start in range(0, n, step):
            readable = []
            for i in range(start, min(start + step, n)):
                try:
                    readable.append(read_query_image(images[i]))
                except ValueError as exc:
                    raise ValueError(f"image {i} ({names[i]}): {exc}; nothing was added") from None
            chunks.append(self.embed(readable))
        embeddings = np.concatenate(chunks) if chunks else self.embed([])
        if paths is None:
            paths = [str(Path(s).resolve()) if isinstance(s, (str, Path)) else None for s in images]
        items = pd.DataFrame({"label": [str(x) for x in labels], "path": list(paths)})
        if ids is not None:
            items.insert(0, "id", [str(x) for x in ids])
        if metadata is not None:
            extra = pd.DataFrame([dict(m) for m in metadata], index=items.index)
            clash = sorted(set(extra.columns) & set(items.columns))
            if clash:
                raise ValueError(f"metadata keys {clash} clash with the item columns id, label, path")
            items = pd.concat([items, extra], axis=1)
        added = self.gallery.add(embeddings, items)
        self.rederive_threshold()
        return added

    def remove(self, ids: Sequence[str]) -> int:
        """Remove items by id (an unknown id: KeyError naming it, nothing removed). Returns the count;
        the gallery's threshold is set again for its new size."""
        n = self.gallery.remove(list(ids))
        self.rederive_threshold()
        return n

    def rederive_threshold(self) -> tuple[float, int] | None:
        """Set the gallery's threshold for its current size from its calibration (after items were
        added or removed): ``(threshold, objects)``, or None when the calibration has one threshold
        for every size (or there is none)."""
        from lookalike.gallery.calibration import rederive_gallery_threshold

        out = rederive_gallery_threshold(self.gallery)
        if out is not None:
            self.warnings = self._range_warnings_for(out[1])
        return out

    def _range_warnings_for(self, n_objects: int) -> tuple[str, ...]:
        text = None if self.calibration is None else self.calibration.range_warning(n_objects)
        return () if text is None else (text,)

    def close(self) -> None:
        """Close the gallery store."""
        self.gallery.close()

    def __enter__(self) -> Matcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _device(self) -> Any:
        param = next(iter(self.model.embedder.parameters()), None)
        return "cpu" if param is None else param.device


def _load_onnx(path: str | Path, device: Any) -> InferenceModel:
    from lookalike.models.onnx_runtime import load_onnx_model

    return load_onnx_model(path, device=device)


def _model_from_source(source: str | None, gallery: object) -> tuple[str | None, str | None, str | None]:
    """(checkpoint, backbone, onnx) from a header's ``model_source`` ("checkpoint:PATH",
    "backbone:NAME" or "onnx:PATH")."""
    from lookalike.gallery.store import GalleryError

    if source:
        kind, _, value = source.partition(":")
        if kind == "checkpoint" and value:
            return value, None, None
        if kind == "backbone" and value:
            return None, value, None
        if kind == "onnx" and value:
            return None, None, value
    raise GalleryError(
        f"gallery {str(gallery)!r} does not say which model built it (model_source={source!r}); "
        "give it with --checkpoint CKPT (or --backbone NAME [--weights FILE])"
    )


def _item_rows(gallery: GalleryStore, ids: list[str]) -> dict[str, dict[str, Any]]:
    """id -> item row (label, path, metadata) of the neighbours the results list, one ``items`` call."""
    if not ids:
        return {}
    return {str(row["id"]): row for row in gallery.items(ids).to_dict(orient="records")}


def _labels(gallery: GalleryStore, ids: np.ndarray, rows: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """id -> label of every neighbour found (None in ``ids``: padding): from ``rows`` where read, the
    others (the decision's depth beyond k) by one labels-only read."""
    labels = {item_id: str(row["label"]) for item_id, row in rows.items()}
    rest = [i for i in dict.fromkeys(str(x) for x in ids.reshape(-1) if x is not None) if i not in labels]
    if rest:
        labels.update(gallery.labels(rest).items())
    return labels


def _names(images: Sequence[Any], names: Sequence[str] | None) -> list[str]:
    if names is None:
        return [query_name(src, i) for i, src in enumerate(images)]
    if len(names) != len(images):
        raise ValueError(f"got {len(names)} names for {len(images)} queries")
    return [str(x) for x in names]


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
