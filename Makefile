# Two commands for a new machine: `make demo` and `make test` (see README.md).
# The venvs live outside the checkout, keyed by a hash of pyproject.toml and constraints.txt,
# so that every clone on this machine reuses them; a new machine builds them with the same command.
# The package is installed editable, pointed at the checkout that runs make (no stale copy).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV_KEY := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
VENV ?= $(HOME)/.cache/liveinference/venv-$(VENV_KEY)
DEMO_VENV ?= $(HOME)/.cache/liveinference/demo-venv-$(VENV_KEY)
PY := $(VENV)/bin/python
ALL_EXTRAS := all,test
export PATH := $(VENV)/bin:$(PATH)
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv demo-venv test demo bench clean-venv

# $(call make_venv,DIR,EXTRAS): a venv with the dependencies of liveinference[EXTRAS].
define make_venv
	rm -rf "$(1)"
	$(PYTHON) -m venv "$(1)"
	"$(1)/bin/python" -m pip install --quiet --upgrade pip 'setuptools>=77' wheel
	"$(1)/bin/python" -m pip install --quiet -c constraints.txt -e '.[$(2)]'
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

test: venv java-build prism flink-jobserver docker-image
	"$(PY)" -m pytest -q -p no:cacheprovider

# The demo needs scikit-learn only: a light venv, built in about a minute on a new machine.
demo: demo-venv
	"$(DEMO_VENV)/bin/python" examples/demo.py

bench: venv
	"$(PY)" benchmarks/throughput.py
	"$(PY)" benchmarks/refresh.py

clean-venv:
	rm -rf "$(VENV)" "$(DEMO_VENV)"

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
