"""multi-model-server 1.1.11, configured and started by us rather than by the toolkit's
``start_model_server``, which writes ``/etc/sagemaker-mms.properties`` with both addresses on
0.0.0.0, keeps MMS's 6,553,500-byte request limit unless told, finds "the" server by scanning every
process on the machine and logs to files under the working directory.

Here: a private run directory holds the properties file, a console-only log4j2 configuration and
MMS's temporary files (its worker socket ``.mms.sock.9000`` lives in ``java.io.tmpdir``, so it is
private too); both MMS addresses are on loopback (the public port belongs to :mod:`handler.serving.gate`);
the JVM is our child, started the way ``multi-model-server --start --foreground`` starts it.

Facts of MMS 1.1.11 this relies on (read from its jar):
- ``default_response_timeout`` is read in MINUTES (multiplied by 60), ``default_response_timeout_seconds``
  in seconds and wins when set; we write the latter. The same timeout bounds each worker's model
  load: a load slower than it is killed and retried forever. A frame slower than it gets
  500 {"message": "Worker died."} and its worker is restarted.
- Addresses with a port of 32767 or more are refused ("Invalid port number").
- ``/ping`` is always HTTP 200, and a worker counts as running (and "READY" in the management API)
  from the moment it connects, before its model is loaded: hence :mod:`handler.serving.gate`.
- A handler given as ``module:function`` fails the worker when its start-up call raises; a handler
  class's ``initialize`` exception is only logged (the worker then fails every request).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_NAME = "model"
HANDLER = "handler.serving.service:handle"
MMS_CLASS = "com.amazonaws.ml.mms.ModelServer"

LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="%d{ISO8601} [%-5p] %c{1} - %m%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="io.netty" level="error"/>
    <Logger name="org.apache" level="off"/>
    <Logger name="ACCESS_LOG" level="warn"/>
    <Logger name="MODEL_METRICS" level="off"/>
    <Logger name="MMS_METRICS" level="off"/>
    <Logger name="MODEL_LOG" level="info"/>
    <Logger name="com.amazonaws.ml.mms" level="warn"/>
    <!-- the workers' stdout (our Python logging) is logged by this one at INFO -->
    <Logger name="com.amazonaws.ml.mms.wlm.WorkerLifeCycle" level="info"/>
    <Root level="warn"><AppenderRef ref="STDOUT"/></Root>
  </Loggers>
</Configuration>
"""


class ModelServerError(RuntimeError):
    """multi-model-server could not be started (no Java, bad configuration)."""


@dataclass(frozen=True)
class MmsSettings:
    """What goes into the properties file."""

    model_dir: Path
    inference_port: int
    management_port: int
    workers: int
    gpus: int
    max_request_bytes: int
    response_timeout_s: int
    vmargs: str

    def properties(self) -> str:
        lines = {
            "inference_address": f"http://127.0.0.1:{self.inference_port}",
            "management_address": f"http://127.0.0.1:{self.management_port}",
            "model_store": "/",
            "default_service_handler": HANDLER,
            "default_workers_per_model": self.workers,
            "number_of_gpu": self.gpus,
            "default_response_timeout_seconds": self.response_timeout_s,
            "unregister_model_timeout": self.response_timeout_s,
            # Our gate checks the payload limit first; MMS's own limits sit above it so a body under
            # the limit, and the JSON of any frame, always fit.
            "max_request_size": self.max_request_bytes + 2**20,
            "max_response_size": max(self.max_request_bytes, 64 * 2**20),
            "decode_input_request": "false",
            "preload_model": "false",  # onnxruntime sessions must not cross a fork
            "enable_envvars_config": "false",
            "async_logging": "true",
        }
        return "".join(f"{key}={value}\n" for key, value in lines.items())


def java_executable() -> str:
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).is_file():
        raise ModelServerError("java not found: multi-model-server needs a Java runtime "
                               "(install a headless JRE, e.g. openjdk-17-jre-headless, or set JAVA_HOME)")
    return java


def mms_home() -> Path:
    import mms

    return Path(mms.__file__).resolve().parent.parent


def command(settings: MmsSettings, run_dir: Path) -> list[str]:
    """The JVM command line, as ``multi-model-server --start`` builds it, with our files."""
    config = run_dir / "mms.properties"
    log_config = run_dir / "log4j2.xml"
    config.write_text(settings.properties())
    log_config.write_text(LOG4J2)
    home = mms_home()
    return [
        java_executable(),
        f"-Dmodel_server_home={home}",
        f"-Dlog4j.configurationFile=file://{log_config}",
        f"-Djava.io.tmpdir={run_dir}",
        *settings.vmargs.split(),
        "-cp", f".:{home / 'mms' / 'frontend' / '*'}",
        MMS_CLASS,
        "--python", sys.executable,
        "-f", str(config),
        "-s", "/",
        "-m", f"{MODEL_NAME}={settings.model_dir.resolve()}",
    ]


def start(settings: MmsSettings, run_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start the JVM as our child (same process group, so stopping our group stops it too)."""
    cmd = command(settings, run_dir)
    log.info("starting multi-model-server: %d worker(s), %d GPU(s), request limit %d bytes, "
             "response timeout %d s", settings.workers, settings.gpus, settings.max_request_bytes,
             settings.response_timeout_s)
    log.debug("%s", " ".join(cmd))
    return subprocess.Popen(cmd, env=env, cwd=run_dir, stdin=subprocess.DEVNULL)
