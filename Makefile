# Two commands for a new machine: `make demo` and `make test` (see README.md).
# The venvs live outside the checkout, keyed by a hash of pyproject.toml and constraints.txt,
# so that every clone on this machine reuses them; a new machine builds them with the same command.
# The package is installed editable, pointed at the checkout that runs make (no stale copy).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV_KEY := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
VENV ?= $(HOME)/.cache/liveinference/venv-$(VENV_KEY)
DEMO_VENV ?= $(HOME)/.cache/liveinference/demo-venv-$(VENV_KEY)
# The second test leg: the newest Beam release on PyPI, with the light frameworks only.
LATEST_KEY := $(shell cat pyproject.toml constraints-beam-latest.txt | sha256sum | cut -c1-16)
LATEST_VENV ?= $(HOME)/.cache/liveinference/beam-latest-venv-$(LATEST_KEY)
LATEST_EXTRAS := sklearn,onnx,xgboost
LATEST_TOOLS := pytest pytest-timeout skl2onnx cryptography boto3 'moto[server]' mypy
PY := $(VENV)/bin/python
ALL_EXTRAS := all,test
export PATH := $(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv demo-venv latest-venv test test-beam-latest demo demo-rollout bench clean-venv

# $(call make_venv,DIR,EXTRAS[,CONSTRAINTS[,MORE PACKAGES]]): a venv with liveinference[EXTRAS].
define make_venv
	rm -rf "$(1)"
	$(PYTHON) -m venv "$(1)"
	"$(1)/bin/python" -m pip install --quiet --upgrade pip 'setuptools>=77' wheel
	"$(1)/bin/python" -m pip install --quiet -c $(or $(3),constraints.txt) -e '.[$(2)]' $(4)
	rm -rf build python/*.egg-info expansion/*.egg-info
	touch "$(1)/.ready"
endef

# $(call point_at_checkout,DIR): re-points DIR's editable install at this checkout (a few seconds).
define point_at_checkout
	if [ "$$(cat "$(1)/.checkout" 2>/dev/null)" != "$(CURDIR)" ]; then \
	  "$(1)/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e . && \
	  rm -rf build python/*.egg-info expansion/*.egg-info && \
	  echo "$(CURDIR)" > "$(1)/.checkout"; fi
endef

venv: $(VENV)/.ready
	@$(call point_at_checkout,$(VENV))

$(VENV)/.ready:
	rm -rf $(filter-out $(VENV),$(wildcard $(dir $(VENV))venv-*))
	$(call make_venv,$(VENV),$(ALL_EXTRAS))

demo-venv: $(DEMO_VENV)/.ready
	@$(call point_at_checkout,$(DEMO_VENV))

$(DEMO_VENV)/.ready:
	rm -rf $(filter-out $(DEMO_VENV),$(wildcard $(dir $(DEMO_VENV))demo-venv-*))
	$(call make_venv,$(DEMO_VENV),sklearn)

latest-venv: $(LATEST_VENV)/.ready
	@$(call point_at_checkout,$(LATEST_VENV))

$(LATEST_VENV)/.ready:
	rm -rf $(filter-out $(LATEST_VENV),$(wildcard $(dir $(LATEST_VENV))beam-latest-venv-*))
	$(call make_venv,$(LATEST_VENV),$(LATEST_EXTRAS),constraints-beam-latest.txt,$(LATEST_TOOLS))

# Both legs: everything on Beam 2.62.0 (the release Java needs), then the library, the light
# frameworks and the service on the newest Beam release.
test: venv java-build prism flink-jobserver docker-image latest-venv
	"$(PY)" -m pytest -q -p no:cacheprovider
	$(MAKE) --no-print-directory test-beam-latest

# Tests that need PyTorch, TensorFlow, Hugging Face, Java or Flink (its job server is Beam 2.62's), and the benchmarks'
# smoke tests (matplotlib), stay on the first leg.
LATEST_TESTS := $(filter-out tests/test_examples_and_benchmarks.py tests/test_batched_benchmark.py \
    tests/test_rollout_demo_and_benchmark.py,\
    $(wildcard tests/test_*.py)) \
  tests/refresh --ignore=tests/refresh/test_frameworks_refresh.py \
  --ignore=tests/refresh/test_rollout_flink.py \
  tests/frameworks/test_base.py \
  tests/frameworks/test_sklearn.py tests/frameworks/test_onnx.py tests/frameworks/test_xgboost.py \
  tests/frameworks/test_batching_arguments.py $(wildcard tests/frameworks/test_remote*.py) \
  $(wildcard tests/rollout) tests/xlang/test_service.py \
  tests/xlang/test_security.py tests/xlang/test_security_tls.py tests/xlang/test_configured_transform.py \
  tests/xlang/test_crossing_batches.py tests/xlang/test_warm_workers.py
test-beam-latest: latest-venv prism
	LIVEINFERENCE_BEAM_LEG=latest "$(LATEST_VENV)/bin/python" -m pytest -q -p no:cacheprovider $(LATEST_TESTS)

# The rollout demo (canary rolled back by late labels, then a better model promoted) runs on Prism.
demo-rollout: venv prism
	"$(PY)" examples/rollout.py

# The demo needs scikit-learn only: a light venv, built in about a minute on a new machine.
demo: demo-venv
	"$(DEMO_VENV)/bin/python" examples/demo.py

bench: venv prism
	"$(PY)" benchmarks/throughput.py
	"$(PY)" benchmarks/refresh.py
	"$(PY)" benchmarks/length_batching.py
	"$(PY)" benchmarks/batched.py
	"$(PY)" benchmarks/rollout.py

clean-venv:
	rm -rf "$(VENV)" "$(DEMO_VENV)" "$(LATEST_VENV)"

# --- Cross-language: Java wrapper, expansion service, runners, service image -------------------
# Everything downloaded or built is cached outside the checkout (~/.cache/liveinference, ~/.m2,
# Go's module cache, Docker's image store), so a second `make test` only checks timestamps.
XLANG_CACHE := $(HOME)/.cache/liveinference
BEAM_JAVA := 2.62.0
PRISM_VERSION := v2.77.0
PRISM_BIN := $(XLANG_CACHE)/prism/$(PRISM_VERSION)/prism
FLINK_CLASSPATH := $(XLANG_CACHE)/flink-jobserver-$(BEAM_JAVA).classpath
JAVA_CLASSPATH := $(XLANG_CACHE)/java-$(BEAM_JAVA).classpath
JAVA_JAR := java/target/liveinference-0.1.0.jar
JAVA_SOURCES := java/pom.xml $(shell find java/src -name '*.java' 2>/dev/null)
MVN := mvn -q -B
GO := $(or $(shell command -v go 2>/dev/null),/usr/local/go/bin/go)
# Under `make test`, a missing cross-language piece fails its tests instead of skipping them.
export LIVEINFERENCE_REQUIRE_XLANG := 1

.PHONY: java-deps java-build prism flink-jobserver docker-image serve java-demo bench-xlang java-cds

java-deps: $(JAVA_CLASSPATH)
java-build: $(JAVA_JAR) $(JAVA_CLASSPATH)

$(JAVA_CLASSPATH): java/pom.xml
	mkdir -p "$(XLANG_CACHE)"
	$(MVN) -f java/pom.xml dependency:build-classpath -Dmdep.includeScope=runtime -Dmdep.outputFile="$@"

$(JAVA_JAR): $(JAVA_SOURCES)
	$(MVN) -f java/pom.xml -DskipTests package

prism: $(PRISM_BIN)

$(PRISM_BIN):
	mkdir -p "$(dir $@)"
	GOBIN="$(dir $@)" GOFLAGS=-mod=mod $(GO) install github.com/apache/beam/sdks/v2/go/cmd/prism@$(PRISM_VERSION)

flink-jobserver: $(FLINK_CLASSPATH)

$(FLINK_CLASSPATH): java/jobserver/pom.xml
	mkdir -p "$(XLANG_CACHE)"
	$(MVN) -f java/jobserver/pom.xml dependency:build-classpath -Dmdep.outputFile="$@"

docker-image: venv
	PY="$(PY)" bash expansion/container/build_image.sh

serve: venv
	"$(PY)" -m liveinference_expansion serve $(SERVE_ARGS)

java-demo: venv java-build prism
	"$(PY)" examples/java_demo.py

bench-xlang: venv java-build prism flink-jobserver
	"$(PY)" benchmarks/xlang.py

# Records the JVM class-data archive of the current Java build (Java jobs started by
# examples/xlang_runtime.py map it; the first benchmark job records it when missing).
java-cds: venv java-build prism
	"$(PY)" examples/java_demo.py --record-class-archive

# --- A Flink 1.19 session cluster on this machine: a JobManager, two TaskManagers, Beam's job server;
# state, ports and logs in ~/.cache/liveinference/flink-cluster/ (`$(PY) -m cluster.flink status`).
# The cluster tests start one themselves when none runs, and stop what they started.
.PHONY: flink-cluster flink-cluster-stop bench-cluster

flink-cluster: venv flink-jobserver
	"$(PY)" -m cluster.flink start

flink-cluster-stop: venv
	"$(PY)" -m cluster.flink stop

bench-cluster: venv flink-jobserver
	"$(PY)" benchmarks/cluster.py
