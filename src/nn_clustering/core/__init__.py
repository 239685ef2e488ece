"""The numeric core: weights to graph, spectral clustering, n-cut, shuffle tests, statistics and
lesion arithmetic. numpy and scipy only (joblib and dask for parallel shuffles); it never imports
Keras or TensorFlow, so it runs wherever numpy does.

Modules, one idea each: :mod:`.graph` (the weights type and chains of layers),
:mod:`.dag` (residual and concatenating networks), :mod:`.nodes` (what both graphs share), :mod:`.spectral`
(embedding and clustering), :mod:`.kmeans`, :mod:`.ncut`, :mod:`.shuffle`, :mod:`.stats`,
:mod:`.lesion`, :mod:`.parallel`, :mod:`.enums` (the vocabularies), :mod:`.parameters` (every
parameter's name and constraint, checked in one place) and :mod:`.rows` (result rows).
"""
