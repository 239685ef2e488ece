"""Trained models: Keras architectures (:mod:`.architectures`), magnitude pruning inside the
compiled train step (:mod:`.pruning`), training of the model tags (:mod:`.train`), the model
folder's schema that the analyses read without Keras (:mod:`.catalog`) and channel lesions of a
Keras CNN (:mod:`.cnn_lesion`). Keras 3, on TensorFlow or JAX; nothing here is needed to cluster
a network from its weights.
"""
