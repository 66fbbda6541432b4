#!/bin/sh
# Install kubevisor and its pinned Python dependencies into the virtualenv $1.
#
# Online, pip takes the pins from the package index as usual; afterwards every
# installed distribution, and what building kubevisor itself needs, is kept as
# a wheel in a machine-wide wheelhouse (KUBEVISOR_WHEELHOUSE, default
# /var/cache/kubevisor/wheels). When the index can't serve the pins (no
# network, or a pin it doesn't have yet), the install is done again from that
# wheelhouse alone: a fresh clone on a machine that installed once before
# still gets the same versions, without waiting on name lookups that fail.
set -eu
venv=$1
wheels=${KUBEVISOR_WHEELHOUSE:-/var/cache/kubevisor/wheels}
pip="$venv/bin/pip"
test -x "$venv/bin/python" || "${PYTHON:-python3}" -m venv "$venv"
build_requires=$("$venv/bin/python" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')

# few retries: with no name service each failed lookup costs about 12 s
if "$pip" install --quiet --retries 0 --upgrade pip && "$pip" install --quiet --retries 1 -e '.[dev]'; then
    { "$venv/bin/python" scripts/wheelhouse.py "$wheels" \
        && "$pip" download --quiet --retries 1 --dest "$wheels" $build_requires; } \
        || echo "warning: could not keep wheels in $wheels" >&2
    exit 0
fi
if [ ! -d "$wheels" ]; then
    echo "error: the package index can't serve the pinned versions and there is no wheelhouse at $wheels" >&2
    exit 1
fi
echo "the package index can't serve the pins; installing from the wheelhouse $wheels" >&2
"$pip" install --quiet --no-index --find-links "$wheels" --upgrade pip
"$pip" install --quiet --no-index --find-links "$wheels" -e '.[dev]'
