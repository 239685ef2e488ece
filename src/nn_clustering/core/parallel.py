"""Where the work runs: local processes (joblib/loky) or a dask.distributed cluster.

Switching to a cluster is one argument: ``scheduler="tcp://host:8786"`` (an existing dask
scheduler) or ``scheduler="local"`` (a LocalCluster on loopback started for the call).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import joblib

from ..errors import NnClusteringError

CONNECT_TIMEOUT = "10s"  # how long to wait for a dask scheduler before giving up


@contextlib.contextmanager
def execution(n_jobs: int = 1, scheduler: str | None = None) -> Iterator[dict]:
    """Yield ``joblib.Parallel`` keyword arguments for local or dask execution.

    With ``scheduler`` set, a ``dask.distributed`` client is opened (and a LocalCluster on
    127.0.0.1 started for ``"local"``) and joblib's ``dask`` backend is used.
    """
    if scheduler is None:
        yield {"n_jobs": n_jobs, "backend": "loky" if n_jobs != 1 else "sequential"}
        return
    from dask.distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if scheduler == "local":
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=max(n_jobs, 1), threads_per_worker=1, host="127.0.0.1",
                    dashboard_address=None, processes=True,
                )
            )
            stack.enter_context(Client(cluster))
        else:
            try:
                stack.enter_context(Client(scheduler, timeout=CONNECT_TIMEOUT))
            except (OSError, ValueError) as exc:
                raise NnClusteringError(
                    f"cannot reach the dask scheduler at {scheduler} ({exc}); start it (`dask scheduler`) "
                    "and its workers, check the address, or use --scheduler local"
                ) from None
        # the backend comes from parallel_config alone: passing backend="dask" to Parallel as
        # well breaks joblib 1.6's batch calls on the workers
        with joblib.parallel_config(backend="dask"):
            yield {"n_jobs": -1}
