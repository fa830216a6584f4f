"""`Sequential`: a chain of modules, run forward in order and backward in reverse."""
from .module import Module


class Sequential(Module):
    """``y = f_k(... f_2(f_1(x)))``.

    Backward applies the chain rule link by link, last module first:
    ``dx_{i} = f_i.backward(dx_{i+1})``, each module adding its parameter gradients on the way.
    Children are named ``"0"``, ``"1"``, ... as in PyTorch, so ``state_dict`` keys match; a
    slice keeps its children's names (``model[2:]`` starts at ``"2"``), as PyTorch's does.
    """

    def __init__(self, *modules):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: expected Module instances, got {type(module).__name__}")
        numbers = [int(name) for name in self._modules if name.isdigit()]   # a slice may start past "0"
        self.add_module(str(max(numbers, default=-1) + 1), module)
        return self

    def forward(self, x):
        """``x`` through every module in order."""
        for module in self._modules.values():
            x = module(x)
        return x

    def backward(self, dy):
        """The chain rule, last module first: ``dy <- module.backward(dy)``; returns dL/dx."""
        for module in reversed(self._modules.values()):
            dy = module.backward(dy)
        return dy

    def __getitem__(self, index):
        if isinstance(index, slice):
            part = Sequential()
            for name, module in list(self._modules.items())[index]:
                part.add_module(name, module)
            return part
        modules = list(self._modules.values())
        try:
            return modules[index]
        except IndexError:
            raise IndexError(f"Sequential: index {index} is out of range for {len(modules)} modules") from None

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
