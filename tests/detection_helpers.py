"""The detection photo set moved to bench/detection_set.py (tests and benchmarks share it, and bench/
never imports tests/); this name is kept for tests written against the old one."""

from bench.detection_set import *  # noqa: F403
