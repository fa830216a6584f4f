"""`Sequential`: a chain of modules, run forward in order and backward in reverse."""
import operator

from .module import Module, _check_initialised


class Sequential(Module):
    """``y = f_k(... f_2(f_1(x)))``.

    Backward applies the chain rule link by link, last module first:
    ``dx_{i} = f_i.backward(dx_{i+1})``, each module adding its parameter gradients on the way.
    Children are named ``"0"``, ``"1"``, ... as in PyTorch, so ``state_dict`` keys match; a
    slice keeps its children's names (``model[2:]`` starts at ``"2"``), as PyTorch's does.
    Edited like a list: ``append``, ``extend``, ``insert``, ``model[i] = module``, ``del
    model[i]`` (or a slice) and ``pop``; after an insert or a deletion the numbered children
    are numbered ``"0"``, ``"1"``, ... again, in order, as in PyTorch.
    """

    def __init__(self, *modules):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module):
        _check_module(module)
        numbers = [int(name) for name in self._modules if name.isdigit()]   # a slice may start past "0"
        self.add_module(str(max(numbers, default=-1) + 1), module)
        return self

    def extend(self, modules):
        modules = list(modules)
        for module in modules:          # all checked before any is added
            _check_module(module)
        for module in modules:
            self.append(module)
        return self

    def insert(self, index, module):
        """Put ``module`` before position ``index`` (``len(self)`` appends), as ``list.insert``
        but refusing an index out of range."""
        _check_module(module)
        n, position = len(self), _as_index(index)
        if position is None or not -n <= position <= n:
            raise IndexError(f"Sequential.insert: expected an index in [{-n}, {n}], got {index!r}")
        items = list(self._modules.items())
        items.insert(position, (None, module))
        self._renumber(items)
        return self

    def pop(self, index=-1):
        module = self[index]
        del self[index]
        return module

    def __setitem__(self, index, module):
        _check_module(module)
        setattr(self, list(self._modules)[self._position(index)], module)

    def __delitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            del items[index]
        else:
            del items[self._position(index)]
        self._renumber(items)

    def _position(self, index):
        n, position = len(self), _as_index(index)
        if position is None:
            raise TypeError(f"Sequential: expected an integer index or a slice, got {index!r}")
        if not -n <= position < n:
            raise IndexError(f"Sequential: index {index!r} is out of range for {n} modules")
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

    def forward(self, x):
        """``x`` through every module in order."""
        self.__dict__["_chain"] = tuple(map(id, self._modules.values()))   # what backward retraces
        for module in self._modules.values():
            x = module(x)
        return x

    def backward(self, dy):
        """The chain rule, last module first: ``dy <- module.backward(dy)``; returns dL/dx."""
        if tuple(map(id, self._modules.values())) != self._chain:
            raise ValueError("Sequential.backward: its modules were changed after its forward "
                             "(inserted, deleted or replaced), so the chain backward would "
                             "differentiate is not the one forward ran; run forward again")
        for module in reversed(self._modules.values()):
            dy = module.backward(dy)
        return dy

    def __getitem__(self, index):
        if isinstance(index, slice):
            part = Sequential()
            for name, module in list(self._modules.items())[index]:
                part.add_module(name, module)
            return part
        return list(self._modules.values())[self._position(index)]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


def _as_index(index):
    """``index`` as an int if it is an integer (not a bool), else None."""
    if isinstance(index, bool):
        return None
    try:
        return operator.index(index)
    except TypeError:
        return None


def _check_module(module):
    if not isinstance(module, Module):
        raise TypeError(f"Sequential: expected Module instances, got {type(module).__name__}")
    _check_initialised(module)
