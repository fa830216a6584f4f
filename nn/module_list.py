"""`ModuleList`: modules kept in a numbered list, registered so that the model owning it sees them.

``ModuleSequence`` holds the list editing ``ModuleList`` and ``Sequential`` share.
"""
import operator

from .module import Module, _check_initialised


class ModuleSequence(Module):
    """Modules held in order as numbered children, edited like a list: what ``ModuleList`` and
    ``Sequential`` share. A slice is ``self._slice(index)``, which each defines as PyTorch's."""

    def append(self, module):
        self._check_module(module)
        numbers = [int(name) for name in self._modules if name.isdigit()]   # a slice may start past "0"
        self.add_module(str(max(numbers, default=-1) + 1), module)
        return self

    def extend(self, modules):
        modules = list(modules)
        for module in modules:          # all checked before any is added
            self._check_module(module)
        for module in modules:
            self.append(module)
        return self

    def insert(self, index, module):
        """Put ``module`` before position ``index`` (``len(self)`` appends), as ``list.insert``
        but refusing an index out of range."""
        self._check_module(module)
        n, position = len(self), _as_index(index)
        if position is None or not -n <= position <= n:
            raise IndexError(f"{type(self).__name__}.insert: expected an index in [{-n}, {n}], got {index!r}")
        items = list(self._modules.items())
        items.insert(position, (None, module))
        self._renumber(items)
        return self

    def __add__(self, other):
        """A new container of this type holding this one's modules, then ``other``'s (the same
        module objects, numbered ``"0"``, ``"1"``, ...), as PyTorch's ``+``."""
        return type(self)().extend(list(self) + self._modules_of(other, "+"))

    def __iadd__(self, other):
        return self.extend(self._modules_of(other, "+="))

    def _modules_of(self, other, operator):
        if not isinstance(other, (ModuleSequence, list, tuple)):
            raise TypeError(f"{type(self).__name__} {operator}: expected a ModuleList, a Sequential or a "
                            f"list of modules, got {type(other).__name__}")
        return list(other)

    def pop(self, index=-1):
        module = self[index]
        del self[index]
        return module

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._slice(index)
        return list(self._modules.values())[self._position(index)]

    def __setitem__(self, index, module):
        if isinstance(index, slice):
            raise TypeError(f"{type(self).__name__}: expected an integer index to assign one module, "
                            f"got {index!r} (for a range, del it and insert the new modules)")
        self._check_module(module)
        setattr(self, list(self._modules)[self._position(index)], module)

    def __delitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            del items[index]
        else:
            del items[self._position(index)]
        self._renumber(items)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def _position(self, index):
        n, position = len(self), _as_index(index)
        if position is None:
            raise TypeError(f"{type(self).__name__}: expected an integer index or a slice, got {index!r}")
        if not -n <= position < n:
            raise IndexError(f"{type(self).__name__}: index {index!r} is out of range for {n} modules")
        return position % n

    def _renumber(self, items):
        """Refill the children in the order of ``items``, numbered children (and new ones,
        named None) numbered from "0" again; other names are kept."""
        self._modules.clear()
        number = 0
        for name, module in items:
            if name is None or name.isdigit():
                name, number = str(number), number + 1
            self._modules[name] = module

    def _check_module(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: expected Module instances, got {type(module).__name__}")
        _check_initialised(module)


class ModuleList(ModuleSequence):
    """A list of modules, registered as children ``"0"``, ``"1"``, ... (PyTorch's
    ``nn.ModuleList``): their parameters, buffers and modes belong to the model that holds
    the list, and its ``state_dict`` keys read ``blocks.0.weight`` as PyTorch's do. (Modules
    kept in a plain Python list are not registered: the model would not see them.)

    A ModuleList has no forward or backward of its own. The model's ``forward`` calls the
    modules, and its ``backward`` calls their ``backward`` in the reverse order (the chain
    rule), for instance::

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return x

        def backward(self, dy):
            for block in reversed(self.blocks):
                dy = block.backward(dy)
            return dy

    ``ModuleList(modules=None)``; edited like a list: ``append``, ``extend``, ``insert``,
    ``blocks[i] = module``, ``del blocks[i]`` (or a slice), ``pop``, ``+`` and ``+=``. After an insert or a
    deletion the children are numbered ``"0"``, ``"1"``, ... again, in order, as in PyTorch;
    a slice is a new ModuleList of the same modules, numbered from ``"0"``.
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _slice(self, index):
        return type(self)(list(self._modules.values())[index])

    # Nothing runs, so the protocol has nothing to check (and no "backward before forward").
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} holds modules but runs none of them: call "
                                  "them from the forward of the model that holds it")
    forward.wrapped_by_module = True

    def backward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} holds modules but runs none of them: call "
                                  "their backward from the backward of the model that holds it")
    backward.wrapped_by_module = True


def _as_index(index):
    """``index`` as an int if it is an integer (not a bool), else None."""
    if isinstance(index, bool):
        return None
    try:
        return operator.index(index)
    except TypeError:
        return None
