"""handprop's core: the manual-backpropagation protocol and what every model needs around it.

``Parameter`` and ``Module`` (forward caches, backward adds gradients and returns dL/dx),
``ModuleList``, ``ModuleDict``, ``Sequential``, the losses, ``gradcheck``, the training loop
(``fit``, ``evaluate``), ``summary``, checkpoints (``save``/``load``), seeding, the kernel switch
(``use_reference``) and the tools to look inside backprop (``check_intermediates``,
``compare``, ``watch``, ``gradient_report``).
"""
from .parameter import Parameter
from .module import Module, RemovableHandle, eval_mode
from .module_list import ModuleList
from .module_dict import ModuleDict
from .sequential import Sequential
from .losses import CrossEntropyLoss, MSELoss, BCEWithLogitsLoss, log_softmax
from .backend import use_reference, reference_enabled
from .random import seed, get_rng
from .gradcheck import gradcheck, GradcheckReport, numerical_gradient
from .training import fit, evaluate
from .summary import summary
from .checkpoint import save, load
from .inspect import check_intermediates, compare, watch, gradient_report

__all__ = [
    "Parameter", "Module", "RemovableHandle", "eval_mode", "ModuleList", "ModuleDict", "Sequential",
    "CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss", "log_softmax",
    "use_reference", "reference_enabled", "seed", "get_rng",
    "gradcheck", "GradcheckReport", "numerical_gradient",
    "fit", "evaluate", "summary", "save", "load",
    "check_intermediates", "compare", "watch", "gradient_report",
]
