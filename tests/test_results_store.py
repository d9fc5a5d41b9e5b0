"""Frame results kept on disk (postprocess/results.py): what hours of video need."""

from __future__ import annotations

import numpy as np

from contract import FrameFaces, FrameResult, dumps
from postprocess.results import ResultStore


def _result(n: int, seed: int) -> FrameResult:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 192))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    xy = rng.uniform(0, 500, (n, 2))
    faces = FrameFaces(np.hstack([xy, xy + 40]), rng.uniform(0.5, 1, n), np.repeat(xy[:, None], 5, 1), emb)
    return FrameResult(640, 360, faces, "centerface", "mobilefacenet", rng.uniform(0, 1, 128))


def test_results_come_back_by_frame_number_in_order_whatever_order_they_were_added():
    store = ResultStore()
    frames = [7, 3, 11, 1, 5]
    originals = {f: _result(f % 3, f) for f in frames}
    for f in frames:
        store.add(f, originals[f])
    assert list(store) == sorted(frames) and len(store) == 5
    assert store.faces == sum(len(r.faces) for r in originals.values())
    for f in frames:
        back = store[f]
        assert back.faces.frame_index == f
        np.testing.assert_array_equal(back.faces.xyxy, originals[f].faces.xyxy)
        np.testing.assert_array_equal(back.faces.embedding, originals[f].faces.embedding)
        assert back.embedder == originals[f].embedder
    assert 4 not in store
    store.close()


def test_memory_holds_an_index_not_the_results():
    import tracemalloc

    store = ResultStore()
    result = _result(3, 0)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for f in range(20_000):  # 20,000 frames of 3 faces: about 45 MB of JSON
        store.add(f, result)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(dumps(result)) * 20_000 > 30_000_000
    assert grown < 2_000_000, f"{grown:,} bytes held for 20,000 results"
    assert len(store[19_999].faces) == 3
    store.close()
