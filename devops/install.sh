#!/usr/bin/env bash
# The install steps of the Docker image (devops/Dockerfile runs exactly this script);
# devops/test-install.sh runs it on a fresh virtualenv so every step is exercised outside Docker.
#
#   devops/install.sh deps VENV      create VENV and install Pipfile.lock's packages (hash-checked)
#   devops/install.sh project VENV   install this project (editable), register its Jupyter kernel
#
# GPU=1 swaps tensorflow-cpu for the CUDA build of the same TensorFlow version (the only
# unlocked package; for training on a GPU).
set -euo pipefail
step=${1:?usage: install.sh deps|project VENV}
venv=${2:?usage: install.sh deps|project VENV}
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
python=${PYTHON:-python3}
pip_install=("$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check -q)

case "$step" in
  deps)
    "$python" -m venv "$venv"
    categories=(default)
    # pygraphviz (graph drawings) needs graphviz's headers; without them drawings fall back
    if pkg-config --exists libcgraph 2>/dev/null; then categories+=(graphviz); fi
    requirements="$(mktemp)"
    trap 'rm -f "$requirements"' EXIT
    "$venv/bin/python" "$here/requirements_from_lock.py" "$root/Pipfile.lock" "${categories[@]}" > "$requirements"
    "${pip_install[@]}" --require-hashes --no-deps -r "$requirements"
    if [ "${GPU:-0}" = 1 ]; then
      tf_version="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("tensorflow-cpu"))')"
      "$venv/bin/python" -m pip uninstall -y -q tensorflow-cpu
      "${pip_install[@]}" "tensorflow[and-cuda]==$tf_version"
    fi
    ;;
  project)
    "${pip_install[@]}" --no-deps -e "$root"
    "$venv/bin/python" -m ipykernel install --prefix "$venv" --name nn-clustering \
      --display-name "Python (nn-clustering)" >/dev/null
    "$venv/bin/nn-clustering" --version
    ;;
  *)
    echo "error: unknown step '$step'; use deps or project" >&2
    exit 2
    ;;
esac
