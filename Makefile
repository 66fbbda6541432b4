# kubevisor: the two set-up commands are `make run` and `make test`.
# Every install step lives here (or in scripts/ called from here): CI runs
# in a fresh clone on a fresh Debian 12 machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEB_STAMP := .cache/debian-packages.stamp
# Debian packages the server, the node agent and the tests need.
#   etcd-server etcd-client     the etcd store backend (and its tests)
#   runc crun conmon            OCI runtimes and the per-container monitor
#   umoci skopeo docker-registry  building, copying and serving test images
#   iproute2 nftables iptables  pod networking and the service proxy
#   busybox-static              the test images' userland
#   qemu-system-x86 qemu-utils ovmf  virtual machines (BIOS and UEFI), qemu-img
#   genisoimage mtools dosfstools    NoCloud seeds (ISO or vfat)
DEB_PACKAGES := etcd-server etcd-client openssl ca-certificates \
	runc crun conmon umoci skopeo docker-registry \
	iproute2 nftables iptables busybox-static \
	qemu-system-x86 qemu-utils ovmf genisoimage mtools dosfstools
PYTEST_ARGS ?=

.PHONY: run test deps venv lint clean bench demo-images

run: deps
	$(BIN)/kubevisor up

test: deps
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check kubevisor tests bench
	$(BIN)/pytest -n auto --dist loadgroup $(PYTEST_ARGS)

deps: $(DEB_STAMP) $(STAMP)

$(DEB_STAMP): Makefile scripts/install-debian-packages.sh
	scripts/install-debian-packages.sh $(DEB_PACKAGES)
	@mkdir -p $(dir $@) && touch $@

$(STAMP): pyproject.toml scripts/install-python-deps.sh
	PYTHON=$(PYTHON) scripts/install-python-deps.sh $(VENV)
	touch $@

lint: deps
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check kubevisor tests bench

# The tour's images (busybox:1, httpd:1), built offline and loaded into ./.kubevisor.
demo-images: deps
	$(BIN)/python scripts/demo-images.py .kubevisor

bench: deps
	$(BIN)/kubevisor bench api

clean:
	rm -rf $(VENV) .cache .kubevisor
