"""Faster single-row decoding for torch on CPU, used by the ``hf`` backend's decode loop.

Two plain tricks, each switchable and measured in benchmarks/decode.py:
  _row_linear            a one-row F.linear as a batched matvec (3x faster per matrix on the dev CPU)
  PreallocatedLayer      a KV-cache layer that writes in place instead of torch.cat-ing every step
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


# --- a faster one-row linear for CPU decoding -------------------------------------------------
def row_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor | None:
    """``F.linear`` for a single row as a batched matrix-vector product, or None where it does not apply.

    Why: a decode step multiplies one row by every weight matrix. MKL's one-row fp32 matmul uses one
    thread and a slow path on some CPUs (measured 3x slower than this on the AMD EPYC dev box); splitting
    the weight's rows into ``threads`` blocks and calling ``bmm`` runs the blocks in parallel, with a
    better kernel. Same math, different summation order (differences ~1e-6 relative).
    """
    import torch

    out, inp = weight.shape if weight.dim() == 2 else (0, 0)
    parts = max(2, torch.get_num_threads())
    while parts > 1 and out % parts:
        parts -= 1
    if (x.numel() != inp or parts < 2 or weight.dtype != torch.float32 or x.dtype != torch.float32
            or weight.device.type != "cpu" or not weight.is_contiguous()):
        return None
    # x as an (inp, 1) column with strides (1, inp): the layout that selects bmm's fast kernel
    y = torch.bmm(weight.view(parts, out // parts, inp), x.reshape(1, inp).T.expand(parts, inp, 1))
    y = y.view(*x.shape[:-1], out)
    return y if bias is None else y + bias


@functools.cache
def row_matvec_class():
    """A TorchFunctionMode (defined on first use: it needs torch) routing F.linear to ``row_linear``.

    A mode rather than patched modules: the model stays untouched (hooks, steering and training
    see the usual nn.Linear), and the mode is thread-local and entered only around a decode forward.
    """
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    class RowMatvec(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is F.linear:
                y = row_linear(*args, **kwargs)
                if y is not None:
                    return y
            return func(*args, **kwargs)

    return RowMatvec


def row_matvec_pays(model: Any) -> bool:
    """Time F.linear against ``row_linear`` on the output embedding (the largest matrix) and pick."""
    import time

    import torch
    import torch.nn.functional as F

    weight = getattr(model.get_output_embeddings(), "weight", None)
    if weight is None:
        return False
    with torch.inference_mode():
        x = torch.randn(1, 1, weight.shape[-1], dtype=weight.dtype, device=weight.device)
        if row_linear(x, weight) is None:
            return False

        def best(f) -> float:
            f()
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                f()
                times.append(time.perf_counter() - t0)
            return min(times)

        return best(lambda: row_linear(x, weight)) < 0.8 * best(lambda: F.linear(x, weight))


@functools.cache
def preallocated_layer_class():
    """A transformers DynamicLayer that writes in place into a buffer sized for the whole call."""
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        def __init__(self, capacity: int):
            super().__init__()
            self.capacity = capacity

        def lazy_initialization(self, key_states, value_states):
            super().lazy_initialization(key_states, value_states)
            b, h, _, d = key_states.shape
            self.kbuf = key_states.new_empty(b, h, self.capacity, d)
            self.vbuf = value_states.new_empty(b, h, self.capacity, value_states.shape[-1])
            self.length = 0

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            self.kbuf[:, :, self.length:end] = key_states
            self.vbuf[:, :, self.length:end] = value_states
            self.length = end
            self.keys, self.values = self.kbuf[:, :, :end], self.vbuf[:, :, :end]   # views, no copy
            return self.keys, self.values

    return PreallocatedLayer
