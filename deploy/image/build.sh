#!/bin/sh
# The build-stage steps every image shares (services/*/Dockerfile), so that each Dockerfile
# holds only what is its own: its extra, its entry modules, its runtime command.
#
#   build.sh dependencies EXTRA   /opt/venv with deploy/requirements/EXTRA.txt, hashes checked,
#                                 and nothing else (the lock is the whole list)
#   build.sh code MODULE...       the thumbcache wheel into /opt/venv (from /src), then import
#                                 every MODULE and run `thumbcache --help`: a library missing
#                                 from the image fails the build, not the container
#
# The wheel is built by a separate venv holding the locked build backend (build.txt), so no
# unhashed download happens and no build tool reaches the runtime stage.
set -eu
here=$(dirname "$0")
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1

case "${1:-}" in
dependencies)
    extra=$2
    python -m venv /opt/build
    /opt/build/bin/pip install --quiet --require-hashes --no-deps -r "$here/build.txt"
    python -m venv /opt/venv
    /opt/venv/bin/pip install --quiet --require-hashes --no-deps -r "$here/$extra.txt"
    ;;
code)
    shift
    cd /src
    /opt/build/bin/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir /tmp/wheel .
    /opt/venv/bin/pip install --quiet --no-deps --no-index /tmp/wheel/thumbcache-*.whl
    /opt/venv/bin/pip check
    /opt/venv/bin/python -c '
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
    print("imports", name)
' "$@"
    /opt/venv/bin/thumbcache --help >/dev/null
    # Installers are build tools: the runtime venv keeps only what runs.
    /opt/venv/bin/python -m pip uninstall --quiet --yes pip setuptools
    ;;
*)
    echo "usage: build.sh dependencies EXTRA | build.sh code MODULE..." >&2
    exit 2
    ;;
esac
