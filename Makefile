# llamacpp.cluster: set-up and test entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON_VENV := .venv/bin/python
# The suite needs only the standard library: its first phase creates the venv (make demo).
SUITE := python3 tests/run_suite.py
ANSIBLE_PLAYBOOK := .venv/bin/ansible-playbook

.PHONY: help setup venv platform platform-tests fixtures big-model git-fixture demo demo-clean bench test lint sanity unit integration cluster molecule changelog build clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

venv: ## create .venv from the pinned requirements.txt (skipped when up to date)
	@bash scripts/venv.sh

platform: ## install and configure rootful podman, build the local node image (idempotent)
	@bash scripts/platform.sh

platform-tests: ## platform, plus what only the tests use (host compiler, curl, shellcheck, arm64 and trixie images)
	@bash scripts/platform.sh --tests

fixtures: venv ## cache the llama.cpp source and the test model, checksum-verified
	@$(PYTHON_VENV) scripts/fixtures.py

big-model: fixtures ## generate and cache the large random test model (1.3 GB) the placement tests need
	@$(PYTHON_VENV) scripts/big_model.py

git-fixture: fixtures ## a bare git repository of the fixture source (the rpc_worker scenario builds from it)
	@$(PYTHON_VENV) scripts/fixtures.py --git-repo

setup: venv platform fixtures ## everything the demo needs

demo: setup ## run the main job on a local cluster of containers (1 main + 2 workers) and print the answer
	@$(ANSIBLE_PLAYBOOK) playbooks/local_cluster.yml -i inventories/local
	@$(ANSIBLE_PLAYBOOK) site.yml -i inventories/local

demo-clean: venv ## remove the demo's containers and network
	@$(ANSIBLE_PLAYBOOK) playbooks/local_cluster.yml -i inventories/local -e llamacpp_local_state=absent

bench: venv ## benchmark the cluster of `make demo` (BENCH_ARGS="-i INVENTORY --pairs N ..."); writes benchmarks/results/
	@$(PYTHON_VENV) benchmarks/run.py $(BENCH_ARGS)

test: ## the whole suite from scratch: the README's make demo first, then every test on its cluster; ends with 'N passed, N failed'
	@$(SUITE)

lint: venv ## yamllint and ansible-lint (production profile, offline)
	@$(SUITE) lint

sanity: venv ## ansible-test sanity, offline
	@$(SUITE) sanity

unit: venv ## pytest unit tests
	@$(SUITE) unit

integration: setup platform-tests ## pytest integration tests (real binaries, containers)
	@$(SUITE) integration

cluster: venv big-model ## the tests of the demo's cluster (run make demo first); the last one retunes and rolls it back
	@$(SUITE) cluster

molecule: setup platform-tests git-fixture ## every molecule scenario (MOLECULE_SCENARIOS="a b" for some)
	@$(SUITE) molecule

changelog: venv ## release the changelog from changelogs/fragments
	@.venv/bin/antsibull-changelog release

build: venv ## build the collection tarball
	@.venv/bin/ansible-galaxy collection build --force

clean: ## remove the venv and build outputs (the cache outside the repo stays)
	rm -rf .venv tests/output llamacpp-cluster-*.tar.gz
