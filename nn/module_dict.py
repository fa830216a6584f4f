"""`ModuleDict`: modules kept under string keys, registered so that the model owning it sees them."""
from collections.abc import Mapping

from .module import Module, _check_initialised
from .module_list import ModuleList


class ModuleDict(Module):
    """A dict of modules, registered as children under their keys (PyTorch's
    ``nn.ModuleDict``): their parameters, buffers and modes belong to the model that holds
    it, and its ``state_dict`` keys read ``heads.digit.weight`` as PyTorch's do. Keys keep
    the order they were first added in.

    Like ``ModuleList`` it has no forward or backward of its own: the model's ``forward``
    picks and calls the modules, its ``backward`` calls the ``backward`` of the same ones,
    for instance a model with one head per task::

        def forward(self, x, task):
            self.task = task
            return self.heads[task](x)

        def backward(self, dy):
            return self.heads[self.task].backward(dy)

    ``ModuleDict(modules=None)`` takes a mapping (another ModuleDict too) or an iterable of
    ``(key, module)`` pairs.
    Edited like a dict: ``heads[key] = module``, ``del heads[key]``, ``update``, ``pop`` and
    ``clear``; read with ``heads[key]``, ``key in heads``, ``keys``, ``values``, ``items``
    and iteration over the keys. A key is a non-empty string without ``"."`` that is not
    already an attribute of the ModuleDict (``"keys"``, ``"training"``, ...), as in PyTorch.
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def update(self, modules):
        """Add or replace the ``(key, module)`` pairs of a mapping or an iterable of pairs;
        every pair is checked before any is added."""
        pairs = list(modules.items() if isinstance(modules, Mapping | ModuleDict) else modules)
        for number, pair in enumerate(pairs):
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                raise TypeError(f"ModuleDict.update: expected a mapping or (key, module) pairs, got "
                                f"{pair!r} at position {number}")
            self._check_entry(*pair)
        for key, module in pairs:
            self.add_module(key, module)

    def __getitem__(self, key):
        if key not in self._modules:
            raise KeyError(f"ModuleDict has no module {key!r}; its keys are {list(self._modules)}")
        return self._modules[key]

    def __setitem__(self, key, module):
        self._check_entry(key, module)
        self.add_module(key, module)

    def __delitem__(self, key):
        self[key]                                   # the KeyError naming the keys there are
        del self._modules[key]

    def pop(self, key):
        module = self[key]
        del self[key]
        return module

    def clear(self):
        self._modules.clear()

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def __contains__(self, key):
        return key in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def _check_entry(self, key, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict: expected a Module for key {key!r}, got {type(module).__name__}")
        _check_initialised(module)
        self._check_new_name("ModuleDict", key)
        if key not in self._modules:
            self._check_free("ModuleDict", key)

    forward, backward = ModuleList.forward, ModuleList.backward     # it runs nothing itself
