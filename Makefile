# Two commands for a new machine: `make demo` and `make test` (see README.md).
# The venv lives outside the checkout, keyed by a hash of pyproject.toml and constraints.txt,
# so that every clone on this machine reuses it; a new machine builds it with the same command.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV_KEY := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
VENV ?= $(HOME)/.cache/liveinference/venv-$(VENV_KEY)
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/python:$(CURDIR)/expansion:$(CURDIR)
export PATH := $(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv test demo bench clean-venv

venv: $(VENV)/.ready

$(VENV)/.ready:
	rm -rf "$(VENV)" $(filter-out $(VENV),$(wildcard $(dir $(VENV))venv-*))
	$(PYTHON) -m venv "$(VENV)"
	"$(PY)" -m pip install --quiet --upgrade pip
	"$(PY)" -m pip install --quiet -c constraints.txt '.[all,test]'
	"$(PY)" -m pip uninstall --quiet --yes liveinference
	rm -rf build python/*.egg-info expansion/*.egg-info
	touch "$@"

test: venv java-build prism flink-jobserver docker-image
	"$(PY)" -m pytest -q -p no:cacheprovider

demo: venv
	"$(PY)" examples/demo.py

bench: venv
	"$(PY)" benchmarks/throughput.py
	"$(PY)" benchmarks/refresh.py

clean-venv:
	rm -rf "$(VENV)"

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

.PHONY: java-deps java-build prism flink-jobserver docker-image serve java-demo bench-xlang

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

bench-xlang: venv java-build prism
	"$(PY)" benchmarks/xlang.py
