"""The debug overlay: every sequence's box in a frame, one colour per decision, with the detector's
score beside it. Used by the review page ("original with boxes") and ``face-blur render
--draw-boxes`` (a video of it), from the plan's JSON object.

Colours: blur red, keep green, drop (a likely false positive) grey, borderline (blurred, in doubt)
orange; a box the detector did not see in that frame (filled between detections, padded, or drawn
by a reviewer) is dashed-looking thin, a detection thick. The label is ``#<sequence> <decision>
<score>`` where the score is the detector's for that frame (``-`` where there was no detection).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLOURS = {"blur": (230, 40, 40), "keep": (40, 200, 70), "drop": (150, 150, 150), "borderline": (255, 150, 0)}


class Overlay:
    """Per-frame lookup of every sequence's box (all decisions), vectorised like ``Plan.boxes``."""

    def __init__(self, plan: dict[str, Any]) -> None:
        seqs = plan.get("sequences", [])
        self._seqs = seqs
        person_of = {}
        for p in plan.get("persons") or []:
            for i in p.get("sequences", []):
                person_of[int(i)] = str(p.get("id"))
        self._cards = [person_of.get(int(s["id"]), f"seq-{s['id']}") for s in seqs]
        if seqs:
            frames = np.concatenate([int(s["first"]) + np.arange(len(s["boxes"])) for s in seqs])
            owner = np.concatenate([np.full(len(s["boxes"]), k) for k, s in enumerate(seqs)])
            row = np.concatenate([np.arange(len(s["boxes"])) for s in seqs])
        else:
            frames = owner = row = np.zeros(0, np.int64)
        order = np.argsort(frames, kind="stable")
        self._frames, self._owner, self._row = frames[order], owner[order], row[order]

    def at(self, frame: int) -> list[dict[str, Any]]:
        """[{sequence, card, box, decision, borderline, kind (d/i/p or ''), score}] in ``frame``."""
        lo, hi = np.searchsorted(self._frames, [frame, frame + 1])
        out = []
        for k, r in zip(self._owner[lo:hi].tolist(), self._row[lo:hi].tolist(), strict=True):
            s = self._seqs[k]
            conf, rows = s.get("confidence"), s.get("rows") or ""
            kind = rows[r] if r < len(rows) else ""
            score = conf[r] if isinstance(conf, list) and r < len(conf) and kind == "d" else None
            out.append({"sequence": int(s["id"]), "card": self._cards[k], "box": [float(v) for v in s["boxes"][r]],
                        "decision": s["decision"], "borderline": bool(s.get("borderline")), "kind": kind,
                        "score": score})
        return out


def colour(entry: dict[str, Any]) -> tuple[int, int, int]:
    if entry["borderline"] and entry["decision"] == "blur":
        return COLOURS["borderline"]
    return COLOURS.get(entry["decision"], COLOURS["blur"])


def label(entry: dict[str, Any]) -> str:
    score = "-" if entry["score"] is None else f"{entry['score']:.2f}"
    kind = "borderline" if entry["borderline"] and entry["decision"] == "blur" else entry["decision"]
    return f"#{entry['sequence']} {kind} {score}"


def draw(rgb: np.ndarray, entries: list[dict[str, Any]]) -> np.ndarray:
    """``rgb`` with the boxes and labels drawn (a new array)."""
    image = Image.fromarray(rgb)
    pen = ImageDraw.Draw(image)
    h = rgb.shape[0]
    size = max(11, h // 40)
    font = ImageFont.load_default(size=size)
    width = max(3, h // 120)
    for e in entries:
        x1, y1, x2, y2 = e["box"]
        c = colour(e)
        pen.rectangle([x1, y1, x2, y2], outline=c, width=width if e["kind"] == "d" else max(1, width // 2))
        text = label(e)
        tx, ty = x1, max(0, y1 - size - 4)
        box = pen.textbbox((tx, ty), text, font=font)
        pen.rectangle([box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2], fill=c)
        pen.text((tx, ty), text, fill=(0, 0, 0), font=font)
    return np.asarray(image)
