"""handprop's layers, each written by hand: forward, backward, and the math in the docstring."""
from .dense import Dense
from .activations import ReLU, LeakyReLU, Tanh, Sigmoid, Softmax
from .flatten import Flatten
from .dropout import Dropout

__all__ = ["Dense", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softmax", "Flatten", "Dropout"]
