"""Turning a study's results into words and pictures, after the statistics are done.

``write`` writes ``report.md`` and the plots of a workdir from its ``results.json``;
``markdown`` builds the report's text, the generic tables every metric gets and the
evaluators' sections in the order they ran; ``sections`` holds each evaluator's
presentation (its report sections, plots, saved files and the severity sweeps it gives the
tidy table and TensorBoard), registered by evaluator name
in ``sections.PRESENTATIONS``; ``tables`` formats numbers and markdown tables for the
report and the sections; ``plots`` draws the figures (learning
curves, shift sweeps, per-seed strips, agreement heatmaps, saliency grids, frontiers);
``markdown`` also lays out the verdicts of the claims a study tests
(:mod:`negres.statistics.claims`); ``terminal`` prints per-seed tables on the
command line. ``progress`` draws a training call's progress bar and ``live`` writes its
curves to TensorBoard and a tidy table as they are computed (or from a finished
``TrainResult``), for the library as for the command line. Every function here reads
results; none trains or evaluates.

Layer: reporting. Every presenting hook (the evaluators' presentations included); imports
statistics, evaluators and the layers below, never the study.
"""
