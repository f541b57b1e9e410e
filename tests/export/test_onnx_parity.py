"""ONNX exports against PyTorch: Conv-4, a timm CNN and a DINOv2-architecture ViT (random init, at
the resolution each was built for) give cosine >= 0.9999 on every test image, identical top-1
neighbours on a search, at any batch size; the file's metadata describes the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from lookalike.embed import embed_frame
from lookalike.export import PARITY_MIN_COSINE, export_onnx
from lookalike.knn import topk
from lookalike.models import create_embedder_from, load_inference_model, load_onnx_model, save_checkpoint

#: (backbone, options): small but real architectures, each at a fixed resolution it was built for.
MODELS = {
    "convnet4": {"image_size": 32, "embed_dim": 16, "head": "linear"},
    "mobilenetv2_100": {"image_size": 64, "embed_dim": 32, "head": "linear"},
    # DINOv2 ViT-S/14: position embeddings created for 56 px (4 x 4 patches), its one resolution
    "vit_small_patch14_dinov2": {"image_size": 56, "embed_dim": None, "head": "identity"},
}
CLASSES, PER_CLASS = 4, 4


def _images(root: Path) -> pd.DataFrame:
    """Labelled synthetic photos of varied sizes and aspect ratios (resize and crop are exercised)."""
    rng = np.random.default_rng(0)
    rows = []
    for c in range(CLASSES):
        base = rng.integers(0, 255, size=3)
        for i in range(PER_CLASS):
            h, w = int(rng.integers(30, 90)), int(rng.integers(30, 90))
            img = np.zeros((h, w, 3)) + base
            img[:: c + 2, :, :] = 255 - base
            img = np.clip(img + rng.normal(0, 30, img.shape), 0, 255).astype(np.uint8)
            path = root / f"c{c}_{i}.png"
            Image.fromarray(img).save(path)
            rows.append({"path": str(path), "label": f"c{c}"})
    return pd.DataFrame(rows)


#: the larger two export in tens of seconds: marked slow (still run by default)
PARAMS = [
    pytest.param(name, marks=[] if name == "convnet4" else [pytest.mark.slow]) for name in sorted(MODELS)
]


@pytest.fixture(scope="module", params=PARAMS)
def pair(request, tmp_path_factory):
    """(PyTorch InferenceModel, ONNX InferenceModel, the images) for one architecture."""
    root = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    embedder = create_embedder_from(request.param, **MODELS[request.param])
    with torch.no_grad():  # DINOv2's LayerScale starts at 1e-5, which makes a random ViT's output
        for name, param in embedder.named_parameters():  # ignore its input; at 1 the blocks count
            if name.endswith(".gamma"):
                param.fill_(1.0)
    ckpt = save_checkpoint(root / "model.pt", embedder)
    model = load_inference_model(checkpoint=ckpt)
    result = export_onnx(model, root / "model.onnx")
    return model, load_onnx_model(result.path), _images(root)


def test_every_image_embeds_alike(pair):
    model, onnx_model, frame = pair
    ref = embed_frame(model.embedder, frame, batch_size=5)  # batches of 5, 5, 5, 1: dynamic batch axis
    got = embed_frame(onnx_model.embedder, frame, batch_size=3)
    assert got.shape == ref.shape == (len(frame), model.embed_dim)
    cosine = torch.nn.functional.cosine_similarity(got, ref, dim=1)
    assert cosine.min().item() >= PARITY_MIN_COSINE, cosine
    # L2 normalisation is in the graph, once: unit vectors out, equal to PyTorch's (not merely parallel)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(len(frame)), atol=1e-5, rtol=0)
    torch.testing.assert_close(got, ref, atol=2e-4, rtol=0)


def test_search_top1_is_the_same(pair):
    model, onnx_model, frame = pair
    queries = frame.groupby("label").head(1).index.to_numpy().copy()  # pandas hands out a read-only view
    gallery = np.setdiff1d(np.arange(len(frame)), queries)
    found = {}
    for name, m in (("torch", model), ("onnx", onnx_model)):
        emb = embed_frame(m.embedder, frame, batch_size=8)
        _, ids = topk(emb[queries], emb[gallery], 3)
        found[name] = ids
    assert torch.equal(found["onnx"][:, 0], found["torch"][:, 0])


def test_metadata_describes_the_model(pair):
    model, onnx_model, _ = pair
    meta = onnx_model.embedder.metadata
    assert onnx_model.fingerprint == meta.model_fingerprint == meta.source_fingerprint == model.fingerprint
    assert onnx_model.preprocessing == model.preprocessing
    assert (onnx_model.embed_dim, onnx_model.distance) == (model.embed_dim, model.distance)
    assert meta.l2_normalized and meta.quantization == "none"
    assert onnx_model.threshold is None and onnx_model.calibration is None
    inputs = onnx_model.embedder.session.get_inputs()
    size = model.preprocessing.image_size
    assert inputs[0].shape[1:] == [3, size, size] and not isinstance(inputs[0].shape[0], int)


def test_another_resolution_is_refused_by_name(pair):
    model, onnx_model, _ = pair
    size = model.preprocessing.image_size
    with pytest.raises(ValueError, match=rf"takes \(N, 3, {size}, {size}\) images .*got \(2, 3, {size + 14}"):
        onnx_model.embedder(torch.zeros(2, 3, size + 14, size + 14))


def _readme_snippet() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    (snippet,) = [b for b in blocks if "ort.InferenceSession" in b]
    return snippet


def test_the_readme_onnxruntime_snippet_embeds_like_lookalike(pair, tmp_path):
    """The ten lines of plain onnxruntime in the README give lookalike's embedding of an image."""
    from lookalike.embed import embed_images

    _, onnx_model, frame = pair
    snippet = _readme_snippet()
    assert len(snippet.strip().splitlines()) <= 11  # ten lines and a blank one
    query = frame["path"].iloc[5]  # not square: the resize and the crop both matter
    namespace: dict = {}
    exec(
        snippet.replace('"model.onnx"', repr(str(onnx_model.embedder.path))).replace(
            '"query.jpg"', repr(query)
        ),
        namespace,
    )
    theirs = torch.from_numpy(namespace["embedding"])
    ours = embed_images(onnx_model, [Image.open(query)])
    assert theirs.shape == ours.shape == (1, onnx_model.embed_dim)
    assert torch.nn.functional.cosine_similarity(theirs, ours).item() >= PARITY_MIN_COSINE
