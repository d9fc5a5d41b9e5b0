"""Per-frame inference: one upright RGB frame in, its faces (boxes, landmarks, embeddings) and frame
signature out, as a ``contract.FrameResult``. Runs in-process (``face-blur run``) or behind the
server in :mod:`handler.serving`, which this part never imports.

- ``pipeline``: ``PipelineConfig``, ``FacePipeline`` (detector + embedder + signature), ``load_pipeline``;
- ``detector``: the ``Detector`` interface, ``DetectorConfig``, ``FrameDetector`` (resizing, dark frames);
- ``detector_factory``: ``create_detector`` and where the detector model files are (``model.locate``);
- ``mtcnn``, ``centerface``: the networks; ``ensemble``: both fused; ``enhance``: the dark-frame step;
- ``boxes``: NMS, clipping, squaring (IoU itself is ``contract.boxes``);
- ``embedder``: the ``Embedder`` interface and ``create_embedder``; ``arcface``, ``dlib_embedder``: the
  backends; ``align``: the 5-point alignment;
- ``signature``: the frame signature for cut detection; ``runtime``: onnxruntime sessions and devices;
- ``serve``: the container's entry point (``python -m handler.serve``) into ``handler.serving``.
"""
