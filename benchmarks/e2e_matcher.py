"""End to end: a gallery, searched through the Matcher, against `lookalike evaluate`; then open set.

1. A gallery (FAISS folder store) of the split's gallery images, embedded with the checkpoint.
2. The split's query images searched through :class:`lookalike.gallery.Matcher` (from their files,
   as `lookalike search` does): the top-1 hit rate, next to `evaluate_split`'s hit_rate@1 on the same
   split (the code path of `lookalike evaluate`). They must be equal.
3. Open set, over ``--repeats`` seeded draws: the classes of half of the queries are removed from
   the gallery (``store.remove``); the share of those (unknown) queries answered ``no match`` is
   reported against ``1 - 2 x target FAR``, and for the other (known) queries how often they are
   matched with the right label, with a wrong label, or not matched.
4. The same open-set protocol with every image of the split as a query (each against the gallery
   without itself): 20x the queries of (3), so a much smaller sampling error on the same model and
   threshold.

The threshold is the checkpoint's calibrated one (training or `lookalike calibrate` stored it; a
checkpoint calibrated for a target FPIR gives the threshold for its calibration's own number of
objects, one calibrated by an older lookalike for a FAR its one threshold); the bound is computed
from the stored target (``target_fpir``, or an older record's ``target_far``).

Usage:
  python benchmarks/e2e_matcher.py --checkpoint runs/omniglot/calibrated.pt \\
      --manifest runs/omniglot/split.csv [--split test] [--repeats 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def open_set(matcher_for, embeddings, labels, ids, *, repeats, own_item):
    """Per draw: remove half the classes from the gallery, search, tally the decisions.

    ``matcher_for(gone)`` gives a Matcher over the gallery without the classes ``gone``;
    ``own_item``: drop each query's own gallery item from its neighbours (leave-one-out)."""
    from lookalike.gallery.matcher import decide

    rng = np.random.default_rng(0)
    classes = np.unique(labels)
    tallies = {"unknown_no_match": [], "known_right": [], "known_wrong": [], "known_no_match": []}
    n_unknown = n_known = 0
    for r in range(repeats):
        gone = set(rng.choice(classes, size=len(classes) // 2, replace=False).tolist())
        with matcher_for(gone, r) as matcher:
            answers = matcher.search_embeddings(embeddings, k=2 if own_item else 1)
        if own_item:  # the decision on the nearest item other than the query itself
            answers = [
                decide(a.query, [n for n in a.neighbours if n.id != own][:1], a.threshold)
                for a, own in zip(answers, ids, strict=True)
            ]
        decision = np.array([a.decision for a in answers])
        label = np.array([a.label or "" for a in answers])
        unknown = np.isin(labels, list(gone))
        known = ~unknown
        matched = decision == "match"
        tallies["unknown_no_match"].append(float(np.mean(decision[unknown] == "no match")))
        tallies["known_right"].append(float(np.mean(matched[known] & (label[known] == labels[known]))))
        tallies["known_wrong"].append(float(np.mean(matched[known] & (label[known] != labels[known]))))
        tallies["known_no_match"].append(float(np.mean(decision[known] == "no match")))
        n_unknown, n_known = int(unknown.sum()), int(known.sum())
    out = {k: float(np.mean(v)) for k, v in tallies.items()}
    out["unknown_no_match_min_max"] = [min(tallies["unknown_no_match"]), max(tallies["unknown_no_match"])]
    out["n_unknown_per_draw"], out["n_known_per_draw"], out["repeats"] = n_unknown, n_known, repeats
    return out


def clopper_pearson(share: float, n: int) -> list[float]:
    """95% interval of a proportion observed as ``share`` of ``n``."""
    from scipy.stats import beta

    k = round(share * n)
    lower = float(beta.ppf(0.025, k, n - k + 1)) if k > 0 else 0.0
    upper = float(beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
    return [lower, upper]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--manifest", required=True, help="split manifest (the run folder's split.csv)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    from lookalike.data import read_manifest
    from lookalike.evaluation import evaluate_split, split_frames
    from lookalike.gallery import create_gallery
    from lookalike.gallery.indexing import build_gallery, embed_items, gallery_header
    from lookalike.gallery.matcher import Matcher
    from lookalike.models.inference import load_inference_model

    t0 = time.perf_counter()
    model = load_inference_model(checkpoint=args.checkpoint)
    frame = read_manifest(args.manifest)
    if model.threshold is None:
        raise SystemExit(
            "the checkpoint has no calibrated threshold: calibrate it first "
            "(lookalike calibrate --checkpoint CKPT --manifest SPLIT.csv --target-fpir 0.05)"
        )
    threshold, figures, how = model.threshold.value, model.calibration or {}, "stored in the checkpoint"
    target_far = float(figures.get("target_fpir") or figures["target_far"])

    queries, gallery_rows = split_frames(frame, args.split)
    rows = frame[frame["split"] == args.split]
    items = rows[["path", "label"]].assign(id=[str(i) for i in rows.index])
    emb = embed_items(model, items)  # every image of the split, in row order
    is_gallery = items.index.isin(gallery_rows.index)
    is_query = items.index.isin(queries.index)
    reference = evaluate_split(model.embedder, queries, gallery_rows, ks=(1,)).metrics["hit_rate@1"]
    q_labels = queries["label"].astype(str).to_numpy()
    header = gallery_header(model, threshold=threshold, calibration=figures)

    with tempfile.TemporaryDirectory() as tmp:
        with build_gallery(Path(tmp) / "g", header, emb[is_gallery], items[is_gallery]) as store:
            results = Matcher(store, model).search(queries["path"].tolist(), k=1)  # from the files
        hit_rate = float(np.mean(np.array([r.neighbours[0].label for r in results]) == q_labels))

        def matcher_for(keep_rows):
            def make(gone, r):
                store = create_gallery(Path(tmp) / f"open{r}-{keep_rows.sum()}", header)
                store.add(emb[keep_rows], items[keep_rows])
                drop = items.loc[keep_rows & items["label"].isin(gone).to_numpy(), "id"].tolist()
                store.remove(drop)  # the classes of half the queries leave the gallery
                return Matcher(store, model)

            return make

        designated = open_set(
            matcher_for(is_gallery), emb[is_query], q_labels, None, repeats=args.repeats, own_item=False
        )
        every = open_set(
            matcher_for(np.ones(len(items), dtype=bool)),
            emb,
            items["label"].astype(str).to_numpy(),
            items["id"].tolist(),
            repeats=max(1, args.repeats // 4),
            own_item=True,
        )
    for block in (designated, every):
        block["unknown_no_match_95_interval"] = clopper_pearson(
            block["unknown_no_match"], block["n_unknown_per_draw"]
        )
        block["bound_within_sampling_error"] = block["unknown_no_match_95_interval"][1] >= 1 - 2 * target_far
    out = {
        "checkpoint": args.checkpoint,
        "split": args.split,
        "n_queries": len(queries),
        "n_gallery": int(is_gallery.sum()),
        "search_top1_hit_rate": hit_rate,
        "evaluate_hit_rate@1": reference,
        "equal": hit_rate == reference,
        "threshold": threshold,
        "threshold_from": how,
        "target_far": target_far,
        "bound_1_minus_2_far": 1 - 2 * target_far,
        "calibration": {
            k: v
            for k, v in figures.items()
            if k in ("roc_auc", "eer", "far", "tar", "n_genuine", "n_impostor", "n_open_set", "split")
        },
        "open_set_designated_queries": designated,
        "open_set_every_image_leave_one_out": every,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
