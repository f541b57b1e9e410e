"""The whole system on one page: ``lookalike demo`` (and ``make demo``).

Stages, each through the same Python API the commands use:

1. data: the built-in glyphs data set (:mod:`lookalike.data.builtin`, no download), a public
   benchmark (``--dataset omniglot|cub|sop``, needs internet) or the user's own (``--data``);
2. train: the class-disjoint split with one query per val/test class, the metrics of the untrained
   model, CPU training, the metrics after (:func:`lookalike.training.fit`);
3. calibrate: the decision score and the threshold for a target FPIR at any gallery size, on the
   val split (:func:`lookalike.calibration.calibrate_open_set`), stored in a copy of the best
   checkpoint;
4. index: a gallery of the test split, with a seeded share of the test classes left out, built
   with :mod:`lookalike.gallery.indexing` as ``lookalike index build`` does, its threshold set for
   its size;
5. search: every test query searched with the :class:`~lookalike.gallery.Matcher`, with its
   decision (those of left-out classes should come back "no match"): FPIR, FNIR, wrong-match rate;
6. report: ``report.html`` in the run folder (self-contained; :mod:`lookalike.demo.page` puts it
   together from :mod:`lookalike.report`), with the
   DET curve and FPIR against gallery size of the test split
   (:func:`lookalike.evaluation.evaluate_open_set`).
"""

from lookalike.demo.run import (
    DEMO_CONFIG,
    DemoResult,
    demo_config,
    glyphs_folder,
    prepare_data,
    run_demo,
)

__all__ = ["DEMO_CONFIG", "DemoResult", "demo_config", "glyphs_folder", "prepare_data", "run_demo"]
