"""`Sequential`: a chain of modules, run forward in order and backward in reverse."""
from .module_list import ModuleSequence


class Sequential(ModuleSequence):
    """``y = f_k(... f_2(f_1(x)))``.

    Backward applies the chain rule link by link, last module first:
    ``dx_{i} = f_i.backward(dx_{i+1})``, each module adding its parameter gradients on the way.
    Children are named ``"0"``, ``"1"``, ... as in PyTorch, so ``state_dict`` keys match; a
    slice keeps its children's names (``model[2:]`` starts at ``"2"``), as PyTorch's does.
    Edited like a list (as a ``ModuleList``): ``append``, ``extend``, ``insert``, ``model[i] =
    module``, ``del model[i]`` (or a slice), ``pop``, ``+`` and ``+=``; after an insert or a deletion the
    numbered children are numbered ``"0"``, ``"1"``, ... again, in order, as in PyTorch.
    """

    def __init__(self, *modules):
        super().__init__()
        self.extend(modules)

    def forward(self, x):
        """``x`` through every module in order."""
        self.__dict__["_chain"] = tuple(self._modules.values())     # what backward retraces
        for module in self._modules.values():
            x = module(x)
        return x

    def backward(self, dy):
        """The chain rule, last module first: ``dy <- module.backward(dy)``; returns dL/dx."""
        modules = tuple(self._modules.values())
        if len(modules) != len(self._chain) or any(m is not c for m, c in zip(modules, self._chain)):
            raise ValueError("Sequential.backward: its modules were changed after its forward "
                             "(inserted, deleted or replaced), so the chain backward would "
                             "differentiate is not the one forward ran; run forward again")
        for module in reversed(modules):
            dy = module.backward(dy)
        return dy

    def _slice(self, index):
        part = type(self)()
        for name, module in list(self._modules.items())[index]:
            part.add_module(name, module)
        return part
