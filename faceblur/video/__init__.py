"""Video in, video out (issue #10): decode upright RGB frames, re-encode with what the viewer expects kept.

PyAV (FFmpeg inside the wheel). Images are HxWx3 uint8 RGB, upright. Behaviour (README "Video"):

- Timing: every output frame keeps its input timestamp (pts in the input stream's time base), so
  29.97 fps (30000/1001) and variable frame rate come out as they went in; nothing is dropped or
  duplicated, and the last frame keeps its duration.
- Rotation: the container's display matrix (phone clips) is applied before anything sees the
  pixels, exactly as FFmpeg's autorotate does (90/180/270 degrees and mirrors); the output holds
  upright pixels and no rotation tag.
- Pixels outside the blurred faces are carried over in the source's own YUV values (no RGB round
  trip), so colours cannot drift. Only the changed pixels go through RGB -> YUV, with the source's
  matrix and range. Output chroma is 4:2:0.
- Bit depth: sources deeper than 8 bits (10-bit HDR from phones) are written 10-bit (yuv420p10le,
  libx265 by default, else libx264 High 10); 8-bit sources as H.264 yuv420p. Colour tags (primaries,
  transfer, matrix, range) are copied to the output stream. Default quality CRF 18, preset medium.
- Audio: every audio stream, whatever its index, is copied packet for packet; a codec the output
  container cannot hold (e.g. Vorbis into MP4, AAC into WebM) is re-encoded (AAC, or Opus for WebM)
  and the log names the stream. Subtitle/data streams are dropped (they can carry location).
- Metadata: container and stream metadata (creation_time, title, language, ...) are kept; location
  keys (``location``, ``com.apple.quicktime.location.ISO6709``, anything named like GPS/location) are
  removed unless ``keep_location``.

The AWS path splits a video with :func:`extract_frames` (upright PNG frames numbered from 1 plus a
sidecar folder: ``video.json`` timestamps/colour/metadata and ``audio.mkv`` with the audio streams
copied) and puts it back together with :func:`assemble_video`.

Modules, by job (every public name is importable from ``faceblur.video``):

- ``info``: :class:`VideoInfo` (also the sidecar format), :class:`EncodeConfig`, :class:`Frame`,
  :class:`VideoError`, the suffix/codec/preset constants;
- ``pixels``: rotation to upright (display matrix) and the colour description (matrix, range);
- ``probe``: open and describe a video, filter its metadata;
- ``decode``: :func:`iter_frames` on a background thread (``producer``, a bounded queue);
- ``encode``: the output container, video and audio encoders, :func:`atomic_output`;
- ``rewrite``: :func:`rewrite_video`, the local decode -> process -> encode pipeline;
- ``aws``: :func:`extract_frames` and :func:`assemble_video`, the AWS split and join.
"""

from faceblur.video.aws import assemble_video, extract_frames
from faceblur.video.decode import iter_frames
from faceblur.video.encode import atomic_output
from faceblur.video.info import (
    CODECS,
    PRESETS,
    SIDECAR_AUDIO,
    SIDECAR_INFO,
    VIDEO_SUFFIXES,
    EncodeConfig,
    Frame,
    VideoError,
    VideoInfo,
)
from faceblur.video.pixels import apply_ops, orientation_ops
from faceblur.video.probe import filter_metadata, probe
from faceblur.video.rewrite import ProcessFn, rewrite_video

__all__ = [
    "CODECS", "PRESETS", "SIDECAR_AUDIO", "SIDECAR_INFO", "VIDEO_SUFFIXES", "EncodeConfig", "Frame", "ProcessFn",
    "VideoError", "VideoInfo", "apply_ops", "assemble_video", "atomic_output", "extract_frames", "filter_metadata",
    "iter_frames", "orientation_ops", "probe", "rewrite_video",
]
