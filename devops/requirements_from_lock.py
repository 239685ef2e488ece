"""Print the pinned, hashed requirements of Pipfile.lock categories (pip install --require-hashes).

Used by devops/install.sh, so the Docker image and the test of its install steps install
exactly the locked versions without needing pipenv. The project itself (a path entry) is left
out; install.sh installs it afterwards. Usage: requirements_from_lock.py LOCK CATEGORY...
(categories as in the lock file: default, develop, graphviz).
"""

from __future__ import annotations

import json
import sys


def requirement_lines(lock: dict, categories: list[str]) -> list[str]:
    """``name[extras]==version ; markers --hash=...`` for every locked package of ``categories``."""
    seen: dict[str, str] = {}
    for category in categories:
        if category not in lock:
            raise SystemExit(f"error: Pipfile.lock has no category {category!r}; have {', '.join(lock)}")
        for name, entry in sorted(lock[category].items()):
            if "version" not in entry or name in seen:
                continue  # path/editable entries (the project itself), or already listed
            extras = f"[{','.join(entry['extras'])}]" if entry.get("extras") else ""
            markers = f" ; {entry['markers']}" if entry.get("markers") else ""
            hashes = "".join(f" \\\n    --hash={h}" for h in entry.get("hashes", []))
            seen[name] = f"{name}{extras}{entry['version']}{markers}{hashes}"
    return list(seen.values())


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit("usage: requirements_from_lock.py Pipfile.lock CATEGORY [CATEGORY ...]")
    with open(sys.argv[1]) as handle:
        print("\n".join(requirement_lines(json.load(handle), sys.argv[2:])))
