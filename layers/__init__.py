"""handprop's layers, each written by hand: forward, backward, and the math in the docstring."""
from .dense import Dense
from .activations import ReLU, LeakyReLU, Tanh, Sigmoid, Softmax
from .flatten import Flatten
from .dropout import Dropout
from .conv import Conv1D, Conv2D
from .pool import AvgPool1D, AvgPool2D, GlobalAvgPool2D, MaxPool1D, MaxPool2D
from .batchnorm import BatchNorm1D, BatchNorm2D
from .recurrent import RecurrentBase
from .rnn import RNN
from .lstm import LSTM
from .gru import GRU
from .embedding import Embedding
from .layernorm import LayerNorm

__all__ = ["Dense", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Softmax", "Flatten", "Dropout",
           "Conv1D", "Conv2D", "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D", "GlobalAvgPool2D",
           "BatchNorm1D", "BatchNorm2D", "RecurrentBase", "RNN", "LSTM", "GRU",
           "Embedding", "LayerNorm"]
