"""nn-clustering: is this trained neural network modular?

The public API is small and scikit-learn-shaped:

>>> import nn_clustering as nc
>>> test = nc.ShuffleTest(n_clusters=4, n_shuffles=320, method="layer", n_jobs=2, random_state=42)
>>> # test.fit("models/MNIST/0/pruned.npz"); test.p_value_, test.z_, test.significant_

The package's layers, each importing only those before it: :mod:`nn_clustering.core` (the
numeric core, numpy/scipy only); :mod:`nn_clustering.registry` (model tags and training
profiles), :mod:`nn_clustering.formats` (reading weights from every framework into one
description) and :mod:`nn_clustering.storage` (files, cache, tables, S3, provenance);
:mod:`nn_clustering.data` (datasets); :mod:`nn_clustering.estimators` (the public API);
:mod:`nn_clustering.training` (Keras architectures, pruning, training, the model folder's
schema); :mod:`nn_clustering.experiments` (the analyses behind the notebooks); and
:mod:`nn_clustering.cli`. ``tests/test_layers.py`` checks the order.
"""

from ._version import __version__
from .core.graph import NetworkWeights
from .errors import NnClusteringError, ParameterError
from .estimators import CommunityPartition, NotFittedError, ShuffleTest, SpectralNCut
from .formats.loader import as_weights, load_weights

__all__ = [
    "CommunityPartition",
    "NetworkWeights",
    "NnClusteringError",
    "NotFittedError",
    "ParameterError",
    "ShuffleTest",
    "SpectralNCut",
    "__version__",
    "as_weights",
    "load_weights",
]
