"""nn-clustering: is this trained neural network modular?"""

__version__ = "0.1.0"
