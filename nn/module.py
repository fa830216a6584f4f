"""`Module`: the manual-backpropagation protocol every layer follows.

A module computes ``y = f(x; params)`` in ``forward`` and caches what its backward needs;
``backward(dy)`` receives dL/dy, ADDS dL/dparam into each ``Parameter.grad`` and returns dL/dx.
The cache is of the last call only: a model refuses backward when a module inside it was called
twice in its forward pass, or ran again after it (give each call its own module, sharing
``Parameter`` objects to share weights); a module runs on one thread at a time (and modules
running at once on several threads must not share a ``Parameter``: backward adds into its
``grad`` without a lock); and a cache
may hold the input array itself or the output it returned (``Tanh`` keeps ``y``), not a copy,
so either changed in place before backward changes the gradient. Parameters, buffers and child
modules live in explicit registries (as in PyTorch), so the caches a layer keeps on itself
never leak into ``state_dict``.

Every subclass's ``forward`` and ``backward`` (its own, or ones it takes from a class that is not
a Module) are wrapped once, when the class is defined (``__init_subclass__``), with the
bookkeeping all layers share: ``backward`` before ``forward`` raises, ``dy`` must have the shape
and dtype of the output and ``dx`` those of the input, hooks run, and recorded intermediates are
collected.
"""
import copy
import functools
import itertools
import re
import threading
from collections import OrderedDict, namedtuple
from collections.abc import Mapping
from contextlib import contextmanager

import numpy as np

from .backend import reference_enabled
from .checks import check_flag, check_float_dtype
from .parameter import Parameter


class RemovableHandle:
    """Returned by ``register_*_hook``; ``remove()`` unregisters the hook."""

    def __init__(self, hooks):
        self._hooks = hooks
        # a key equal to no other, in this process or from an unpickled module's hooks
        self.id = object()

    def remove(self):
        self._hooks.pop(self.id, None)


class _Passes(threading.local):
    """Forward passes on this thread: a pass is a top-level forward and every forward it
    calls inside it. ``number`` is the current pass's (unique across threads, increasing),
    ``depth`` how many forwards are running."""
    number = 0
    depth = 0


_passes = _Passes()
_pass_numbers = itertools.count(1)

#: Orders events across modules: the start and end of each forward (so a model's backward can
#: tell a module inside it that ran again after the model's forward), each recorded
#: intermediate gradient and the end of each backward (so ``check_intermediates`` can list a
#: model's gradients in the order its backward computed them, children inside parents).
_ticks = itertools.count()


def _count_call(module):
    """Note one more call of ``module`` in the current pass (see ``Module._uses``)."""
    if _passes.depth == 0:
        _passes.number = next(_pass_numbers)
    same_pass = module._pass == _passes.number
    module.__dict__["_uses"] = module._uses + 1 if same_pass else 1
    module.__dict__["_pass"] = _passes.number


def _check_single_use(module):
    """Raise if a module inside ``module`` (or itself) ran more than once in ``module``'s last
    forward pass, or ran again after it ended (called on its own, or by another model that
    holds it): a module caches its last call only, so its backward would serve another call
    than the one ``module``'s backward is for. Checked before any gradient is added."""
    name = type(module).__name__
    for m in module.modules():
        if m._uses > 1 and m._pass == module._pass:
            raise ValueError(
                f"{name}.backward: {type(m).__name__} ran {m._uses} times in the last forward "
                "pass, and a module caches only its last call, so the gradients of the earlier "
                "calls cannot be computed; use one module per call (to share weights, give both "
                "the same Parameter: b.weight = a.weight)")
        if m is not module and m._pass == module._pass and m._output_meta is False:
            raise ValueError(
                f"{name}.backward: {type(m).__name__}, inside it, was converted with astype (or "
                f"failed) after {name}'s forward, which dropped what its backward needs; run "
                f"{name}'s forward again")
        if m is not module and m._called_at > module._finished_at:
            raise ValueError(
                f"{name}.backward: {type(m).__name__}, inside it, ran again after {name}'s last "
                f"forward (on its own or in another model), and a module caches only its last "
                f"call; run {name}'s forward again before its backward, or give each model its "
                "own module (to share weights, give both the same Parameter: b.weight = a.weight)")


def _apply_hooks(hooks, where, what, value, call):
    """``call(hook, value)`` for each hook in turn; a non-None result replaces ``value`` (the
    output, or dx) for the next hook and the caller, once checked to look like it."""
    for hook in list(hooks.values()):
        result = call(hook, value)
        if result is not None:
            _check_replacement(where, hook, what, value, result)
            value = result
    return value


def _apply_pre_hooks(module, args):
    """Each forward pre-hook in turn; a non-None result (a tuple, or one value standing for a
    one-element tuple) replaces the positional arguments, each array by one of its shape and
    dtype."""
    where = f"{type(module).__name__}.forward"
    for hook in list(module._forward_pre_hooks.values()):
        result = hook(module, args)
        if result is None:
            continue
        result = result if isinstance(result, tuple) else (result,)
        if len(result) != len(args):
            raise ValueError(f"{where}: the forward pre-hook {getattr(hook, '__name__', hook)!r} returned "
                             f"{len(result)} arguments to replace {len(args)}")
        for value, new in zip(args, result):
            _check_replacement(where, hook, "an input", value, new, kind="forward pre-")
        args = result
    return args


def _check_replacement(where, hook, what, value, result, kind=None):
    """A hook's replacement for ``value`` (forward's output, backward's dx) must be an array
    of its shape and dtype: backward differentiates the module's own function, as if the hook
    were the identity."""
    got = isinstance(value, np.ndarray) and _unlike(result, value.shape, value.dtype)
    if got:
        kind = kind or f"{where.rsplit('.', 1)[1]} "
        raise ValueError(f"{where}: the {kind}hook {getattr(hook, '__name__', hook)!r} "
                         f"returned {got} to replace {what}, which is {value.dtype} {value.shape}")


def _unlike(array, shape, dtype):
    """``""`` if ``array`` is an array of ``shape`` and ``dtype``, else what it is instead."""
    if isinstance(array, np.ndarray):
        return "" if array.shape == shape and array.dtype == dtype else f"{array.dtype} {array.shape}"
    return type(array).__name__


def _check_initialised(module):
    if "_parameters" not in module.__dict__:
        raise TypeError(f"{type(module).__name__}: Module.__init__ was never called; call "
                        "super().__init__() first in __init__")


def _check_shapes(module, where):
    """A parameter or persistent buffer keeps the shape first registered under its name, for
    the module's life: layers size their kernels' loops by their configuration, so a
    ``p.data`` of another shape would be read out of bounds or broadcast silently. Checked
    before each forward and backward."""
    shapes, free = module._registered_shapes, module._non_persistent   # (a causal mask may grow)
    for kind, registry in (("parameter", module._parameters), ("buffer", module._buffers)):
        for name, value in registry.items():
            expected = shapes.get(name)
            if value is not None and expected is not None and value.shape != expected and name not in free:
                raise ValueError(
                    f"{type(module).__name__}.{where}: expected {kind} {name!r} of shape {expected}, "
                    f"the shape it was registered with, got {value.shape}; a {kind} keeps its shape "
                    "(build a new module for another)")


def _check_dx(module, dx):
    """A backward returns dL/dx of its (floating) input's shape and dtype: a custom layer's
    mistake is named where it happens, not one layer further back."""
    if module._input_meta is None:
        return
    shape, dtype = module._input_meta
    got = _unlike(dx, shape, dtype)
    if got:
        raise ValueError(f"{type(module).__name__}.backward returned {got} as dx; expected an "
                         f"array of its input's shape and dtype, {dtype} {shape}")


_claims = threading.Lock()


def _nested(module):
    """Whether this call of ``module`` runs inside its own forward or backward on this thread
    (a ``super().forward(...)`` call): it gets no bookkeeping of its own."""
    return module._call_depth > 0 and module._caller == threading.get_ident()


def _claim(module, what):
    """Count ``module`` as running ``what`` on this thread (until ``_release``). A module
    running on another live thread raises: its caches serve one call at a time."""
    me, d = threading.get_ident(), module.__dict__
    with _claims:
        if d["_call_depth"] and d["_caller"] != me:
            if d["_caller"] in {t.ident for t in threading.enumerate()}:
                name = type(module).__name__
                raise RuntimeError(
                    f"{name}.{what}: this {name} is running on another thread, and a module "
                    "caches its call for its backward, so each thread needs its own module "
                    "with its own parameters (copy.deepcopy(model)): backward adds into each "
                    "parameter's grad without a lock")
            d["_call_depth"] = 0            # that thread is gone (a forked child): no claim
        d["_caller"] = me
        d["_call_depth"] += 1


def _release(module):
    with _claims:
        module.__dict__["_call_depth"] -= 1


def _wrap_forward(fn):
    @functools.wraps(fn)
    def forward(self, *args, **kwargs):
        _check_initialised(self)
        if _nested(self):
            # A super().forward(...) call; the same one twice overwrote the cache of the first.
            self._inner_calls[fn] = self._inner_calls.get(fn, 0) + 1
            return fn(self, *args, **kwargs)
        _check_shapes(self, "forward")
        args = _apply_pre_hooks(self, args)
        _claim(self, "forward")
        standing = None                          # the record of the forward a refusal leaves standing
        if self._recording:
            standing = dict(self.intermediates)
            self.intermediates.clear()
        previous_count, previous_call = (self._pass, self._uses), self._called_at
        _count_call(self)
        self._inner_calls.clear()
        self.__dict__["_called_at"] = start = next(_ticks)
        _passes.depth += 1
        try:
            out = fn(self, *args, **kwargs)
        except (ValueError, TypeError):
            # Refused input: a layer checks it before changing any cache, so its last forward
            # stands -- unless a module inside it had already run on this input.
            if any(m._called_at > start for m in self.modules() if m is not self):
                self.__dict__["_output_meta"] = False
            else:
                self.__dict__["_called_at"] = previous_call
                self.__dict__["_pass"], self.__dict__["_uses"] = previous_count
                if standing is not None:
                    self.intermediates.clear()
                    self.intermediates.update(standing)
            raise
        except BaseException:
            self.__dict__["_output_meta"] = False   # failed midway: no whole forward left
            raise
        finally:
            _passes.depth -= 1
            _release(self)
        self.__dict__["_finished_at"] = next(_ticks)
        self.__dict__["_uses"] = max(self._uses, *self._inner_calls.values(), 1)
        self._stack_steps(self.intermediates)
        if isinstance(out, np.generic):          # NumPy turns a 0-d result into a scalar: an array again
            out = np.asarray(out)
        self._output_meta = (out.shape, out.dtype) if isinstance(out, np.ndarray) else None
        x = args[0] if args else None
        self.__dict__["_input_meta"] = ((x.shape, x.dtype) if isinstance(x, np.ndarray)
                                        and np.issubdtype(x.dtype, np.floating) else None)
        return _apply_hooks(self._forward_hooks, f"{type(self).__name__}.forward", "the output", out,
                            lambda hook, out: hook(self, args, out))
    return forward


def _wrap_backward(fn):
    @functools.wraps(fn)
    def backward(self, dy, *args, **kwargs):
        if _nested(self):
            return fn(self, dy, *args, **kwargs)
        name = type(self).__name__
        if self._output_meta is False:
            raise ValueError(f"{name}.backward called before forward (or after a forward that "
                             "failed, or after astype): run forward first, it caches what backward needs")
        if dy is None and not self._dy_optional:
            raise TypeError(f"{name}.backward: expected dy to be a numpy array, got None")
        _check_single_use(self)
        _check_shapes(self, "backward")
        if dy is not None and self._output_meta is not None:
            shape, dtype = self._output_meta
            if not isinstance(dy, np.ndarray):
                raise TypeError(f"{name}.backward: expected dy to be a numpy array, got {type(dy).__name__}")
            if dy.shape != shape:
                raise ValueError(f"{name}.backward: expected dy of shape {shape} (forward's output), "
                                 f"got {dy.shape}")
            if dy.dtype != dtype:
                raise TypeError(f"{name}.backward: expected dy of dtype {dtype} (forward's output), "
                                f"got {dy.dtype}")
        unset = [p for p in self._parameters.values() if p.grad is None]
        for p in unset:                          # "no gradient": backward starts it from zeros
            p.grad = np.zeros_like(p.data)
        _claim(self, "backward")                 # first: a refusal must not touch another thread's record
        standing = None                          # the gradients a refused argument leaves standing
        try:
            if self._recording:
                standing = (dict(self.intermediate_grads), list(self.intermediate_grad_order),
                            list(self._grad_ticks))
                self.intermediate_grads.clear()
                self.intermediate_grad_order.clear()
                self._grad_ticks.clear()
            dx = fn(self, dy, *args, **kwargs)
        except (ValueError, TypeError) as error:
            for p in unset:                      # refused (e.g. a recurrent layer's dstate)
                p.grad = None
            if standing is not None:
                self.intermediate_grads.update(standing[0])
                self.intermediate_grad_order[:], self._grad_ticks[:] = standing[1:]
            _explain_none_grad(self, error)
            raise
        finally:
            _release(self)
        self.__dict__["_backward_tick"] = next(_ticks)     # its parameters' gradients are done
        self._stack_steps(self.intermediate_grads)
        if isinstance(dx, np.generic):
            dx = np.asarray(dx)
        _check_dx(self, dx)
        return _apply_hooks(self._backward_hooks, f"{name}.backward", "dx", dx,
                            lambda hook, dx: hook(self, dx, dy))
    return backward


def _explain_none_grad(module, error):
    """``None += array`` raised by this backward's own code (not by a module it called): name
    the parameters whose gradient was None -- a child's, after ``zero_grad(set_to_none=True)``,
    which this backward added into before the child's backward started it (its own
    parameters the protocol starts)."""
    if hasattr(error, "raised_in_backward_of"):          # explained, or not, where it was raised
        return
    error.raised_in_backward_of = module
    if not (isinstance(error, TypeError) and re.match(r"unsupported operand type\(s\) for \+=?: "
                                                      r"'NoneType'", str(error))):
        return
    own = {id(p) for p in module._parameters.values()}
    unset = [name for name, p in module.named_parameters() if p.grad is None and id(p) not in own]
    if unset:
        explained = TypeError(f"{type(module).__name__}.backward: {error}: the gradient of "
                              f"{', '.join(unset)} was None (zero_grad(set_to_none=True)) when this "
                              "backward added into it; start it first, `if p.grad is None: "
                              "p.zero_grad()`, or register the parameter here too")
        explained.raised_in_backward_of = module
        raise explained from error


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer and model.

    Subclasses call ``super().__init__()`` first, then assign ``Parameter`` objects and child
    modules as attributes (they are registered by name, in order; ones kept in a plain list
    or dict are not: keep them in a ``ModuleList``/``ModuleDict`` or name each with
    ``setattr``, ``register_parameter`` or ``add_module``) and register buffers with
    ``register_buffer``. They implement ``forward(x)``, which checks its input before it
    changes any cache (a refused call leaves the last forward standing for backward) and
    caches what backward needs, and ``backward(dy) -> dx``, which adds each parameter's
    gradient into its ``grad`` and returns dL/dx of the input's shape and dtype (checked; a
    backward refused at that check has added its gradients: ``zero_grad`` before a rerun).

    Attributes
    ----------
    training : bool
        True after ``train()``, False after ``eval()``.
    intermediates, intermediate_grads : dict
        Named intermediate values and their gradients, filled only while recording is on
        (``record_intermediates()``); empty otherwise, so nothing is kept that backward does
        not need. ``intermediate_grad_order`` lists the ``(name, step)`` of each gradient in
        the order backward computed them.
    """

    #: Whether ``backward(None, ...)`` is meaningful (a recurrent layer's gradient for its final
    #: state alone); for every other module dy must be an array.
    _dy_optional = False

    def __init__(self):
        d = self.__dict__
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent"] = set()            # buffers left out of state_dict
        d["_registered_shapes"] = {}            # name: the shape a parameter or buffer came with
        d["_modules"] = OrderedDict()
        d["_forward_pre_hooks"] = OrderedDict()
        d["_forward_hooks"] = OrderedDict()
        d["_backward_hooks"] = OrderedDict()
        d["training"] = True
        d["_call_depth"], d["_caller"] = 0, None   # calls running, and the thread running them
        d["_output_meta"] = False            # False: no forward yet
        d["_input_meta"] = None              # the shape and dtype of a floating input: dx's
        d["_pass"], d["_uses"] = 0, 0           # the forward pass of the last call, calls in it
        d["_inner_calls"] = {}                  # super().forward calls in it, per class's forward
        d["_called_at"] = d["_finished_at"] = -1   # ticks: the last forward's start and end
        d["_recording"] = False
        d["_perturbations"] = {}
        d["intermediates"] = {}
        d["intermediate_grads"] = {}
        d["intermediate_grad_order"] = []       # (name, step) in the order backward met them
        d["_grad_ticks"] = []                   # the tick of each of those
        d["_backward_tick"] = -1
        d["per_step_intermediates"] = set()     # names recorded once per time step

    def __getstate__(self):
        """For ``copy.deepcopy`` and pickling: a copy taken while this module runs (from a
        hook, or another thread) is not running itself."""
        state = self.__dict__.copy()
        state["_call_depth"], state["_caller"] = 0, None
        return state

    def __setstate__(self, state):
        """A module pickled by an older handprop gets the bookkeeping added since."""
        self.__dict__.update({k: v for k, v in Module().__dict__.items() if k not in state})
        self.__dict__.update(state)
        if "_registered_shapes" not in state:
            for registry in (self._parameters, self._buffers):
                for name, value in registry.items():
                    self._record_shape(name, value)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # the class's own methods, and ones it takes from a class that is not a Module (a mixin)
        for name, wrap in (("forward", _wrap_forward), ("backward", _wrap_backward)):
            method = getattr(cls, name)
            if not getattr(method, "wrapped_by_module", False):
                wrapped = wrap(method)
                wrapped.wrapped_by_module = True
                setattr(cls, name, wrapped)

    # ------------------------------------------------------------------ registries
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if isinstance(value, Parameter):
            value.name = value.name or name
            self._forget(name, keep=self._parameters)
            self._parameters[name] = value
            self._record_shape(name, value)
        elif isinstance(value, Module):
            self._forget(name, keep=self._modules)
            self._modules[name] = value
        elif name in self._buffers:
            if isinstance(value, np.generic):       # buf = buf + 1 on a 0-d buffer gives a scalar
                value = np.asarray(value)
            _check_buffer(f"{type(self).__name__}.{name}", name, value)
            self._buffers[name] = value
            self._record_shape(name, value)
        elif name in self._parameters or name in self._modules:
            raise TypeError(f"{type(self).__name__}: cannot replace registered {name!r} with a "
                            f"{type(value).__name__}; delete it first")
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name, keep):
        """Drop ``name`` from every registry and plain attribute but ``keep``, where it is about
        to be registered: replacing an entry there keeps its place (a ``Sequential``'s order,
        ``state_dict``'s key order)."""
        for registry in (self._parameters, self._buffers, self._modules, self.__dict__):
            if registry is not keep:
                registry.pop(name, None)
        if keep is not self._buffers:
            self._non_persistent.discard(name)

    def _record_shape(self, name, value):
        """Remember the first shape registered under ``name``, for the module's life (see
        ``_check_shapes``)."""
        if value is not None:
            self._registered_shapes.setdefault(name, value.shape)

    def __getattr__(self, name):
        # Only called when normal lookup fails: look in the registries.
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        if "_parameters" not in d and not name.startswith("__"):    # (copy and pickle probe dunders)
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}: Module.__init__ "
                                 "was never called; call super().__init__() first in __init__")
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __delattr__(self, name):
        self._non_persistent.discard(name)
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, array, persistent=True):
        """Register a non-trainable array (e.g. BatchNorm's running mean) that belongs in
        ``state_dict`` and follows ``astype``. A buffer set to None (as PyTorch allows) stays
        registered but is left out of ``state_dict``; so is one with ``persistent=False`` (a
        constant the module rebuilds itself, such as a causal mask)."""
        where = f"{type(self).__name__}.register_buffer"
        self._check_new_name(where, name)
        persistent = check_flag(where, "persistent", persistent)
        if name not in self._buffers:
            self._check_free(where, name)
        _check_buffer(where, name, array)
        self.__dict__.pop(name, None)
        self._buffers[name] = array
        self._record_shape(name, array)
        (self._non_persistent.discard if persistent else self._non_persistent.add)(name)

    def register_parameter(self, name, param):
        """Register ``param`` under ``name``, as assigning it does, with the name checks of
        ``register_buffer`` (a name built at run time, e.g. ``f"weight_l{k}"``). None, as in
        PyTorch, says the module has no such parameter (``bias=False``): ``self.bias`` reads
        None and nothing is registered."""
        if param is None:
            self._check_new_name(f"{type(self).__name__}.register_parameter", name)
            self._forget(name, keep=None)
            object.__setattr__(self, name, None)
            return
        self._register("register_parameter", name, param, Parameter, self._parameters)

    def add_module(self, name, module):
        self._register("add_module", name, module, Module, self._modules)

    def _register(self, method, name, value, kind, registry):
        """``setattr(self, name, value)`` once ``value`` is a ``kind`` and ``name`` is a
        usable name, new or already in ``registry`` (replacing an entry of the same kind)."""
        where = f"{type(self).__name__}.{method}"
        self._check_new_name(where, name)
        if not isinstance(value, kind):
            raise TypeError(f"{where}: expected a {kind.__name__}, got {type(value).__name__}")
        if name not in registry:
            self._check_free(where, name)
        setattr(self, name, value)

    def _check_free(self, where, name):
        """A new registry entry must not replace a parameter, buffer, child or setting already
        there under that name (as in PyTorch)."""
        if hasattr(self, name):
            kind = ("a parameter" if name in self._parameters else "a buffer" if name in self._buffers
                    else "a child module" if name in self._modules else "an attribute")
            raise KeyError(f"{where}: {name!r} is already {kind} of this {type(self).__name__}; "
                           "delete it first")

    def _check_new_name(self, where, name):
        """``register_parameter``, ``register_buffer`` and ``add_module`` take a name usable as
        an attribute and in a dotted ``state_dict`` key that does not hide what ``Module``
        itself defines (``training``, ``forward``, ...). (Plain assignment is not checked, as
        in PyTorch.)"""
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"{where}: expected a non-empty name without '.', got {name!r}")
        if hasattr(Module, name) or name in _PROTOCOL_ATTRIBUTES:
            raise KeyError(f"{where}: {name!r} is an attribute every Module has; choose another name")

    def named_modules(self, prefix=""):
        """Yield ``(dotted_name, module)`` for this module and all descendants, pre-order, each
        module once (under its first name) even when it sits in the tree twice, as PyTorch's."""
        seen = set()
        for name, module in self._module_paths(prefix):
            if id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def _module_paths(self, prefix=""):
        """Every ``(dotted_name, module)`` path of the tree, a shared module under each of its
        names: ``state_dict`` keys a shared module's arrays under every name, as PyTorch does."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child._module_paths(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def named_children(self):
        """Yield ``(name, child)`` for each direct child, in order, a child held under two
        names once (under the first), as PyTorch's."""
        seen = set()
        for name, child in self._modules.items():
            if id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        return list(self._modules.values())

    def apply(self, fn):
        """Call ``fn(module)`` on every child, recursively, then on this module (PyTorch's
        order, e.g. a custom initialisation, a child held twice called once); returns self."""
        for _, child in self.named_children():
            child.apply(fn)
        fn(self)
        return self

    def named_parameters(self, prefix=""):
        """Yield ``(dotted_name, Parameter)`` pairs, PyTorch-style (``"0.weight"``), each
        parameter once even when shared."""
        seen = set()
        for mod_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        """Yield ``(dotted_name, array)`` of every buffer that holds an array (one set to None
        is left out, as in PyTorch)."""
        for mod_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def buffers(self):
        return [b for _, b in self.named_buffers()]

    # ------------------------------------------------------------------ modes and state
    def train(self, mode=True):
        """Set training mode on this module and its children; returns self."""
        mode = check_flag(f"{type(self).__name__}.train", "mode", mode)
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=False):
        """Zero every parameter's gradient. With ``set_to_none=True`` set them to None ("no
        gradient") instead, PyTorch's default: each module's backward starts its own from
        zeros, and a parameter whose module took no part in the step keeps None, so that
        optimizers leave it alone (zeros would still move it, under momentum or weight decay).
        A backward that adds into a parameter another module registered (a tied weight) starts
        it itself, ``if p.grad is None: p.zero_grad()``, or registers it too (``self.w = p``)."""
        check_flag(f"{type(self).__name__}.zero_grad", "set_to_none", set_to_none)
        for p in self.parameters():
            p.zero_grad(set_to_none)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze every parameter (``Parameter.requires_grad``): e.g.
        ``model.trunk.requires_grad_(False)`` to train only the rest; returns self."""
        flag = check_flag(f"{type(self).__name__}.requires_grad_", "requires_grad", requires_grad)
        for p in self.parameters():
            p.requires_grad = flag
        return self

    def astype(self, dtype):
        """Convert every parameter and floating buffer to ``dtype`` in place; returns self."""
        dtype = check_float_dtype(f"{type(self).__name__}.astype", dtype)
        for p in self.parameters():
            p.astype(dtype)
        for m in self.modules():
            for name, b in m._buffers.items():
                if isinstance(b, np.ndarray) and np.issubdtype(b.dtype, np.floating):
                    m._buffers[name] = b.astype(dtype)
            m._output_meta = False          # the last forward's caches are of the old dtype
        return self

    @property
    def dtype(self):
        """The dtype of the parameters (float32 by default) or, without any, of the
        floating-point buffers (BatchNorm's running statistics); None when there are neither."""
        params = self.parameters()
        if params:
            return params[0].data.dtype
        floats = (b.dtype for _, b in self.named_buffers() if b.dtype.kind == "f")
        return next(floats, None)

    def _state_entries(self):
        """``(key, module, name)`` of every parameter and persistent buffer (not None), in
        ``state_dict``'s order."""
        for mod_name, module in self._module_paths():
            buffers = [name for name, b in module._buffers.items()
                       if b is not None and name not in module._non_persistent]
            for name in list(module._parameters) + buffers:
                yield (f"{mod_name}.{name}" if mod_name else name), module, name

    def state_dict(self):
        """An ordered dict of copies of every parameter and (persistent) buffer, keyed by
        dotted name, with the keys and shapes of the equivalent PyTorch model."""
        return OrderedDict((key, (module._parameters[name].data if name in module._parameters
                                  else module._buffers[name]).copy())
                           for key, module, name in self._state_entries())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` into parameters and buffers.

        Values may be numpy arrays or anything with ``.detach().cpu().numpy()`` (a PyTorch
        tensor). Every key and shape is checked before anything changes, so a failed load
        leaves the module as it was. Returns ``(missing_keys, unexpected_keys)`` (a named
        tuple, as PyTorch's), both empty unless ``strict=False`` allowed them; shapes are
        checked either way.
        """
        owner = type(self).__name__
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{owner}.load_state_dict: expected a mapping of names to arrays, "
                            f"got {type(state_dict).__name__}")
        strict = check_flag(f"{owner}.load_state_dict", "strict", strict)
        targets = OrderedDict((key, (module, name)) for key, module, name in self._state_entries())
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            raise ValueError(f"{owner}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        staged = []
        for key, (module, name) in targets.items():
            if key not in state_dict:
                continue
            value = _to_numpy(state_dict[key], f"{owner}.load_state_dict: {key!r}")
            current = module._parameters[name].data if name in module._parameters else module._buffers[name]
            if value.shape != current.shape:
                raise ValueError(f"{owner}.load_state_dict: {key!r} expected shape {current.shape}, got {value.shape}")
            if (value.dtype.kind not in "biuf"
                    or np.issubdtype(current.dtype, np.floating) != np.issubdtype(value.dtype, np.floating)):
                raise TypeError(f"{owner}.load_state_dict: {key!r} expected dtype like {current.dtype}, got {value.dtype}")
            with np.errstate(over="ignore"):
                cast = value.astype(current.dtype, copy=True)
            if value.dtype.kind == "f" and (np.isinf(cast) & np.isfinite(value)).any():
                raise ValueError(f"{owner}.load_state_dict: {key!r} holds values beyond the range of "
                                 f"{current.dtype} (up to {np.abs(value[np.isfinite(value)]).max():g})")
            staged.append((module, name, cast))
        for module, name, value in staged:
            if name in module._parameters:
                module._parameters[name].data[...] = value
            else:
                module._buffers[name] = value
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ hooks
    def register_forward_pre_hook(self, hook):
        """``hook(module, inputs)`` runs before every forward; ``inputs`` is the tuple of
        positional arguments. A non-None return value replaces them: a tuple of as many, or
        one value for a one-argument forward, each array of the shape and dtype of the one it
        replaces (a normalisation, a fixed mask). Forward then runs on the replacement, and
        backward returns dL/d(replacement): it differentiates the module's own function, as if
        the hook were the identity."""
        _check_hook(f"{type(self).__name__}.register_forward_pre_hook", hook)
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook):
        """``hook(module, inputs, output)`` runs after every forward; ``inputs`` is the tuple of
        positional arguments (keyword arguments, e.g. a recurrent layer's ``state``, are not
        passed). A non-None return value, an array of the output's shape and dtype, replaces
        the output for the caller; backward still differentiates the module's own function,
        as if the hook were the identity."""
        _check_hook(f"{type(self).__name__}.register_forward_hook", hook)
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_backward_hook(self, hook):
        """``hook(module, grad_input, grad_output)`` runs after every backward, with
        ``grad_output`` = dL/dy that came in and ``grad_input`` = dL/dx going out (PyTorch's
        argument order). A non-None return value replaces dL/dx; it must have dL/dx's shape
        and dtype."""
        _check_hook(f"{type(self).__name__}.register_backward_hook", hook)
        handle = RemovableHandle(self._backward_hooks)
        self._backward_hooks[handle.id] = hook
        return handle

    # ------------------------------------------------------------------ intermediates
    def record_intermediates(self, mode=True):
        """Turn recording of named intermediates on (or off) for this module and its
        children; returns self. While recording, layers run their readable reference path and
        fill ``intermediates`` / ``intermediate_grads``; off, nothing extra is kept."""
        mode = check_flag(f"{type(self).__name__}.record_intermediates", "mode", mode)
        for m in self.modules():
            m.__dict__["_recording"] = mode
            if not mode:
                m.intermediates.clear()
                m.intermediate_grads.clear()
                m.intermediate_grad_order.clear()
                m._grad_ticks.clear()
                m._perturbations.clear()
        return self

    def _use_reference(self):
        """Whether this forward should take the readable reference path."""
        return self._recording or reference_enabled()

    def _tap(self, name, value, step=None):
        """Record intermediate ``name`` (at time ``step`` for per-step values, stacked to
        ``(N, T, ...)`` after forward). A finite-difference check can add a perturbation to it
        here, which is how ``check_intermediates`` differentiates the loss w.r.t. ``name``."""
        if not self._recording:
            return value
        delta = self._perturbations.get(name)
        if delta is not None:
            value = value + (delta if step is None else delta[:, step])
        if step is not None:
            self.per_step_intermediates.add(name)
        _store(self.intermediates, name, value, step)
        return value

    def _tap_grad(self, name, grad, step=None):
        """Record dL/d(intermediate ``name``) during backward."""
        if self._recording:
            _store(self.intermediate_grads, name, grad, step)
            self.intermediate_grad_order.append((name, step))
            self._grad_ticks.append(next(_ticks))
        return grad

    @staticmethod
    def _stack_steps(store):
        for name, value in list(store.items()):
            if isinstance(value, dict):          # per-step values: {t: array}
                steps = value
                T = max(steps) + 1
                first = next(iter(steps.values()))
                stacked = np.zeros((first.shape[0], T) + first.shape[1:], dtype=first.dtype)
                for t, v in steps.items():
                    stacked[:, t] = v
                store[name] = stacked

    # ------------------------------------------------------------------ protocol
    def forward(self, x):
        """``y = f(x; parameters)``; caches what ``backward`` needs. Subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dy):
        """Given ``dy = dL/dy``, add ``dL/dparam`` into every parameter's ``.grad`` and return
        ``dx = dL/dx``. Subclasses implement it, stating their equations."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def flops(self, input_shape, output_shape):
        """Forward floating-point operations for one call (used by ``nn.summary``); layers
        with arithmetic override this; a container counts only what it computes itself (a
        residual add): its children have rows of their own."""
        return 0

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"


def expect_module(owner, model, name="model"):
    """Raise unless ``model`` is a ``Module`` (the tools that walk a model name themselves)."""
    if not isinstance(model, Module):
        raise TypeError(f"{owner}: expected {name} to be an nn.Module, got {type(model).__name__}")


def copy_without_hooks(module):
    """A deep copy of ``module`` whose modules have no hooks: for tools (``gradcheck``,
    ``summary``) that run a model many times or for their own ends, so that a user's hooks
    neither fire on those runs nor change the function they see. The hooks are never copied
    (a bound method's object may hold a lock, or a dataset)."""
    memo = {}
    for m in module.modules():
        for hooks in (m._forward_pre_hooks, m._forward_hooks, m._backward_hooks):
            memo[id(hooks)] = OrderedDict()
    return copy.deepcopy(module, memo)


@contextmanager
def modes_restored(model):
    """Run the block; afterwards every module of ``model`` gets back the mode it had."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for m, training in modes:
            m.__dict__["training"] = training


@contextmanager
def eval_mode(model):
    """Run the block with ``model`` in evaluation mode; afterwards every module gets back its
    own mode (a submodule kept in eval inside a training model stays so)."""
    with modes_restored(model):
        yield model.eval()


def _store(store, name, value, step):
    if step is None:
        store[name] = np.array(value, copy=True)
    else:
        store.setdefault(name, {})[step] = np.array(value, copy=True)


#: The attributes every Module sets in ``__init__``: no registry entry may take their names.
_PROTOCOL_ATTRIBUTES = frozenset(Module().__dict__)


def _check_hook(where, hook):
    if not callable(hook):
        raise TypeError(f"{where}: expected a callable hook, got {type(hook).__name__}")


def _check_buffer(where, name, value):
    """A buffer is a numeric (or boolean) numpy array, or None."""
    if value is not None and not (isinstance(value, np.ndarray) and value.dtype.kind in "biuf"):
        got = f"{value.dtype} array" if isinstance(value, np.ndarray) else type(value).__name__
        raise TypeError(f"{where}: expected buffer {name!r} to be a numeric numpy array or None, got {got}")


def _to_numpy(value, where):
    if hasattr(value, "detach"):                 # a PyTorch tensor, without importing torch
        try:
            value = value.detach().cpu().numpy()
        except TypeError as e:                   # a dtype NumPy lacks, such as bfloat16
            raise TypeError(f"{where} expected a tensor NumPy can hold (convert it first, e.g. "
                            f".float()), got one of dtype {getattr(value, 'dtype', '?')} ({e})") from None
    if not isinstance(value, np.ndarray) and not np.isscalar(value):
        raise TypeError(f"{where} expected a numpy array, got {type(value).__name__}")
    return np.asarray(value)
