"""Read and replace the keys and values that the model's KV cache would store.

The model loads with the attention implementation :data:`ATTENTION_NAME`, registered in
transformers' ``AttentionInterface`` (checked against transformers 5.25). Llama attention calls it
with the post-RoPE query ``(batch, heads, T, head_dim)`` and the post-RoPE key and value
``(batch, kv_heads, T, head_dim)``, which is exactly what a KV cache holds. The function hands
them to the active hook, if any, and then runs transformers' ordinary SDPA attention on what the
hook returns, so grouped-query attention (9 query heads sharing 3 KV heads) is handled by the
library as usual.

Only one hook is active at a time in a process, and hooks are not thread-safe.
"""

import contextlib
from dataclasses import dataclass

import torch

ATTENTION_NAME = "axelram_kv_hook"

_active_hook = None


def attention_forward(module, query, key, value, attention_mask, **kwargs):
    """Pass post-RoPE query, key and value through the active hook, then run SDPA attention."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if _active_hook is not None:
        key, value = _active_hook(module.layer_idx, query, key, value)
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register_attention():
    """Register :func:`attention_forward` and the SDPA mask under :data:`ATTENTION_NAME` in transformers."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, attention_forward)
    # Without a mask function of its own, transformers would build no causal mask for this name.
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)


@contextlib.contextmanager
def kv_hook(hook):
    """Make ``hook(layer, query, key, value) -> (key, value)`` see every attention call inside the block.

    The returned key and value replace the model's for that call and must keep their shapes.
    """
    global _active_hook
    if not callable(hook):
        raise TypeError(f"hook must be callable, not {hook!r}")
    if _active_hook is not None:
        raise RuntimeError("a KV hook is already active; hooks do not nest")
    _active_hook = hook
    try:
        yield
    finally:
        _active_hook = None


@dataclass
class CapturedLayer:
    """Post-RoPE tensors of one layer: keys and values ``(batch, kv_heads, T, d)``, queries
    ``(batch, heads, T, d)``. A tensor that was not requested is None."""

    keys: torch.Tensor = None
    queries: torch.Tensor = None
    values: torch.Tensor = None


CAPTURE_KINDS = ("keys", "queries", "values")


def capture_kv(loaded, input_ids, kinds=CAPTURE_KINDS):
    """Run the model on ``input_ids`` ``(batch, T)`` and return one :class:`CapturedLayer` per layer.

    ``kinds`` selects which of keys, queries and values to keep (all by default); keeping only the
    keys saves memory when capturing many tokens.
    """
    kinds = tuple(kinds)
    unknown = [kind for kind in kinds if kind not in CAPTURE_KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {CAPTURE_KINDS}, not {kinds!r}")
    input_ids = _check_input_ids(input_ids)
    layers = [CapturedLayer() for _ in range(loaded.layers)]

    def record(layer, query, key, value):
        tensors = {"keys": key, "queries": query, "values": value}
        for kind in kinds:
            setattr(layers[layer], kind, tensors[kind].detach().clone())
        return key, value

    with torch.inference_mode(), kv_hook(record):
        loaded.model(input_ids, use_cache=False, logits_to_keep=1)
    return layers


def _check_input_ids(input_ids):
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype != torch.long:
        raise TypeError(f"input_ids must be a torch.long tensor, not {type(input_ids).__name__}")
    if input_ids.dim() == 1:
        input_ids = input_ids.unsqueeze(0)
    if input_ids.dim() != 2 or input_ids.shape[1] < 1:
        raise ValueError(f"input_ids must have shape (batch, T) with T >= 1, not {tuple(input_ids.shape)}")
    return input_ids


class KVQuantizer:
    """Hook that replaces every key and value vector by its AXELRAM quantize-dequantize image.

    ``signs`` has one entry per layer, each a length-``d`` sign vector (shared by the layer's KV
    heads) or a tensor ``(kv_heads, 1, d)`` of per-head vectors. Keys and values of a layer use the
    same signs, as one sign ROM per layer would. ``quantize_dequantize(x, codebook, signs)`` is the
    model that does the work: :func:`golden.ideal.quantize_dequantize` or the bit-exact one.
    """

    def __init__(self, codebook, signs, quantize_dequantize):
        if not callable(quantize_dequantize):
            raise TypeError(f"quantize_dequantize must be callable, not {quantize_dequantize!r}")
        self.codebook = codebook
        self.signs = [torch.as_tensor(s, dtype=torch.float64) for s in signs]
        self.quantize_dequantize = quantize_dequantize

    def __call__(self, layer, query, key, value):
        if layer >= len(self.signs):
            raise ValueError(f"no sign vector for layer {layer}; {len(self.signs)} layers were given")
        signs = self.signs[layer]
        return (self.quantize_dequantize(key, self.codebook, signs),
                self.quantize_dequantize(value, self.codebook, signs))
