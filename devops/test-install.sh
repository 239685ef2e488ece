#!/usr/bin/env bash
# Exercises the Docker image's install steps on this machine: devops/install.sh into a fresh
# virtualenv, then the things the image is for (the command line, Jupyter, the kernel).
# Needs the package index (pip); run by `make test-install` and by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d)/venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT

start=$(date +%s)
devops/install.sh deps "$venv"
devops/install.sh project "$venv"
"$venv/bin/python" - <<'PY'
import keras, sklearn, boto3, papermill, nn_clustering  # the image's working set
import numpy as np
from nn_clustering.registry import load_profile
rng = np.random.default_rng(0)
model = nn_clustering.SpectralNCut(n_clusters=2).fit([rng.normal(size=(8, 6)), rng.normal(size=(6, 4))])
print("clustered:", model.ncut_, "; paper profile:", load_profile("paper").n_shuffles, "shuffles")
PY
"$venv/bin/jupyter" lab --version
# the whole list first: `| grep -q` stops reading at the match, and with pipefail the
# kernelspec app then fails on a broken pipe whenever more kernels follow it
kernels=$("$venv/bin/jupyter" kernelspec list)
grep -q nn-clustering <<<"$kernels" || { echo "error: the nn-clustering kernel is not installed:" >&2; echo "$kernels" >&2; exit 1; }
echo "install steps OK in $(( $(date +%s) - start )) s"
