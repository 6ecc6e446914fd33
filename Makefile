# make demo: boot a sandbox server and put the Flask app in production on it.
# make test: unit tests and integration tests on real sandbox servers.
VENV := .venv
BIN := $(VENV)/bin
FAB := $(BIN)/fab
SANDBOX := -S .sandbox/ssh_config -H sandbox-1
LINTED := fabfile.py tasks sandbox tests hello_world $(wildcard bench/*.py) bench/peers/pyinfra
PEERS := bench/.peers
HOST_PACKAGES := debootstrap systemd-container tinyproxy iproute2 openssh-client curl git

.PHONY: demo test test-slow faults unit lint host-packages clean bench settings-docs

host-packages:
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.tool: requirements.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt $(VENV)/.tool
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# The tool's pinned dependencies as wheels: the install test puts the tool's own wheel into
# a fresh venv from these, with no index (tests reach only loopback and the sandbox).
$(VENV)/wheels/.done: requirements.txt $(VENV)/.tool
	$(BIN)/pip wheel -q -r requirements.txt -w $(VENV)/wheels
	touch $@

demo: host-packages $(VENV)/.tool
	$(FAB) sandbox.up
	$(FAB) $(SANDBOX) provision
	$(FAB) $(SANDBOX) deploy
	@echo "--- curl http://$$($(FAB) sandbox.list | awk '/^sandbox-1 /{print $$2}')/"
	@curl -sS -m 10 "http://$$($(FAB) sandbox.list | awk '/^sandbox-1 /{print $$2}')/"; echo
	$(FAB) $(SANDBOX) status

settings-docs: $(VENV)/.dev  # fabric.yaml's list and the README's table, from tasks/fields.py
	$(BIN)/python -c 'from pathlib import Path; from tasks.settings_docs import write_docs; write_docs(Path("."))'

lint: $(VENV)/.dev
	$(BIN)/ruff check --line-length 100 --select E,F,W,B,UP,I $(LINTED)

unit: $(VENV)/.dev
	$(BIN)/pytest -q tests/unit

# Two workers (each test file stays on one worker, its servers with it); the tests that tear
# the whole sandbox down run afterwards, alone. REPORTS=DIR writes JUnit XML there.
test: host-packages $(VENV)/.dev $(VENV)/wheels/.done lint
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=8 -m "not last and not slow and not faults" $(if $(REPORTS),--junitxml=$(REPORTS)/main.xml) tests
	$(BIN)/pytest -q -m last $(if $(REPORTS),--junitxml=$(REPORTS)/last.xml) tests

# The long proofs (an upgrade from the previous version, git links and tokens, package apps
# and a broken first release, the release phase's failures, three hosts with and without a
# sudo password, a failed background install, harden without a working key, sandbox boots,
# isolation and a reboot, shared state through pruning, MariaDB and SQLite, a killed
# database server): kept out of `make test`'s 12-minute budget on 2 cores; CI runs both.
test-slow: host-packages $(VENV)/.dev $(VENV)/wheels/.done
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=8 -m "slow" $(if $(REPORTS),--junitxml=$(REPORTS)/slow.xml) tests

# The fault matrix: provision, deploys and rollback broken by SIGKILL, a cut link and a
# reboot at a spread of moments, each followed by a plain re-run (about 35 minutes). Its
# table is printed at the end (README: "Interrupted runs").
faults: host-packages $(VENV)/.dev
	rm -f .faults/results.jsonl
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=8 -m faults $(if $(REPORTS),--junitxml=$(REPORTS)/faults.xml) tests/faults
	$(BIN)/python -m tests.faults.harness

# Ansible and pyinfra, for the bench only: never dependencies of the tool.
$(PEERS)/.installed: bench/peers/requirements.txt
	python3 -m venv $(PEERS)
	$(PEERS)/bin/pip install -q -r bench/peers/requirements.txt
	touch $@

bench: host-packages $(VENV)/.dev $(PEERS)/.installed
	@dpkg-query -W -f='$${db:Status-Abbrev}' wrk 2>/dev/null | grep -q '^ii' || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)
	$(BIN)/python bench/run.py

clean:
	-$(FAB) sandbox.down
	rm -rf $(VENV) .sandbox
