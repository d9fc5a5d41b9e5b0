"""``python -m bench [--quick] [--out bench/results/latest.md]``: the benchmark tables, in one run.

Everything is measured in one process run (the tools under comparison in their own subprocesses)
so that ratios hold on a noisy machine. Prints markdown and writes it to ``--out``. Sections:

1. inference: detection per backend, each embedder per face, the whole per-frame pipeline, all
   next to deface (the peer) on the same frames; 0, 1 and 5 faces at 640x360, 1280x720, 1920x1080.
2. serving: the same frames through the real HTTP server (one worker) against in-process.
3. postprocess: planning 100,000 frames, rendering against the codec floor, JSON bytes per face.
4. endtoend: ``face-blur run`` against the ``deface`` command on one generated 1080p video.

``--quick`` (CI smoke, seconds): 640x360 frames only, one timed call per cell, no server, a
2,000-frame plan, a 2 s 320x180 clip. Its numbers show that the harness works, nothing more.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from bench import sysinfo
from bench.report import FULL, QUICK, Budget, Table, fmt, paired_median_ms

log = logging.getLogger("bench")

SECTIONS = ("inference", "serving", "postprocess", "endtoend")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.md"
SERVING_EMBEDDER = "mobilefacenet"
NOISE_NOTE = ("Timings are medians of repeated calls after a warm-up; on a shared machine they move "
              "by tens of percent between runs, so compare columns of one run, not runs.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run in seconds (numbers not meaningful)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to write")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {', '.join(SECTIONS)}")
    p.add_argument("--model-dir", type=Path, default=None,
                   help="model directory (default: $FACE_BLUR_MODEL_DIR or ~/.cache/face-blur/models)")
    p.add_argument("--plan-frames", type=_positive, default=None, help="frames of synthetic results to plan "
                   "(default 100000, --quick 2000)")
    p.add_argument("--video-seconds", type=float, default=None, help="end-to-end video length (default 30, "
                   "--quick 2)")
    p.add_argument("--video-fps", type=_positive, default=10, help="end-to-end video frame rate")
    p.add_argument("--embedder", default=None, help="embedder(s) for `face-blur run` end to end, comma-"
                   "separated, one run each, e.g. auto,none (default: the CLI's auto; --quick: mobilefacenet)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


class Bench:
    """Runs the sections and collects their tables."""

    def __init__(self, args: argparse.Namespace) -> None:
        from bench.frames import SIZES, make_frames
        from handler.pipeline import PipelineConfig

        self.args = args
        self.quick = args.quick
        self.budget: Budget = QUICK if args.quick else FULL
        self.warm = replace(self.budget, warmup=0)  # for calls already warmed up by the caller
        self.sizes = ((640, 360),) if args.quick else SIZES
        self.frames = make_frames(sizes=self.sizes)
        self.real_model_dir = args.model_dir or PipelineConfig().resolved_model_dir()
        self.tables: list[Table] = []
        self.models = None
        self.peer: dict[tuple[str, str], object] = {}

    # -- shared ---------------------------------------------------------------------------------
    def bench_models(self):
        if self.models is None:
            from bench.inference import prepare_models

            self.models = prepare_models(self.real_model_dir, build_r100=not self.quick)
        return self.models

    def add(self, table: Table) -> None:
        table.footer = table.footer or sysinfo.one_line()
        self.tables.append(table)
        print(table.markdown(), flush=True)

    # -- 1. inference ---------------------------------------------------------------------------
    def inference(self) -> None:
        from bench.inference import (
            BACKENDS,
            DEFAULT_DETECTOR,
            EMBEDDERS,
            load_detectors,
            load_pipelines,
            time_embedders,
        )
        from bench.peer import deface_version, load_peers, peer_detect, peer_detect_blur

        peers = load_peers()
        detectors = load_detectors(self.real_model_dir)
        t = Table("Detection per frame, ms (faces found)",
                  ["frame", *(f"{b} (default)" if b == DEFAULT_DETECTOR else b for b in BACKENDS),
                   *(f"deface {s}" for s in peers)])
        detect_ms: dict[tuple[str, str], float] = {}
        for fr in self.frames:
            fns = {b: partial(d.detect, fr.image) for b, d in detectors.items()}
            fns.update({f"deface {s}": peer_detect(cf, fr.image) for s, cf in peers.items()})
            found = {k: len(fn()) for k, fn in fns.items()}  # doubles as the warm-up call
            times = dict(zip(fns, paired_median_ms(list(fns.values()), self.warm), strict=True))
            detect_ms.update({(k, fr.name): v for k, v in times.items()})
            t.add(fr.name, *(f"{fmt(times[k])} ({found[k]})" for k in fns))
        t.notes += _compare_notes(self.frames, lambda n: detect_ms[(DEFAULT_DETECTOR, n)],
                                  lambda n: detect_ms[("deface defaults", n)],
                                  f"our default detector ({DEFAULT_DETECTOR})", "deface's detection at its defaults")
        t.notes += [
            "Ours at defaults: min_face 16 px (small frames are enlarged so a 16 px face reaches the size the "
            "network finds reliably), frames with a side over 1920 px downscaled, a second 640 px CenterFace "
            "pass for close-ups, dark frames brightened first; every face comes with 5 landmarks (needed for "
            "alignment). ensemble = CenterFace and MTCNN both run and fused: about the sum of the two.",
            f"deface {deface_version()} at its defaults runs CenterFace on the full frame (threshold 0.2); "
            "with --scale 640x360 it runs on a 640x360 copy, cheaper and blind to small faces.",
            "Each row's columns are timed in turn within every repetition (same load for all).",
            NOISE_NOTE,
        ]
        self.add(t)

        models = self.bench_models()
        embed_frame = next(f for f in reversed(self.frames) if f.faces == max(x.faces for x in self.frames)
                           and f.size == self.sizes[min(1, len(self.sizes) - 1)])
        # --quick leaves the 250 MB R100 out: loading it alone takes seconds
        names = EMBEDDERS if models.r100.path is not None and not self.quick else tuple(
            n for n in EMBEDDERS if n != "arcface-r100")
        emb = time_embedders(embed_frame, self.budget, models, names)
        t = Table(f"Embedders, ms per face (faces of the {embed_frame.name} frame, alignment included)",
                  ["embedder", "model", "dim", "single (1 face per call)", "batched (all faces, one call)"])
        for e in emb:
            batched = f"{fmt(e.batched_ms)} ({e.faces} faces)" if e.batched_ms is not None else "n/a"
            t.add(e.name, e.label, e.dim or "n/a", fmt(e.single_ms), batched)
        t.notes += [
            "arcface-r100 is the production default. Without <model_dir>/arcfaceresnet100-8.onnx the row "
            "times LResNet100E-IR built with random weights (bench/arcface_r100.py): the same layers and "
            "shapes, so the same cost; its vectors mean nothing. The zoo file has batch 1 fixed, so "
            "'batched' runs it face by face, as production does.",
            "mobilefacenet: batch fixed at 2 (a single face is padded to two). dlib: its own 5-point "
            "alignment and ResNet, one face at a time.",
            "deface computes no identity at all: these costs are what choosing who to blur (modes "
            "unknown/known/select) and linking faces into sequences across gaps pay for.",
            *models.notes,
        ]
        if "arcface-r100" not in names:
            t.notes.append("arcface-r100 not measured: " + ("left out of --quick" if self.quick
                                                             else models.r100.label))
        self.add(t)

        pipe_embedders = ("none", *names) if not self.quick else ("none", "mobilefacenet")
        pipelines = load_pipelines(models, pipe_embedders)
        ready = {n: p for n, p in pipelines.items() if not isinstance(p, str)}
        cols = [f"+ {n}" if n != "none" else "detection only" for n in ready]
        t = Table(f"Per frame: our inference (FacePipeline.analyse, {DEFAULT_DETECTOR}) against deface detection + "
                  "blur, ms",
                  ["frame", *cols, *(f"deface {s} (detect + blur)" for s in peers)])
        frame_ms: dict[tuple[str, str], float] = {}
        for fr in self.frames:
            fns = {n: partial(p.analyse, fr.image) for n, p in ready.items()}
            fns.update({f"deface {s}": peer_detect_blur(cf, fr.image) for s, cf in peers.items()})
            for fn in fns.values():
                fn()  # warm-up
            times = dict(zip(fns, paired_median_ms(list(fns.values()), self.warm), strict=True))
            frame_ms.update({(k, fr.name): v for k, v in times.items()})
            t.add(fr.name, *(fmt(times[k]) for k in fns))
        default_embedder = next(n for n in ("arcface-r100", "mobilefacenet", "dlib", "none") if n in ready)
        t.notes += _compare_notes(self.frames, lambda n: frame_ms[(default_embedder, n)],
                                  lambda n: frame_ms[("deface defaults", n)],
                                  f"our inference with {default_embedder}", "deface's detection + blur")
        t.notes += [
            "Not like for like: our per-frame inference finds faces, 5 landmarks, an identity vector per face "
            "and a shot signature, and blurs nothing (post-processing does, see the render table); deface "
            "detects and blurs, with no landmarks kept, no identity and no sequences.",
            *(f"+ {n}: {p}" for n, p in pipelines.items() if isinstance(p, str)),
        ]
        self.add(t)

    # -- 2. serving -----------------------------------------------------------------------------
    def serving(self) -> None:
        from bench.inference import DEFAULT_DETECTOR, mms_busy, time_serving

        t = Table(f"Serving: the same JPEG frames in-process and through the HTTP server ({DEFAULT_DETECTOR} + "
                  f"{SERVING_EMBEDDER}, 1 worker), ms per frame",
                  ["frame", "in-process (decode + analyse + JSON)", "POST /invocations", "overhead",
                   "faces (local/HTTP)"])
        if self.quick:
            t.notes.append("skipped in --quick (the server takes tens of seconds to start)")
        elif mms_busy():
            t.notes.append("not measured: another multi-model-server holds /tmp/.mms.sock.9000 on this "
                           "machine (only one can run at a time); run again when it has stopped")
        else:
            try:
                rows = time_serving(self.frames, self.budget, self.bench_models(), SERVING_EMBEDDER)
            except Exception as exc:  # a server that cannot start is a finding, not a crash
                log.exception("serving benchmark failed")
                t.notes.append(f"not measured: {exc}")
                rows = []
            for r in rows:
                over = r.http_ms - r.local_ms
                t.add(r.frame, fmt(r.local_ms), fmt(r.http_ms), f"{fmt(over)} ({100 * over / r.local_ms:+.0f}%)",
                      f"{r.found_local}/{r.found_http}")
            if rows:
                t.notes.append(f"Fixed cost per request (the 64x64 row, where inference is nearly free): "
                               f"{fmt(rows[0].http_ms - rows[0].local_ms)} ms. On the real frames the "
                               "difference is within the run-to-run noise of the inference itself; a negative "
                               "value is that noise, not a faster server.")
                t.notes.append("Overhead = HTTP round trip (client, gate proxy, multi-model-server, worker "
                               "hand-off, response) minus the same work in this process; keep-alive connection, "
                               "one request at a time.")
        t.notes.append(NOISE_NOTE)
        self.add(t)

    # -- 3. post-processing ---------------------------------------------------------------------
    def postprocess(self) -> None:
        from bench.postprocess import json_bytes_per_face, synthetic_results, time_plan, time_render

        frames = self.args.plan_frames or (2_000 if self.quick else 100_000)
        t0 = time.perf_counter()
        synth = synthetic_results(frames)
        made = time.perf_counter() - t0
        t = Table(f"Planning {frames:,} frames of results (make_plan)",
                  ["mode", "seconds", "µs per frame", "frames per second", "outcome"])
        for mode, seconds, summary in time_plan(synth):
            t.add(mode, f"{seconds:.2f}", fmt(1e6 * seconds / frames), f"{frames / seconds:,.0f}", summary)
        t.notes += [
            f"Synthetic results (bench/postprocess.py, made in {made:.1f} s): {synth.faces:,} faces, "
            f"{synth.shots} shots, {synth.people} people (0-4 per shot, entering and leaving), 512-d "
            "embeddings, 5% of detections missing, 1% of frames with a one-frame false positive.",
            "The plan links faces into sequences per shot, fills gaps, drops short false positives, smooths "
            "and pads; mode unknown also scores each sequence against a reference person. deface has no "
            "such step (each frame stands alone), so there is nothing of it to compare.",
        ]
        self.add(t)

        big = [f for f in self.frames if f.size == self.sizes[-1]]
        renders = time_render(big, self.budget)
        t = Table(f"Rendering one {big[0].size[0]}x{big[0].size[1]} JPEG frame: render_image against the "
                  "codec floor, ms", ["frame", "floor (decode + encode)", "render (decode + blur + encode)",
                                      "ratio"])
        for r in renders:
            t.add(r.frame, fmt(r.floor_ms), fmt(r.render_ms), f"{r.ratio:.2f}x")
        t.notes += [
            "Floor: Pillow decode and JPEG encode at the same quality (RenderConfig.jpeg_quality, 95), nothing "
            "else. Render: postprocess.render.render_image with the default style (round feathered Gaussian "
            "blur, sigma 0.2 x face size, mask 1.3x); only the face regions are processed.",
            "A frame without faces is never decoded in production (its object is copied), so its row is an "
            "upper bound.",
        ]
        self.add(t)

        t = Table("Frame results JSON (contract.dumps), bytes", ["embedding", "bytes per face",
                                                                  "frame without faces"])
        for dim, per_face, base in json_bytes_per_face():
            t.add(f"{dim}-d float16 base64" if dim else "none", f"{per_face:,.0f}", f"{base:,}")
        t.notes.append("A frame carries a 128-value shot signature; faces carry box, score, 5 landmarks and "
                       "the embedding.")
        self.add(t)

    # -- 4. end to end --------------------------------------------------------------------------
    def endtoend(self) -> None:
        from bench.arcface_r100 import CACHE_DIR
        from bench.endtoend import compare
        from bench.frames import count_frames, write_video

        seconds = self.args.video_seconds or (2.0 if self.quick else 30.0)
        size = (320, 180) if self.quick else (1920, 1080)
        fps = self.args.video_fps
        video = CACHE_DIR / f"video-{size[0]}x{size[1]}-{seconds:g}s-{fps}fps.mp4"
        if not video.is_file():
            video.parent.mkdir(parents=True, exist_ok=True)
            tmp = video.with_suffix(".tmp.mp4")
            write_video(tmp, size=size, seconds=seconds, fps=fps)
            tmp.replace(video)
        frames_in = count_frames(video)
        models = self.bench_models()
        base = ("--model-dir", str(models.model_dir))
        if self.args.embedder:
            settings = tuple((*base, "--embedder", e.strip()) if e.strip() != "auto" else base
                             for e in self.args.embedder.split(",") if e.strip())
        elif self.quick:
            settings = ((*base, "--embedder", "mobilefacenet"),)
        else:  # the production default (auto: arcface-r100); --embedder none times detection alone
            settings = (base,)
        deface_settings = ((),) if self.quick else ((), ("--scale", "640x360"))
        with tempfile.TemporaryDirectory(prefix="face-blur-bench-") as work:
            rows = compare(video, frames_in, Path(work), settings, deface_settings=deface_settings)
        t = Table(f"End to end: one {size[0]}x{size[1]} video, {seconds:g} s at {fps} fps ({frames_in} frames)",
                  ["tool", "command", "wall s", "frames per second", "CPU s", "frames out", "frame count"])
        for r in rows:
            check = "n/a" if r.frames_out is None else ("ok" if r.frames_out == frames_in else
                                                        f"MISMATCH ({r.frames_out} of {frames_in})")
            t.add(r.tool, f"`{r.command}`", fmt(r.wall_s), fmt(r.fps, 2), fmt(r.cpu_s),
                  r.frames_out if r.frames_out is not None else "n/a", check)
            if r.note:
                t.notes.append(f"{r.tool}: {r.note}")
        deface_default = next(r for r in rows if r.tool == "deface")
        for r in rows:
            if r.tool != "face-blur run" or not r.wall_s or not deface_default.wall_s:
                continue
            ratio = r.wall_s / deface_default.wall_s
            cpu_ratio = r.cpu_s / deface_default.cpu_s if r.cpu_s and deface_default.cpu_s else None
            verdict = ("slower than deface: worse" if ratio > 1.05 else
                       "faster than deface" if ratio < 0.95 else "about as fast as deface")
            cpu = f" and {cpu_ratio:.1f}x its CPU time" if cpu_ratio is not None else ""
            t.notes.append(f"`{r.command}` took {ratio:.1f}x the wall time of `deface VIDEO -o OUT`{cpu}: "
                           f"{verdict}.")
        t.notes += [
            "Both as a user runs them, one after the other in separate processes; wall time includes model "
            "loading and video decode/encode; CPU s is user + system time of the command and its children "
            "(deface's ffmpeg too). The commands cannot be interleaved like the per-frame tables, so on a "
            "shared machine the wall-time ratio moves with the load between runs; CPU time moves less. "
            "Frames out are counted by decoding each output.",
            "face-blur run does more per frame: 5-point landmarks, an identity embedding per face and a shot "
            "signature, then sequences across the video (gaps filled, short false positives dropped, boxes "
            "smoothed and padded at both ends against flicker), and can write the plan as JSON for audit "
            "(--plan); deface blurs each frame on its own detections.",
            f"face-blur run used the benchmark model folder ({models.model_dir}). Output video: the CLI's "
            "defaults (H.264 CRF 18, preset medium); deface's: imageio-ffmpeg's libx264 defaults.",
        ]
        if any("--embedder" not in s for s in settings):
            t.notes.append(f"Without --embedder, face-blur run picks arcface-r100 there: {models.r100.label}."
                           if models.r100.path is not None else
                           f"Without --embedder, face-blur run picks mobilefacenet there (no arcface-r100: "
                           f"{models.r100.label}).")
        self.add(t)


def _compare_notes(frames, ours, theirs, ours_name: str, theirs_name: str) -> list[str]:
    """One plain sentence per frame size: our time against the peer's on the frames with faces."""
    notes = []
    for size in dict.fromkeys(f.size for f in frames):
        group = [f for f in frames if f.size == size]
        a = [ours(f.name) for f in group]
        b = [theirs(f.name) for f in group]
        if any(v is None for v in a + b):
            continue
        ratio = sum(a) / sum(b)
        verdict = ("slower than deface: worse" if ratio > 1.05 else
                   "faster than deface" if ratio < 0.95 else "about as fast as deface")
        notes.append(f"{size[0]}x{size[1]} (0, 1 and 5 faces summed): {ours_name} takes {ratio:.1f}x the time "
                     f"of {theirs_name}, {verdict}.")
    return notes


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        print(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    info = sysinfo.collect()
    head = Table("System", ["what", "value"], footer=" ")
    for k, v in info.items():
        head.add(k, v)
    head.notes.append("--quick: smoke run, one call per cell; the numbers are not meaningful." if args.quick
                      else NOISE_NOTE)
    bench = Bench(args)
    bench.add(head)
    took_by = {}
    for section in sections:
        t0 = time.perf_counter()
        getattr(bench, section)()
        took_by[section] = time.perf_counter() - t0
        print(f"section {section} took {took_by[section]:.0f} s", file=sys.stderr, flush=True)
    took = time.perf_counter() - started
    text = (f"# face-blur benchmarks{' (--quick)' if args.quick else ''}\n\n"
            f"`python -m bench{' --quick' if args.quick else ''}`, {time.strftime('%Y-%m-%d %H:%M')}, "
            f"{took / 60:.1f} min ({', '.join(f'{k} {v:.0f} s' for k, v in took_by.items())}), "
            f"load average at the end {sysinfo.load_average()}.\n\n"
            + "\n".join(t.markdown() for t in bench.tables))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} in {took:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
