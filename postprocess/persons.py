"""People across the whole video: sequences linked into persons, and identity verdicts revised per person.

A sequence is decided on its own samples first (``identity.assess``). That fails in two ways on real
footage: the same person in a far, dim shot scores inside the zone of doubt (the reporter blurred in
``unknown``), and a face cut by the frame border scores like anyone. Here the sequences of the video
are linked into persons, and each verdict is revised with what the rest of the video says, only
ever in the direction that is safe for the mode:

1. **Evidence per sequence**: the quality-weighted mean of its sample embeddings (unit length),
   its detected frames, whether it is *partial* (most samples cut by the frame border,
   ``identity.border_weights`` < 0.5) and its median sample quality (*poor* below ``POOR``).
2. **Links**: cosine similarity of two sequences' mean embeddings. Two sequences detected in the
   same frame are never one person (a cannot-link). Within a shot, a sequence that starts where
   another ended (box overlap, at most ``CONTINUITY_GAP`` frames later) and does not contradict it
   (link >= weak) counts as a strong link: continuity. A *fragment* (fewer than ``min_samples``
   samples) starting at most ``FRAGMENT_GAP`` frames after another sequence ended, in its place
   (IoU >= 0.3), never beside it, is a piece of it whatever the embeddings say (:func:`fragments`).
3. **Persons**: sequences joined greedily by their strongest links >= ``strong`` (per embedder,
   :data:`LINKS`), two groups merged only when their average link is >= ``strong`` and no
   cannot-link separates them. Every other sequence is a person of its own.
4. **Revisions, per person P that sequences are compared with** (a reference, or a pick):

   - *poor faces do not rule P out* where matching P blurs (``known``, ``select`` with ``blur``):
     a poor sequence's non-match scoring at least ``T - M - w x M`` is borderline, ``w`` from 0.5 at
     quality ``POOR`` to 1 at half that and below (:func:`_widen`; measured on the development clips: the
     witness far and dim, 40 px, scored 0.216, under ``T - M`` = 0.22, and was left clear; at that
     quality others score up to 0.23; a 20 px witness in a crowd scored 0.11 against her own photo).
     Its person's good clear non-match, or a certain match of P beside it, still decides it (below).
   - *carry a certain match*: a person holding a clear (not partial) match of P and no clear
     non-match makes its doubtful members (borderline on too few samples or inside the zone, and
     partial ones) matches too. A person holding both a clear match and a clear non-match is in
     conflict: every member becomes borderline (blurred in every mode).
   - *carry a certain non-match* to the partial, borderline members (and the poor ones above) of a
     person that holds a clear, whole, not poor non-match and no match (a face cut by the border
     is decided by the rest of the person).
   - *a fragment takes the verdict of the sequence it is a piece of* (step 2), unless its own
     score contradicts it (a match carried only if its own score reaches ``T - M``, a non-match
     only if its own score stays under ``T + M``).
   - *one face per person per frame*: two sequences detected in the same frame that both match P
     cannot both be P: both become borderline. Where matching P blurs, a borderline sequence (whole
     and in the zone, or poor and ruled out poorly above; enough samples; not linked to it, >= weak)
     seen for at least 3 frames beside a certain, whole match of P
     (or P's pick) scoring at least two margins higher is not P: the witness cannot be twice in a
     frame, so the bystander beside her is kept clear.
   - *open set, per video*: where matching P keeps a face clear (``unknown``, ``select`` with
     ``keep``), a match is only certain when no sequence of someone else (not even weakly linked
     to the person) scores within the margin of the person's best clear match on at least
     ``min_samples`` samples: a look-alike in the video makes it borderline. Where matching P
     blurs (``known``, ``select`` with ``blur``), a non-match that stands out from the rest of the
     video's population (>= mean + 4 standard deviations of the others' scores, the deviation
     counted at least 0.08, at least 3 others; and within one margin below the zone) is
     borderline; so is a non-match weakly linked (>= ``weak``) to a match or borderline sequence
     of P (a borderline one only where its own score is not clearly below the zone). Blurring on a
     weak link is safe there; un-blurring never rests on one.

   Sequences split by a mixed score (tracking joined two people) stay borderline. What is still in
   doubt is blurred.

The plan's ``persons`` list (:func:`persons_list`), one entry per person::

    {"id": "person-1", "sequences": [7, 9], "frames": 240, "shots": [0, 2],
     "thumbnail": {"frame": 130, "box": [x1, y1, x2, y2]}, "decision": "blur" | "keep" | "drop",
     "borderline": false, "score": 0.61 | null, "person": "alice" | null, "reason": "one line"}

Every sequence is in exactly one person; ids ``person-1``.. follow first appearance (stable within
a plan, not across re-runs); ``frames`` counts detected and interpolated frames (not padding);
``thumbnail`` is the best-quality detected face (size x score x frontality x wholeness); ``score``
the best score of its sequences against the reference it matched (else against anyone), null
without scores; ``person`` the reference it matched. ``decision`` follows the sequences: ``keep`` or
``drop`` when all agree (drops ignored beside others), else ``blur``, borderline when they differ or
a blurred one is borderline. The sequences remain authoritative for rendering. Nothing here keeps
an embedding beyond the call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from postprocess.identity import (
    BORDERLINE,
    MATCH,
    NO_MATCH,
    Decision,
    PersonScore,
    assess,
    decide,
    quality_weights,
)
from postprocess.tracking import FaceTrack

#: Per embedder, (weak, strong) link thresholds on the cosine similarity of two sequences' mean
#: embeddings. ``strong``: the same person with certainty (measured on the identity development clips,
#: README "People across the video"); ``weak``: possibly the same person (used only to blur more).
LINKS: dict[str, tuple[float, float]] = {
    "mobilefacenet": (0.35, 0.55),
    "arcface-r100": (0.30, 0.50),  # provisional, as its identity thresholds
    "arcface-r100-int8": (0.30, 0.50),
    "dlib-resnet": (0.94, 0.97),  # photos: same person >= 0.944, different people up to 0.965
}
CONTINUITY_GAP = 30  # frames: a sequence starting where another ended this soon after continues it
FRAGMENT_GAP = 2  # frames: a fragment (too few samples) this close to a sequence's end, in place, is its piece
PARTIAL = 0.5  # median border weight below which a sequence is a partial face
POOR = 0.5  # median sample quality below which a low score does not rule a person out (blur side)...
POOR_WIDEN = 1.5  # ...unless under T - 1.5 M: the zone of doubt reaches half a margin lower for poor faces
COOCCUR = 3  # frames two sequences must share to count as two people seen together
OUTLIER_SIGMAS = 4.0  # a non-match this many spreads above the video's other people is in doubt (known)...
OUTLIER_MIN_SPREAD = 0.08  # ...the spread never counted smaller (a few sequences scoring alike say little)
OUTLIER_MIN_PEOPLE = 3


@dataclass
class Evidence:
    """What linking needs of one scored sequence (no embedding leaves this module)."""

    track_id: int
    shot: int
    first: int  # first and last detected frame
    last: int
    mean: np.ndarray  # (d,) unit quality-weighted mean embedding
    partial: bool
    end_box: np.ndarray
    start_box: np.ndarray
    samples: int = 0  # sample embeddings behind ``mean``
    quality: float = 1.0  # median sample quality (identity.quality_weights: size x score x frontality x wholeness)


def evidence(track: FaceTrack, samples: np.ndarray, weights: np.ndarray, border: np.ndarray) -> Evidence | None:
    """The sequence's evidence, or None without samples."""
    if not len(samples) or not track.detected.any():
        return None
    mean = (np.asarray(weights, np.float64)[:, None] * _unit(samples)).sum(axis=0)
    norm = np.linalg.norm(mean)
    if norm <= 0:
        return None
    rows = np.flatnonzero(track.detected)
    return Evidence(track.track_id, track.shot, int(track.frames[rows[0]]), int(track.frames[rows[-1]]),
                    mean / norm, bool(np.median(border) < PARTIAL), track.xyxy[rows[-1]], track.xyxy[rows[0]],
                    len(samples), float(np.median(weights)))


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def link_matrix(items: list[Evidence], weak: float, strong: float) -> tuple[np.ndarray, np.ndarray]:
    """(n,n) links (cosine of the means, raised to ``strong`` for continuity) and (n,n) cannot-link mask."""
    n = len(items)
    if not n:
        return np.zeros((0, 0)), np.zeros((0, 0), bool)
    means = np.stack([e.mean for e in items])
    links = means @ means.T
    first = np.array([e.first for e in items])
    last = np.array([e.last for e in items])
    apart = (first[:, None] <= last[None, :]) & (first[None, :] <= last[:, None])
    np.fill_diagonal(apart, False)
    shots = np.array([e.shot for e in items])
    for shot in np.unique(shots):  # continuity: only sequences of one shot, few per shot
        members = np.flatnonzero(shots == shot).tolist()
        for i in members:
            for j in members:
                a, b = items[i], items[j]
                if 0 < b.first - a.last <= CONTINUITY_GAP and links[i, j] >= weak \
                        and _iou(a.end_box, b.start_box) >= 0.3:
                    links[i, j] = links[j, i] = max(links[i, j], strong)
    links[apart] = -np.inf
    np.fill_diagonal(links, 1.0)
    return links, apart


def _widen(quality: float) -> float:
    """How many margins below ``T - M`` a poor face's non-match must score: half a margin at quality
    ``POOR``, one margin (``T - 2M``) at half that quality and below (a 20 px dim face in a crowd
    scored 0.11 against its own source photo; a face cut by the border -0.03 against someone else's)."""
    return (POOR_WIDEN - 1) + 0.5 * min(1.0, max(0.0, POOR - quality) / (POOR / 2))


def fragments(items: list[Evidence], apart: np.ndarray, min_samples: int) -> dict[int, int]:
    """{fragment index: index of the sequence it is a piece of}. A fragment has fewer than
    ``min_samples`` samples (too few to decide on its own) and starts at most ``FRAGMENT_GAP`` frames
    after another sequence of its shot ended (or ends that soon before one starts), its box on that
    one's end box (IoU >= 0.3), never seen beside it: tracking split one face (measured: a face
    leaving by the frame border loses its track for its last detection, whose half-face embedding
    links to the rest at 0.30, under the weak link). The embeddings are not asked: a fragment's
    one or two samples say little, often of half a face."""
    out: dict[int, int] = {}
    for i, a in enumerate(items):
        if a.samples >= min_samples:
            continue
        best, best_iou = -1, 0.3
        for j, b in enumerate(items):
            if j == i or b.shot != a.shot or apart[i, j] or b.samples < min_samples:
                continue
            if 0 < a.first - b.last <= FRAGMENT_GAP:
                iou = _iou(b.end_box, a.start_box)
            elif 0 < b.first - a.last <= FRAGMENT_GAP:
                iou = _iou(a.end_box, b.start_box)
            else:
                continue
            if iou >= best_iou:
                best, best_iou = j, iou
        if best >= 0:
            out[i] = best
    return out


def cluster(links: np.ndarray, apart: np.ndarray, strong: float) -> list[list[int]]:
    """Groups of indices (see the module docstring, step 3), each sorted, in order of their first index."""
    n = len(links)
    group = list(range(n))
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    ii, jj = np.nonzero(np.triu(links >= strong, k=1))
    order = np.argsort(-links[ii, jj], kind="stable")
    for i, j in zip(ii[order].tolist(), jj[order].tolist(), strict=True):
        gi, gj = group[i], group[j]
        if gi == gj:
            continue
        a, b = members[gi], members[gj]
        block = links[np.ix_(a, b)]
        if apart[np.ix_(a, b)].any() or block.mean() < strong:
            continue
        members[gi] = a + b
        for k in b:
            group[k] = gi
        del members[gj]
    return sorted((sorted(m) for m in members.values()), key=lambda m: m[0])


def _overlap(a: Evidence, b: Evidence) -> int:
    """Frames both sequences span."""
    return max(0, min(a.last, b.last) - max(a.first, b.first) + 1)


def _mixed(score: PersonScore, threshold: float, margin: float, min_samples: int) -> bool:
    """The two halves of the sequence disagree (tracking may have joined two people): one half
    clearly does not match (under threshold - margin) while the sequence or its other half clearly
    does (threshold + margin). A borderline sequence whose halves both lie at or above threshold -
    margin is one person scoring unevenly (a far, small face: halves 0.51 and 0.59 against a band of
    0.22..0.58 on tests/test_identity_video.py's wide shot, sampled by adaptive analysis), not two;
    others score up to 0.23 on the dev set."""
    if score.samples < 2 * min_samples:
        return False
    hi, lo = threshold + margin, threshold - margin
    return min(score.halves) < lo and (score.score >= hi or max(score.halves) >= hi)


@dataclass
class PersonsResult:
    decisions: dict[int, Decision]
    groups: list[list[int]]  # track ids per person, persons in order of first appearance
    revised: dict[int, str]  # track id -> why its verdict changed


def revise(tracks: list[FaceTrack], decisions: Mapping[int, Decision], scores: Mapping[int, Mapping[str, PersonScore]],
           items: Mapping[int, Evidence], *, mode: str, pick_action: str, threshold: float, margin: float,
           min_samples: int, embedder: str, picked: Mapping[str, int] | None = None) -> PersonsResult:
    """Link sequences into persons and revise the identity decisions (module docstring)."""
    order = {t.track_id: (t.first, t.track_id) for t in tracks}
    ids = sorted(items, key=lambda k: order[k])
    ev = [items[k] for k in ids]
    weak, strong = LINKS.get(embedder, (np.inf, np.inf))
    links, apart = link_matrix(ev, weak, strong)
    split = fragments(ev, apart, min_samples)
    for i, j in split.items():  # a fragment is one person with the sequence it is a piece of
        links[i, j] = links[j, i] = max(links[i, j], strong)
    pieces = {ids[i]: ids[j] for i, j in split.items()}
    groups = [[ids[i] for i in g] for g in cluster(links, apart, strong)] if ev else []
    where = {tid: i for i, tid in enumerate(ids)}
    group_of = {tid: gi for gi, g in enumerate(groups) for tid in g}
    out = dict(decisions)
    revised: dict[int, str] = {}
    pick_tracks = {tid: f"pick {name}" for name, tid in (picked or {}).items()}  # as _decide names the person
    if mode in ("unknown", "known", "select") and ev:
        blur_side = mode == "known" or (mode == "select" and pick_action == "blur")
        people = sorted({p for sc in scores.values() for p in sc})
        verdicts: dict[int, dict[str, tuple[str, str]]] = {
            tid: {p: assess(s, threshold, margin, min_samples) for p, s in scores[tid].items()}
            for tid in ids if tid in scores}
        for person in people:
            _revise_person(person, ids, where, groups, group_of, links, apart, scores, verdicts, items,
                           blur_side, threshold, margin, min_samples, weak, pick_tracks, pieces)
        for tid, v in verdicts.items():
            if tid in pick_tracks:
                continue
            new = decide(mode, scores[tid], threshold, margin, min_samples, pick_action, assessed=v)
            if (new.decision, new.borderline) != (out[tid].decision, out[tid].borderline):
                revised[tid] = new.reason
            out[tid] = new
    known = {tid for g in groups for tid in g}
    rest = sorted((t.track_id for t in tracks if t.track_id not in known), key=lambda k: order[k])
    all_groups = sorted(groups + [[tid] for tid in rest], key=lambda g: min(order[t] for t in g))
    return PersonsResult(out, all_groups, revised)


def _revise_person(person: str, ids: list[int], where: dict[int, int], groups: list[list[int]],
                   group_of: dict[int, int], links: np.ndarray, apart: np.ndarray,
                   scores: Mapping[int, Mapping[str, PersonScore]], verdicts: dict[int, dict[str, tuple[str, str]]],
                   items: Mapping[int, Evidence], blur_side: bool, threshold: float, margin: float,
                   min_samples: int, weak: float, pick_tracks: Mapping[int, str],
                   pieces: Mapping[int, int]) -> None:
    """Revise every sequence's verdict for ``person`` in place (module docstring, step 4)."""
    def verdict(tid: int) -> str:
        if pick_tracks.get(tid) == person:
            return MATCH
        v = verdicts.get(tid, {}).get(person)
        return v[0] if v else ""

    def score(tid: int) -> float:
        s = scores.get(tid, {}).get(person)
        return float(s.score) if s is not None and np.isfinite(s.score) else float("nan")

    def settable(tid: int) -> bool:
        s = scores.get(tid, {}).get(person)
        return s is not None and tid in verdicts and not _mixed(s, threshold, margin, min_samples)

    def set_(tid: int, v: str, why: str) -> None:
        verdicts[tid][person] = (v, why)

    # poor faces cannot rule the person out (known / select-blur): small, dim or cut faces of the
    # person score as low as others' (dev set: far and dim, 0.22-0.33 whole; others up to 0.23)
    ruled_out_poorly: set[int] = set()
    if blur_side:
        for t in ids:
            if verdict(t) == NO_MATCH and items[t].quality < POOR and settable(t) and t not in pick_tracks \
                    and score(t) >= threshold - margin - _widen(items[t].quality) * margin:
                set_(t, BORDERLINE, f"score {score(t):.3f} < {threshold - margin:.3f}, but its faces are too small, "
                                    f"dim or cut (quality {items[t].quality:.2f} < {POOR}) to rule {person!r} out")
                ruled_out_poorly.add(t)
    # carry within persons
    for members in groups:
        if len(members) < 2:
            continue
        match = [t for t in members if verdict(t) == MATCH and not items[t].partial]
        clear_no = [t for t in members if verdict(t) == NO_MATCH and not items[t].partial
                    and t not in ruled_out_poorly]
        label = ", ".join(str(t) for t in members)
        if match and clear_no:
            for t in members:
                if t in verdicts and person in verdicts[t]:
                    set_(t, BORDERLINE, f"its person (sequences {label}) both matches {person!r} (sequence "
                                        f"{match[0]}) and does not (sequence {clear_no[0]})")
        elif match:
            for t in members:
                if verdict(t) != MATCH and settable(t) and (verdict(t) == BORDERLINE or items[t].partial):
                    set_(t, MATCH, f"same person as sequence {match[0]}, which matches {person!r} with certainty "
                                   f"(link {links[where[t], where[match[0]]]:.2f}; own score {score(t):.3f})")
        elif clear_no:
            for t in members:
                if verdict(t) == BORDERLINE and (items[t].partial or t in ruled_out_poorly) and settable(t):
                    kind = "a partial face" if items[t].partial else "a poor face"
                    set_(t, NO_MATCH, f"{kind} of the person of sequence {clear_no[0]}, which does not "
                                      f"match {person!r} (own score {score(t):.3f})")
    # a fragment takes the verdict of the sequence it is a piece of, unless its own samples say otherwise
    for f, whole in pieces.items():
        v = verdict(whole)
        if verdict(f) != BORDERLINE or v not in (MATCH, NO_MATCH) or not settable(f):
            continue
        own = score(f)
        if (v == MATCH and own >= threshold - margin) or (v == NO_MATCH and own < threshold + margin):
            set_(f, v, f"a fragment ({scores[f][person].samples} samples) of sequence {whole}, which "
                       f"{'matches' if v == MATCH else 'does not match'} {person!r} (own score {own:.3f})")
    # one face per person per frame
    matched = [t for t in ids if verdict(t) == MATCH]
    for a in matched:
        for b in matched:
            if a < b and apart[where[a], where[b]]:
                for t, other in ((a, b), (b, a)):
                    if t in verdicts and person in verdicts[t]:
                        set_(t, BORDERLINE, f"sequence {other}, seen in the same frames, matches {person!r} too")
    # someone seen beside a certain match of P is not P (known / select-blur: un-blurs a borderline)
    if blur_side:
        sure = [u for u in ids if verdict(u) == MATCH and not items[u].partial and u not in pick_tracks
                and np.isfinite(score(u))] + [u for u in ids if pick_tracks.get(u) == person]
        for t in ids:
            # a poor face inside the zone may be her (her image, tiny in a crowd): only a poor face that
            # scored clearly below the zone (ruled out poorly, above) is restored by the witness beside it
            weak_evidence = items[t].partial or items[t].quality < POOR
            if verdict(t) != BORDERLINE or (weak_evidence and t not in ruled_out_poorly) or not settable(t) \
                    or scores[t][person].samples < min_samples:
                continue
            # ...unless it looks like her (weak link): her image on a screen, a poster, in a mirror
            beside = [u for u in sure if apart[where[t], where[u]] and _overlap(items[t], items[u]) >= COOCCUR
                      and (u in pick_tracks or score(u) - score(t) >= 2 * margin) and links[where[t], where[u]] < weak]
            if beside:
                u = beside[0]
                set_(t, NO_MATCH, f"seen in the same frames as sequence {u}, which is {person!r} with certainty "
                                  f"(own score {score(t):.3f})")
    # open set: the rest of this video's people
    for t in ids:
        v = verdict(t)
        if t not in verdicts or person not in verdicts[t] or not np.isfinite(score(t)):
            continue
        others = [u for u in ids if u != t and group_of.get(u) != group_of.get(t) and np.isfinite(score(u))]
        if not blur_side and v == MATCH:
            # the person's certain score: its best clear match (a carried match rests on that one)
            own = [score(m) for m in groups[group_of[t]] if verdict(m) == MATCH and not items[m].partial
                   and np.isfinite(score(m))] or [score(t)]
            best = max(own)
            rivals = [u for u in others if verdict(u) != MATCH and scores[u][person].samples >= min_samples
                      and score(u) >= best - margin
                      and all(links[where[m], where[u]] < weak for m in groups[group_of[t]])]
            if rivals:
                u = max(rivals, key=score)
                set_(t, BORDERLINE, f"its person scores {best:.3f} but sequence {u}, another person of this video, "
                                    f"scores {score(u):.3f} against {person!r}")
        elif blur_side and v == NO_MATCH:
            # a borderline sequence is evidence of P only where its own score is not clearly below
            # the zone (one sample of a crossing face at 0.16 says nothing of P)
            near = [u for u in ids
                    if u != t and links[where[t], where[u]] >= weak and (verdict(u) == MATCH or (
                        verdict(u) == BORDERLINE and not score(u) < threshold - POOR_WIDEN * margin))]
            if near:
                u = max(near, key=lambda u: links[where[t], where[u]])
                set_(t, BORDERLINE, f"may be the same person as sequence {u} ({verdict(u)} for {person!r}, "
                                    f"link {links[where[t], where[u]]:.2f}); blurred to be safe")
                continue
            pop = np.array([score(u) for u in others if verdict(u) == NO_MATCH])
            if len(pop) >= OUTLIER_MIN_PEOPLE:
                mu, sigma = float(pop.mean()), max(float(pop.std()), OUTLIER_MIN_SPREAD)
                if score(t) >= mu + OUTLIER_SIGMAS * sigma and score(t) >= threshold - 2 * margin:
                    set_(t, BORDERLINE, f"score {score(t):.3f} stands out from the {len(pop)} other people of this "
                                        f"video (mean {mu:.3f}); blurred to be safe")


def link_persons(tracks: list[FaceTrack], decisions: Mapping[int, Decision],
                 scores: Mapping[int, Mapping[str, PersonScore]],
                 sampled: Mapping[int, tuple[np.ndarray, np.ndarray, np.ndarray]], config,
                 threshold: float, margin: float, embedder: str, picked: Mapping[str, int],
                 frame_size: tuple[int, int] | None) -> tuple[dict[int, Decision], list[dict]]:
    """``make_plan``'s step: revised decisions and the plan's persons list. ``sampled``: per scored
    track id, its sample embeddings, quality weights and border weights; ``config`` a PlanConfig."""
    by_id = {t.track_id: t for t in tracks}
    items = {tid: e for tid, (emb, w, b) in sampled.items() if (e := evidence(by_id[tid], emb, w, b)) is not None}
    linked = revise(tracks, decisions, scores, items, mode=config.mode, pick_action=config.pick_action,
                    threshold=threshold, margin=margin, min_samples=config.min_samples, embedder=embedder,
                    picked=picked)
    thumbs = {t.track_id: quality_weights(t.xyxy, t.confidence, t.landmarks, frame_size) * t.detected
              for t in tracks}
    persons = persons_list(linked.groups, by_id, linked.decisions, scores, thumbs, {t.track_id: t.shot for t in tracks})
    return linked.decisions, persons


def persons_list(groups: list[list[int]], tracks: Mapping[int, FaceTrack], decisions: Mapping[int, Decision],
                 scores: Mapping[int, Mapping[str, PersonScore]], thumb_weights: Mapping[int, np.ndarray],
                 shot_of: Mapping[int, int]) -> list[dict]:
    """The plan's ``persons`` entries (README "The plan"): one per group, ids ``person-1``.. in order."""
    out = []
    for k, members in enumerate(groups, start=1):
        ds = [decisions[t] for t in members]
        kinds = {d.decision for d in ds}
        live = kinds - {"drop"} or kinds
        if live == {"keep"}:
            decision, borderline = "keep", False
        elif live == {"drop"}:
            decision, borderline = "drop", False
        else:
            decision = "blur"
            borderline = any(d.borderline for d in ds if d.decision == "blur") or "keep" in live
        named = [d.person for d in ds if d.person and not d.person.startswith("pick ")]
        person = max(set(named), key=named.count) if named else None
        vals = [float(scores[t][p].score) for t in members for p in ([person] if person else scores.get(t, {}))
                if t in scores and p in scores[t] and np.isfinite(scores[t][p].score)]
        best_score = round(max(vals), 4) if vals else None
        if "keep" in live and "blur" in live:
            reason = (f"sequences differ ({sum(d.decision == 'blur' for d in ds)} blurred, "
                      f"{sum(d.decision == 'keep' for d in ds)} kept); each sequence is rendered as decided")
        else:
            reason = next(d.reason for d in ds if d.decision == decision)
        thumb = _thumbnail(members, tracks, thumb_weights)
        out.append({"id": f"person-{k}", "sequences": list(members),
                    "frames": int(sum(int((~tracks[t].padded).sum()) for t in members)),
                    "shots": sorted({int(shot_of[t]) for t in members}), "thumbnail": thumb,
                    "decision": decision, "borderline": bool(borderline), "score": best_score,
                    "person": person, "reason": reason})
    return out


def _thumbnail(members: list[int], tracks: Mapping[int, FaceTrack], weights: Mapping[int, np.ndarray]) -> dict | None:
    best: tuple[float, int, list[float]] | None = None
    for t in members:
        track, w = tracks[t], weights[t]
        rows = np.flatnonzero(track.detected)
        if not len(rows):
            continue
        r = rows[int(np.argmax(w[rows]))]
        if best is None or w[r] > best[0]:
            best = (float(w[r]), int(track.frames[r]), [round(float(v), 1) for v in track.xyxy[r]])
    return None if best is None else {"frame": best[1], "box": best[2]}
