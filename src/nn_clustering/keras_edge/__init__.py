"""The Keras edge: everything that imports Keras. Architectures (:mod:`.architectures`),
magnitude pruning inside the compiled train step (:mod:`.pruning`), training of the model
tags (:mod:`.training`), reading weights out of a Keras model (:mod:`.weights`, which imports
Keras lazily) and channel lesions of a Keras CNN (:mod:`.cnn_lesion`). Keras 3, on TensorFlow
or JAX; nothing here is needed to cluster a network from its ``.npz`` kernels.
"""
