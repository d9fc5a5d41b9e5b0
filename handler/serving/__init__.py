"""Serving: the per-frame inference of :mod:`handler` behind HTTP on multi-model-server.

- ``serve``: the supervisor (``python -m handler.serve``): config, the gate, MMS, stop on signals;
- ``gate``: the public port (/ping only when every worker is loaded; body limit before MMS);
- ``mms``: multi-model-server's properties and JVM command line;
- ``service``: the toolkit's handler service each MMS worker runs (decode, analyse, encode);
- ``decode``: request body + Content-Type -> upright RGB frame, within the limits;
- ``errors``: typed errors carrying their HTTP status, JSON bodies;
- ``config``: :class:`ServingConfig` from the environment (holding the ``PipelineConfig``);
- ``machine``: memory, CPU and GPU probes, and the default worker count.

The inference modules (``handler.pipeline``, detectors, embedders) never import this package.
"""
