"""`summary`: a Keras-style table of a model's layers, output shapes, parameters and FLOPs."""
import numpy as np

from .module import Module, copy_without_hooks, expect_module


def _shown(model):
    """``(name, module)`` of every module that gets a row -- each leaf, and each container
    with parameters or arithmetic (a ``flops`` of its own) -- once each (a module used twice
    keeps its first name, so its hook records each call once)."""
    return [(name, m) for name, m in model.named_modules()
            if not m._modules or m._parameters or type(m).flops is not Module.flops]


def summary(model, input_shape, dtype=None, print_fn=print):
    """Print (and return) each leaf layer's output shape, parameter count and forward FLOPs
    (and a row for each container with parameters or a ``flops`` of its own, after its
    children's: its output, its own parameters, the arithmetic it does itself, such as a
    residual add).

    ``input_shape`` excludes the batch dimension, e.g. ``(1, 28, 28)`` for images or
    ``(T, F)`` for sequences; a batch of two zero samples of the model's dtype (or ``dtype``:
    an integer one for a model that starts with an ``Embedding``) is run through a copy of the
    model in eval mode, without its hooks or a carried recurrent state, so the model itself --
    its caches, state and mode -- is left as it was. (Two samples, not one: a BatchNorm without
    running statistics normalizes over the batch even in eval mode.) FLOPs count a
    multiply-add as two operations and are per sample. A parameter shared by several layers
    (tied weights) is counted once, in the row of the first layer that runs with it. With
    frozen parameters (``requires_grad=False``) the totals split into trainable and not.
    """
    expect_module("summary", model)
    if not isinstance(input_shape, (tuple, list)) or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in input_shape):
        raise TypeError(f"summary: expected input_shape to be a tuple of sizes without the batch "
                        f"dimension, e.g. (1, 28, 28), got {input_shape!r}")
    try:
        dtype = np.dtype(dtype or model.dtype or np.float32)
    except TypeError:
        raise TypeError(f"summary: expected dtype to be a NumPy dtype, got {dtype!r}") from None
    if print_fn is not None and not callable(print_fn):
        raise TypeError(f"summary: expected print_fn to be callable or None, got {type(print_fn).__name__}")
    model = copy_without_hooks(model).eval()
    for m in model.modules():
        if hasattr(m, "reset_state"):        # a stateful recurrent layer's carried batch
            m.reset_state()
    rows, counted, sharing = [], set(), []     # counted: ids of the parameters in a row so far

    def record(name):
        def hook(module, inputs, output):
            # the shapes of one sample: flops() counts for the whole batch it is given
            in_shape = (1,) + inputs[0].shape[1:] if inputs and isinstance(inputs[0], np.ndarray) else ()
            out_shape = (1,) + output.shape[1:] if isinstance(output, np.ndarray) else ()
            own = {id(p): p for p in module._parameters.values() if id(p) not in counted}
            counted.update(own)
            sharing.append(len(own) < len(module._parameters))
            params = sum(p.size for p in own.values())
            rows.append((name, type(module).__name__, out_shape, params, module.flops(in_shape, out_shape)))
        return hook

    for name, module in _shown(model):
        module.register_forward_hook(record(name))
    x = np.zeros((2,) + tuple(input_shape), dtype=dtype)
    try:
        model(x)
    except (TypeError, ValueError) as e:
        raise type(e)(f"summary: the model refused a batch of zeros of shape {x.shape} and dtype "
                      f"{dtype} ({e}); give input_shape without the batch dimension, and dtype= "
                      f"when the model takes another (integer ids for an Embedding)") from e

    header = f"{'Layer (type)':<32}{'Output Shape':<22}{'Param #':>12}{'FLOPs':>14}"
    lines = [header, "=" * len(header)]
    for name, kind, shape, params, flops in rows:
        shown = "(None, " + ", ".join(str(s) for s in shape[1:]) + ")" if shape else "?"
        lines.append(f"{(f'{name} ({kind})' if name else kind):<32}{shown:<22}{params:>12,}{flops:>14,}")
    total_params = sum(p.size for p in model.parameters())
    frozen = sum(p.size for p in model.parameters() if not p.requires_grad)
    lines += ["=" * len(header), f"Total params: {total_params:,}"]
    if frozen:
        lines += [f"Trainable params: {total_params - frozen:,}", f"Non-trainable params: {frozen:,}"]
    lines.append(f"Forward FLOPs per sample: {sum(r[4] for r in rows):,}")
    if any(sharing):
        lines.append("(a parameter shared by several layers is counted in the first one's row)")
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text
