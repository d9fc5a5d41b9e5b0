"""What a run did, one record for every kind of run: ``python -m postprocess``, the Lambda and Batch
jobs (``postprocess.run.run``: printed as JSON) and the local command (``face-blur run``/``render``,
``faceblur.local``: closing lines on stderr). Fields a kind of run does not have keep their default."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunSummary:
    output: str
    frames: int = 0
    faces: int = 0
    plan: dict[str, Any] = field(default_factory=dict)  # Plan.summary
    seconds: float = 0.0  # wall time of the whole run
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage (local: load, detect, ...)
    # the post-processing run (frames already on a store)
    digest: str = ""
    rendered: int = 0
    copied: int = 0
    skipped: int = 0
    full_frames: int = 0
    missing_results: list[int] = field(default_factory=list)
    already_complete: bool = False
    # the local command
    kind: str = ""  # video | photo | frames
    input: str = ""
    detector: str = ""
    embedder: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. a truncated input, frames resumed
    analysis: Any = None  # faceblur.schedule.Tally of an adaptive run: .line() (None: every frame analysed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The closing summary of the local command."""
        total = sum(self.stages.values()) or self.seconds
        p = self.plan
        out = [f"{self.kind} {self.input} -> {self.output}",
               f"frames {self.frames}, faces detected {self.faces}, sequences {p.get('sequences', 0)}: "
               f"blurred {p.get('blurred', 0)}, kept {p.get('kept', 0)}, borderline {p.get('borderline', 0)} "
               f"(blurred), dropped (not confirmed as faces) {p.get('dropped', 0)}; whole frames blurred "
               f"{p.get('full_frames', 0)}; mode {p.get('mode', '')}"]
        if self.detector or self.embedder:
            out.append(f"detector {self.detector or '-'}, embedder {self.embedder or 'none'}")
        if self.analysis is not None:
            out.append(self.analysis.line())
        if p.get("fail_closed"):  # identity not decided (postprocess/guard.py): why, and the fix
            out.append(str(p["fail_closed"]))
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.stages.items())
        rate = f" ({self.frames / total:.1f} frames/s)" if total > 0 and self.frames else ""
        out.append(f"time {total:.1f}s{rate}: {stages}")
        out.extend(f"note: {note}" for note in self.notes)
        return out
