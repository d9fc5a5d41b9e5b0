"""The ``face-blur`` command: composes :mod:`handler` (inference) and :mod:`postprocess` (decisions,
blur) on one machine, and drives the AWS path.

- ``cli``: the options and sub-commands (run, render, serve, transform, postprocess);
- ``local``: ``face-blur run``/``render`` on a video, a photo or a folder of frames;
- ``transform``: ``face-blur transform``, a local Batch Transform against a running server;
- ``segments``: adaptive analysis on AWS, one child of an AWS Batch array job over a video's frames
  in S3 (``python -m faceblur.segments``, run in the inference image);
- ``video/``: video in and out with PyAV (probe, decode, encode, rewrite, the AWS split and join);
- ``progress``: the progress bars.
"""
