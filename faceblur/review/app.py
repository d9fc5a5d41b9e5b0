"""The review page's web app (Starlette + Jinja2) and ``face-blur review``'s server (uvicorn).

Routes (the page sends card ids, frame numbers and boxes; never a path):

- ``GET /``: the page; ``GET /cards``: the cards as HTML (the same template part), after an edit
- ``GET /api/state``: summary, saved plan, render progress
- ``GET /thumb/{card}.jpg``, ``GET /frame/{n}.jpg?mode=rendered|original|boxes&w=1280``: pictures,
  read from the input on demand; ``GET /api/boxes/{n}``: every box in frame n, with decision and score
- ``POST /api/decision`` ``{"card", "decision"}`` or ``{"card", "toggle": true}``; ``POST /api/faces``
  ``{"keyframes": [{"frame", "box"}], "first", "last"}`` (a missed face); ``POST /api/faces/remove``
  ``{"sequence"}``; ``POST /api/save``; ``POST /api/render`` (saves, then renders in a child process)
- ``GET /output``: the rendered video or photo (local only), the one file this session rendered

A page of another site cannot drive it: the Host header must be the address it serves on (no DNS
rebinding), and POSTs must be ``application/json`` from no other origin (no cross-site form posts).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from faceblur.review import edits
from faceblur.review.frames import FrameError
from faceblur.review.session import ReviewError, ReviewSession, jpeg

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")


def _environment() -> Environment:
    return Environment(loader=PackageLoader("faceblur.review", "templates"), autoescape=select_autoescape())


class Renderer:
    """The one render a session runs at a time, in a child process (``faceblur.review.job``)."""

    def __init__(self, session: ReviewSession) -> None:
        self.session = session
        self.process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def start(self) -> dict[str, Any]:
        s = self.session
        with self._lock:
            if s.render.state == "running":
                raise ReviewError("a render is already running")
            plan_uri = s.save() if s.dirty or not s.saved_uri else s.saved_uri
            output = s.render_output_uri()
            s._render_output = output  # this session's own output: a re-render replaces it
            spec = {"input": s.input_uri, "plan": plan_uri, "output": output, "render": s.render_config.to_dict(),
                    "encode": s.encode_options, "workers": s.workers, "total": int(s.frames.count),
                    "s3": output.startswith("s3://")}
            s.render = type(s.render)(state="running", total=int(s.frames.count), output=output, plan=plan_uri)
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            # close_fds (the default): the child holds no copy of the listening socket, so the
            # server can restart on its port while a render runs, and the page never waits on it
            self.process = subprocess.Popen([sys.executable, "-m", "faceblur.review.job", json.dumps(spec)],
                                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=None,
                                            text=True, env=env, close_fds=True)
            s.render.pid = self.process.pid
            threading.Thread(target=self._follow, args=(self.process,), daemon=True,
                             name="face-blur-review-render").start()
            return s.render.to_dict()

    def _follow(self, process: subprocess.Popen) -> None:
        state = self.session.render
        assert process.stdout is not None
        for line in process.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "done" in msg:
                state.done, state.total = int(msg["done"]), int(msg.get("total") or state.total)
            if msg.get("error"):
                state.error = str(msg["error"])
        code = process.wait()
        if code == 0 and not state.error:
            state.state, state.done = "done", max(state.done, state.total)
        else:
            state.state = "failed"
            state.error = state.error or f"the render stopped with exit status {code}"
        log.info("review: render %s (%s)", state.state, state.error or state.output)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request) -> dict[str, Any]:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise ReviewError("send application/json")
    origin = request.headers.get("origin")
    if origin and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
        raise PermissionError(f"requests from {origin} are not accepted")
    try:
        body = await request.json()
    except ValueError:
        raise ReviewError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise ReviewError("the body must be a JSON object")
    return body


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ReviewError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _box(value: Any) -> tuple[float, float, float, float]:
    if not isinstance(value, list) or len(value) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ReviewError(f"a box is [x1, y1, x2, y2], got {value!r}")
    x1, y1, x2, y2 = (float(v) for v in value)
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def create_app(session: ReviewSession, hosts: list[str] | None = None) -> Starlette:
    env = _environment()
    page, cards_part = env.get_template("review.html"), env.get_template("cards.html")
    renderer = Renderer(session)

    def handle(fn):
        async def endpoint(request: Request) -> Response:
            try:
                return await fn(request)
            except (ReviewError, edits.EditError) as exc:
                return _error(400, str(exc))
            except FrameError as exc:
                return _error(404, str(exc))
            except PermissionError as exc:
                return _error(403, str(exc))
            except Exception as exc:  # the page shows it; the log keeps the traceback
                log.exception("review: %s failed", request.url.path)
                return _error(500, f"{type(exc).__name__}: {exc}")
        return endpoint

    def state() -> dict[str, Any]:
        return {"summary": session.summary(), "render": session.render.to_dict(),
                "output_url": "/output" if session.render.state == "done" and not session.render.output.startswith(
                    "s3://") and Path(session.render.output).is_file() else None}

    async def index(request: Request) -> Response:
        return HTMLResponse(page.render(cards=session.cards(), summary=session.summary(),
                                        state=json.dumps(state()).replace("<", "\\u003c")))

    async def cards(request: Request) -> Response:
        return HTMLResponse(cards_part.render(cards=session.cards(), summary=session.summary()))

    async def api_state(request: Request) -> Response:
        return JSONResponse(state())

    def _picture(rgb, request: Request) -> Response:
        width = request.query_params.get("w", "0")
        max_width = int(width) if width.isdigit() else 0
        return Response(jpeg(rgb, max_width), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def thumb(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        card = request.path_params["card"]
        return _picture(await run_in_threadpool(session.thumbnail, card), request)

    async def frame(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        number = request.path_params["number"]
        mode = request.query_params.get("mode", "rendered")
        return _picture(await run_in_threadpool(session.frame_image, number, mode), request)

    async def boxes(request: Request) -> Response:
        number = request.path_params["number"]
        return JSONResponse({"frame": number, "boxes": session.boxes(number)})

    async def decision(request: Request) -> Response:
        body = await _json_body(request)
        card = str(body.get("card", ""))
        if body.get("toggle"):
            new = session.toggle(card)
        else:
            new = str(body.get("decision", ""))
            session.set_decision(card, new)
        return JSONResponse({"card": card, "decision": new, **state()})

    async def faces(request: Request) -> Response:
        body = await _json_body(request)
        keys = body.get("keyframes")
        if not isinstance(keys, list):
            raise ReviewError("keyframes must be a list of {frame, box}")
        keyframes = [edits.Keyframe(_int(k.get("frame") if isinstance(k, dict) else None, "keyframes[].frame"),
                                    _box(k.get("box") if isinstance(k, dict) else None)) for k in keys]
        sid = session.add_face(keyframes, _int(body.get("first"), "first"), _int(body.get("last"), "last"))
        return JSONResponse({"sequence": sid, **state()})

    async def remove_face(request: Request) -> Response:
        body = await _json_body(request)
        session.remove_added(_int(body.get("sequence"), "sequence"))
        return JSONResponse(state())

    async def save(request: Request) -> Response:
        await _json_body(request)
        from starlette.concurrency import run_in_threadpool

        uri = await run_in_threadpool(session.save)
        return JSONResponse({"saved": uri, **state()})

    async def render(request: Request) -> Response:
        await _json_body(request)
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(renderer.start)
        return JSONResponse(state())

    async def output(request: Request) -> Response:
        r = session.render
        if r.state != "done" or r.output.startswith("s3://") or not Path(r.output).is_file():
            return _error(404, "nothing rendered to download yet")
        return FileResponse(r.output, filename=Path(r.output).name)

    routes = [
        Route("/", index),
        Route("/cards", handle(cards)),
        Route("/api/state", handle(api_state)),
        Route("/thumb/{card:str}.jpg", handle(thumb)),
        Route("/frame/{number:int}.jpg", handle(frame)),
        Route("/api/boxes/{number:int}", handle(boxes)),
        Route("/api/decision", handle(decision), methods=["POST"]),
        Route("/api/faces", handle(faces), methods=["POST"]),
        Route("/api/faces/remove", handle(remove_face), methods=["POST"]),
        Route("/api/save", handle(save), methods=["POST"]),
        Route("/api/render", handle(render), methods=["POST"]),
        Route("/output", handle(output)),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=hosts or ["127.0.0.1", "localhost"])]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        renderer.stop()

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.renderer = renderer
    return app


def serve(session: ReviewSession, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False,
          on_ready=None) -> None:
    """Run the page until interrupted; ``on_ready(url)`` is called once it listens (port 0: any free port)."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ReviewError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port") from None
    sock.set_inheritable(False)
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    hosts = [host, "localhost", "127.0.0.1"] if host not in ("0.0.0.0", "::") else ["*"]
    app = create_app(session, hosts)
    url = f"http://{shown}:{port}/"
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("review: listening on %s: anyone who can reach this machine can open the page, see the "
                    "faces and change the plan (there is no login)", host)
    if on_ready is not None:
        on_ready(url)
    if open_browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        app.state.renderer.stop()
        session.close()
