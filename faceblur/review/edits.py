"""What the review page changes in a plan, as pure functions on the plan's JSON object.

The plan stays a ``face-blur/plan/v1`` object that ``postprocess.plan_format.Plan.from_dict`` reads and
``face-blur render --plan`` renders; fields this module does not know (added by other steps) are
kept as they are. The sequences stay authoritative for rendering: a card is a person (the plan's
``persons``, when it has them) or a single sequence, and flipping a card sets the decision of every
sequence it holds.

Every change appends an entry to the plan's ``audit`` list::

    {"time": "2026-12-01T21:40:00+00:00", "user": "editor", "action": "decision",
     "card": "person-1", "sequences": [7, 9], "old": "blur", "new": "keep"}
    {"time": ..., "user": ..., "action": "add", "card": "seq-31", "sequences": [31],
     "first": 120, "last": 180, "keyframes": [120, 180], "new": "blur"}
    {"time": ..., "user": ..., "action": "save", "from": "face-blur-plan.json", "sha256": "..."}

so the reviewed plan says who changed what, when, from which plan. Pure: callers pass ``user`` and
``now``; nothing here reads the clock, the OS user or a file.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DECISIONS = ("blur", "keep", "drop")
#: what the card's toggle does: keep -> blur, blur -> keep, drop (a likely false positive) -> blur
TOGGLE = {"blur": "keep", "keep": "blur", "drop": "blur"}


class EditError(ValueError):
    """An edit that does not fit the plan (the message names what is wrong)."""


@dataclass(frozen=True)
class Keyframe:
    """A box the reviewer drew on one frame."""

    frame: int
    box: tuple[float, float, float, float]


# ---------------------------------------------------------------------------------------------- cards


def _spans(frames: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Sorted, merged [first, last] runs."""
    out: list[list[int]] = []
    for first, last in sorted(frames):
        if out and first <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    return out


def _best_row(seq: dict[str, Any]) -> tuple[float, int, list[float]]:
    """(quality, frame, box) of the sequence's best-looking detection: size x detector score, on a
    detected row where the plan says which rows were detected."""
    boxes = np.asarray(seq["boxes"], np.float64).reshape(-1, 4)
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    quality = area.copy()
    conf = seq.get("confidence")
    if isinstance(conf, list) and len(conf) == len(boxes):
        quality = quality * np.asarray(conf, np.float64)
    rows = seq.get("rows") or ""
    if len(rows) == len(boxes) and "d" in rows:
        quality = np.where(np.frombuffer(rows.encode(), np.uint8) == ord("d"), quality, -1.0)
    r = int(np.argmax(quality))
    return float(quality[r]), int(seq["first"]) + r, boxes[r].tolist()


def _seq_card(seq: dict[str, Any]) -> dict[str, Any]:
    quality, frame, box = _best_row(seq)
    scores = seq.get("scores") or {}
    person = seq.get("person")
    score = scores.get(person) if person in scores else (max(scores.values()) if scores else None)
    last = int(seq["first"]) + len(seq["boxes"]) - 1
    return {"id": f"seq-{seq['id']}", "label": f"sequence {seq['id']}", "sequences": [int(seq["id"])],
            "frames": len(seq["boxes"]), "shots": [int(seq["shot"])], "spans": [[int(seq["first"]), last]],
            "thumbnail": {"frame": frame, "box": box}, "decision": seq["decision"],
            "borderline": bool(seq.get("borderline", False)), "score": score, "person": person,
            "reason": seq.get("reason", ""), "added": bool(seq.get("added")), "_quality": quality}


def cards(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """One card per person (``plan["persons"]``) or, without persons, per sequence; borderline first,
    then in order of appearance. A card's decision is read from its sequences: ``mixed`` when they
    disagree (a half-done hand edit), which renders as the sequences say."""
    by_id = {int(s["id"]): s for s in plan.get("sequences", [])}
    persons = plan.get("persons")
    out = []
    if isinstance(persons, list) and persons:
        claimed: set[int] = set()
        for p in persons:
            seqs = [by_id[i] for i in p.get("sequences", []) if i in by_id]
            if not seqs:
                continue
            claimed.update(int(s["id"]) for s in seqs)
            parts = [_seq_card(s) for s in seqs]
            decisions = {s["decision"] for s in seqs}
            best = max(parts, key=lambda c: c["_quality"])
            given = p.get("thumbnail")
            usable = isinstance(given, dict) and isinstance(given.get("frame"), int) and \
                isinstance(given.get("box"), list) and len(given["box"]) == 4
            thumb = given if usable else best["thumbnail"]
            out.append({
                "id": str(p.get("id")), "label": str(p.get("person") or p.get("id")),
                "sequences": [int(s["id"]) for s in seqs],
                "frames": int(p.get("frames") or sum(c["frames"] for c in parts)),
                "shots": sorted({int(x) for x in (p.get("shots") or [sh for c in parts for sh in c["shots"]])}),
                "spans": _spans([tuple(c["spans"][0]) for c in parts]),
                "thumbnail": thumb, "decision": decisions.pop() if len(decisions) == 1 else "mixed",
                "borderline": bool(p.get("borderline")) or any(c["borderline"] for c in parts),
                "score": p.get("score"), "person": p.get("person"),
                "reason": p.get("reason") or best["reason"], "added": any(c["added"] for c in parts),
            })
        out.extend(_seq_card(s) for i, s in by_id.items() if i not in claimed)
    else:
        out = [_seq_card(s) for s in by_id.values()]
    for c in out:
        c.pop("_quality", None)
    out.sort(key=lambda c: (not c["borderline"], c["spans"][0][0] if c["spans"] else 0))
    return out


def find_card(plan: dict[str, Any], card_id: str) -> dict[str, Any]:
    for c in cards(plan):
        if c["id"] == card_id:
            return c
    raise EditError(f"no card {card_id!r} in this plan")


# ---------------------------------------------------------------------------------------------- edits


def set_decision(plan: dict[str, Any], card_id: str, decision: str, user: str, now: str) -> dict[str, Any]:
    """A copy of ``plan`` where every sequence of the card has ``decision``; audited."""
    if decision not in DECISIONS:
        raise EditError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    card = find_card(plan, card_id)
    new = copy.deepcopy(plan)
    ids = set(card["sequences"])
    old = card["decision"]
    for s in new["sequences"]:
        if int(s["id"]) in ids and s["decision"] != decision:
            s["reason"] = f"set to {decision} in review by {user} (was {s['decision']}: {s.get('reason', '')})"
            s["decision"] = decision
    for p in new.get("persons") or []:
        if str(p.get("id")) == card_id:
            p["decision"] = decision
    new.setdefault("audit", []).append({"time": now, "user": user, "action": "decision", "card": card_id,
                                        "sequences": sorted(ids), "old": old, "new": decision})
    return new


def _frame_runs(plan: dict[str, Any]) -> list[list[int]]:
    return [list(r) for r in plan.get("frames") or []]


def _shot_of(plan: dict[str, Any], frame: int) -> int:
    for i, (first, last) in enumerate(plan.get("shots") or []):
        if first <= frame <= last:
            return i
    return 0


def carry_boxes(keyframes: Sequence[Keyframe], first: int, last: int) -> np.ndarray:
    """One box per frame ``first..last``: linear between the drawn boxes, held before the first
    and after the last one (a face a reviewer marks stays covered over the whole range)."""
    keys = sorted(keyframes, key=lambda k: k.frame)
    at = np.array([k.frame for k in keys], np.float64)
    boxes = np.array([k.box for k in keys], np.float64)
    frames = np.arange(first, last + 1, dtype=np.float64)
    return np.stack([np.interp(frames, at, boxes[:, j]) for j in range(4)], axis=1)


def add_sequence(plan: dict[str, Any], keyframes: Sequence[Keyframe], first: int, last: int, user: str,
                 now: str) -> tuple[dict[str, Any], int]:
    """A copy of ``plan`` with a new ``blur`` sequence over ``first..last`` (a face the detector
    missed), carried between the drawn boxes; returns it and the new sequence id."""
    if not keyframes:
        raise EditError("draw a box on at least one frame")
    if first > last:
        raise EditError(f"first frame {first} is after last frame {last}")
    runs = _frame_runs(plan)
    lowest = min((r[0] for r in runs), default=1)
    highest = max((r[1] for r in runs), default=last)
    if first < lowest or last > highest:
        raise EditError(f"frames {first}..{last} are outside the video (frames {lowest}..{highest})")
    w, h = int(plan.get("width") or 0), int(plan.get("height") or 0)
    for k in keyframes:
        if not first <= k.frame <= last:
            raise EditError(f"the box drawn on frame {k.frame} is outside the range {first}..{last}")
        x1, y1, x2, y2 = k.box
        if not all(np.isfinite(k.box)) or x2 - x1 < 2 or y2 - y1 < 2:
            raise EditError(f"the box on frame {k.frame} is empty or reversed: {list(k.box)}")
        if w and h and (x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h):
            raise EditError(f"the box on frame {k.frame} lies outside the {w}x{h} frame")
    if len({k.frame for k in keyframes}) != len(keyframes):
        raise EditError("two boxes drawn on one frame; keep one per frame")
    boxes = carry_boxes(keyframes, first, last)
    if w and h:
        boxes = np.clip(boxes, 0, [w, h, w, h])
    new = copy.deepcopy(plan)
    seqs = new.setdefault("sequences", [])
    sid = max((int(s["id"]) for s in seqs), default=0) + 1
    drawn = sorted(k.frame for k in keyframes)
    rows = "".join("d" if f in drawn else "i" for f in range(first, last + 1))
    seqs.append({"id": sid, "shot": _shot_of(plan, first), "first": first, "last": last, "rows": rows,
                 "boxes": np.round(boxes, 1).tolist(), "samples": 0, "scores": {}, "person": None,
                 "threshold": None, "margin": None, "decision": "blur",
                 "reason": f"added in review by {user}: a face the detector missed, drawn on frame(s) "
                           f"{', '.join(map(str, drawn))}", "borderline": False, "added": True})
    if isinstance(new.get("persons"), list) and new["persons"]:
        new["persons"].append({"id": f"added-{sid}", "sequences": [sid], "frames": last - first + 1,
                               "shots": [_shot_of(plan, first)], "decision": "blur", "borderline": False,
                               "score": None, "person": None, "reason": "added in review"})
    new.setdefault("audit", []).append({"time": now, "user": user, "action": "add", "card": f"seq-{sid}",
                                        "sequences": [sid], "first": first, "last": last, "keyframes": drawn,
                                        "new": "blur"})
    return new, sid


def remove_added(plan: dict[str, Any], sequence_id: int, user: str, now: str) -> dict[str, Any]:
    """Undo :func:`add_sequence` (only sequences added in review can be removed)."""
    new = copy.deepcopy(plan)
    seqs = new.get("sequences", [])
    target = next((s for s in seqs if int(s["id"]) == sequence_id), None)
    if target is None or not target.get("added"):
        raise EditError(f"sequence {sequence_id} was not added in review; flip its decision instead")
    new["sequences"] = [s for s in seqs if s is not target]
    if isinstance(new.get("persons"), list):
        new["persons"] = [p for p in new["persons"] if p.get("sequences") != [sequence_id]]
    new.setdefault("audit", []).append({"time": now, "user": user, "action": "remove", "card": f"seq-{sequence_id}",
                                        "sequences": [sequence_id], "old": "blur"})
    return new


def note_save(plan: dict[str, Any], source_name: str, source_sha256: str, user: str, now: str) -> dict[str, Any]:
    new = copy.deepcopy(plan)
    new.setdefault("audit", []).append({"time": now, "user": user, "action": "save", "from": source_name,
                                        "sha256": source_sha256})
    return new
