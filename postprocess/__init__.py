"""Post-processing: every decision after inference, from per-frame results to blurred frames. Never
imports the handler, a model runtime or PyAV (tests/test_layering.py checks).

- decisions: ``shots`` (cuts), ``tracking`` (sequences: ``FaceLinker``), ``joining`` (``join_tracks``), ``interpolate``
  (gaps, padding), ``filtering`` (false positives), ``smoothing``, ``identity`` (who is who);
- the plan: ``config`` (``PlanConfig``), ``plan`` (``make_plan``), ``plan_format`` (``Plan``, the file);
- pixels: ``blur`` (``RenderConfig``, ``Blurrer``), ``render`` (frames of a store, resumable);
- data: ``results`` (frame results on disk), ``reading`` (frames, results, references from a store),
  ``storage`` (local folders and ``s3://``), ``parallel`` (``bounded_map``, thread counts);
- runs: ``run`` (``RunConfig``, plan/render/finalize steps), ``summary`` (``RunSummary``), ``options``
  (the command-line options, shared), ``__main__`` (``python -m postprocess``), ``lambda_handler``, ``batch``.
"""
