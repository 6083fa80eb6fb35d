"""The ``accelerate`` paths: Img2ImgKSampler's (the same sigmas, noise and loop over a cheaper denoiser) and
Img2ImgVAEEncode's and Img2ImgVAEDecode's (the same VAE in bfloat16).

ComfyUI runs a UNet in float32 on a CPU and uses its sub-quadratic attention there. Where the
device has native bfloat16 matrix units (AVX512-BF16 or AMX on a CPU, any recent GPU), the pack
runs the UNet's weights in bfloat16 for the length of one sampling run and uses PyTorch's fused
``scaled_dot_product_attention``. The loop, the sigmas and the latents stay float32. On a CPU the
convolutions and linear layers run on weights in oneDNN's own blocked layout, packed once at their first
call (oneDNN reorders a plain bfloat16 weight on every call: convolutions took two thirds of a step), and
the bfloat16 copy of one model is kept for the next run while ComfyUI's patches on it are unchanged. Packing
runs on private ``torch.ops.mkldnn`` ops that any torch release may rename or remove: where they are missing,
the layers run their own forward on plain bfloat16 weights, and one log line says so.

The weights are converted after ComfyUI has loaded and patched the model (LoRA and other weight
patches are already in them) and the float32 tensors are put back when the run ends, also when it
fails or is interrupted; model options, wrappers and memory management are ComfyUI's as before.
Where the path cannot apply (device, dtype, a partially loaded model, a ControlNet) the run takes
the plain path and says so in one log line.

The VAE is accelerated alike: its weights in bfloat16, its attention blocks on
``scaled_dot_product_attention``, for one encode or decode; tiling stays automatic. Its copy is converted
for each call and not kept: at the decode it would sit beside the UNet's, at the graph's peak of memory,
and it costs little to make (about 65 ms of SD1.5's encode and decode at 256², against 1.5 s).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import comfy.ldm.modules.attention
import comfy.ldm.modules.diffusionmodules.model as vae_blocks
import comfy.model_management
import comfy.ops
import comfy.samplers
import torch

ATTENTION_OVERRIDE = "optimized_attention_override"


def accelerated_dtype(model) -> tuple[torch.dtype | None, str]:
    """The dtype the model's weights can run in on its device, or None and the reason why not."""
    base = model.model
    if base.manual_cast_dtype is not None:
        return None, f"its weights are stored in {base.get_dtype()} and cast per layer already"
    if base.get_dtype() != torch.float32:
        return None, f"it runs in {base.get_dtype()} already"
    return device_dtype(model.load_device)


def device_dtype(device: torch.device) -> tuple[torch.dtype | None, str]:
    """The low-precision dtype a device runs fast, or None and the reason why not."""
    if device.type == "cpu":
        if cpu_has_native_bfloat16():
            return torch.bfloat16, ""
        return None, "this CPU has no native bfloat16 instructions (AVX512-BF16 or AMX)"
    if device.type == "cuda":
        return (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16), ""
    return None, f"there is no accelerated path for {device.type} devices"


def cpu_has_native_bfloat16() -> bool:
    # oneDNN also runs bfloat16 on plain AVX512 by emulation, which is slower than float32: ask for the units.
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def fused_attention(func, *args, **kwargs):
    return comfy.ldm.modules.attention.attention_pytorch(*args, **kwargs)


def accelerate(model, sampler: comfy.samplers.Sampler) -> tuple[object, comfy.samplers.Sampler]:
    """The model and sampler for an accelerated run, or the given ones and a log line where it can't apply."""
    dtype, reason = accelerated_dtype(model)
    if dtype is None:
        logging.info("Img2ImgKSampler accelerate: plain path, because %s", reason)
        return model, sampler
    model = model.clone()
    options = model.model_options.setdefault("transformer_options", {})
    options.setdefault(ATTENTION_OVERRIDE, fused_attention)  # another node's attention choice wins
    return model, LowPrecisionSampler(sampler, dtype)


class LowPrecisionSampler(comfy.samplers.Sampler):
    """Runs another sampler with the loaded UNet's weights in ``dtype``."""

    def __init__(self, sampler: comfy.samplers.Sampler, dtype: torch.dtype) -> None:
        self.sampler = sampler
        self.dtype = dtype

    def max_denoise(self, model_wrap, sigmas):
        return self.sampler.max_denoise(model_wrap, sigmas)

    def sample(self, model_wrap, sigmas, *args, **kwargs):
        reason = self.unsupported(model_wrap)
        if reason:
            logging.info("Img2ImgKSampler accelerate: plain weights, because %s", reason)
            return self.sampler.sample(model_wrap, sigmas, *args, **kwargs)
        base = model_wrap.inner_model
        # ComfyUI sets this when it patches the loaded weights and clears it when it restores them.
        with weights_in(base.diffusion_model, self.dtype, getattr(base, "current_weight_patches_uuid", None)):
            return self.sampler.sample(model_wrap, sigmas, *args, **kwargs)

    def unsupported(self, model_wrap) -> str:
        base = model_wrap.inner_model
        if getattr(base, "model_lowvram", False):
            return "the model is only partly loaded on the device"
        conds = [cond for conds in model_wrap.conds.values() for cond in conds]
        if any("control" in cond or "gligen" in cond for cond in conds):
            return "a ControlNet or GLIGEN adds float32 features to the UNet"
        if any(cond.get("hooks") is not None for cond in conds):
            return "hooks change the weights while it samples"
        device = model_wrap.model_patcher.load_device
        copy_bytes = sum(p.numel() for p in base.diffusion_model.parameters()) * self.dtype.itemsize
        # A kept copy is reused or released before converting: its memory is as good as free here.
        if comfy.model_management.get_free_memory(device) + kept_bytes() < 1.2 * copy_bytes:
            return f"a {self.dtype} copy of the weights ({copy_bytes / 2**30:.1f} GiB) would not fit in free memory"
        return ""


@contextmanager
def weights_in(
    module: torch.nn.Module, dtype: torch.dtype, patches_key: object = None, keep: bool = True
) -> Iterator[None]:
    """``module``'s float32 parameters and buffers in ``dtype`` until the block ends, then the originals again.

    The tensors' ``.data`` is swapped, not the Parameter objects, which ComfyUI's model patcher holds on to.
    Where oneDNN runs ``dtype`` (a CPU) and this torch has its packing ops, convolutions and linear layers run on
    their weights in oneDNN's own blocked layout instead, packed at their first call. ``patches_key`` names the
    state of the weights (ComfyUI's patches on them); on a CPU and with ``keep`` the converted tensors are kept
    for the next run with that state.
    """
    onednn, layers = packable_layers(module, dtype)
    packed_weights = {id(layer.weight) for layer in layers}
    tensors = [
        t for t in (*module.parameters(), *module.buffers()) if t.dtype == torch.float32 and id(t) not in packed_weights
    ]
    originals = [t.data for t in tensors]
    declared = getattr(module, "dtype", None)  # ComfyUI's UNet casts its inputs to this; a VAE has none
    try:
        kept = converted_weights(module, originals, layers, dtype, patches_key, keep)
        for tensor, copy in zip(tensors, kept.tensors, strict=True):
            tensor.data = copy
        for index, layer in enumerate(layers):
            layer.forward = PackedForward(layer, kept.packed, index, dtype, onednn)
        if declared is not None:
            module.dtype = dtype
        yield
    finally:
        for tensor, original in zip(tensors, originals, strict=True):
            tensor.data = original
        for layer in layers:
            vars(layer).pop("forward", None)
        if declared is not None:
            module.dtype = declared
        # A CPU, packed or not: what the block freed (a copy not kept, packing's temporaries) goes back to the system.
        if layers or (originals and originals[0].device.type == "cpu"):
            kept = None  # this frame's reference would hold a copy that is not kept until the generator is gone
            return_freed_memory()


@functools.cache
def glibc_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def return_freed_memory() -> None:
    """Give the free pages of the C heap back to the system. glibc serves blocks below its mmap threshold
    (which grows to 32 MiB as large blocks are freed, as loading a checkpoint does) from its heap and keeps
    them when freed, so a freed copy of weights would stay in the process's resident memory and the next
    decode's activations would come on top of it. Trimming takes milliseconds; where the C library is not
    glibc there is nothing to do."""
    if (malloc_trim := glibc_malloc_trim()) is not None:
        malloc_trim(0)


class OneDNNOps(NamedTuple):
    """The private oneDNN ops that packing runs on, as ``onednn_packing_ops`` found them in this torch."""

    reorder_convolution_weight: Callable[..., torch.Tensor]
    convolution_pointwise: Callable[..., torch.Tensor]
    reorder_linear_weight: Callable[..., torch.Tensor]
    linear_pointwise: Callable[..., torch.Tensor]


def onednn_packing_ops() -> tuple[OneDNNOps | None, str]:
    """torch's oneDNN ops for packed weights, or None and the reason why this torch has none. They are
    private (``torch.ops.mkldnn._reorder_convolution_weight`` and its kin): the only place they are looked
    up, once a run, so that a torch without them runs unpacked rather than failing in the middle of a run."""
    if not torch.backends.mkldnn.is_available():
        return None, "this torch is built without oneDNN"
    names = [f"_{field}" for field in OneDNNOps._fields]
    missing = [name for name in names if not hasattr(torch.ops.mkldnn, name)]
    if missing:
        return None, f"torch {torch.__version__} has no torch.ops.mkldnn.{', '.join(missing)}"
    return OneDNNOps(*(getattr(torch.ops.mkldnn, name) for name in names)), ""


def packable_layers(module: torch.nn.Module, dtype: torch.dtype) -> tuple[OneDNNOps | None, list[torch.nn.Module]]:
    """oneDNN's packing ops and the convolutions and linear layers of ``module`` that can run on packed ``dtype``
    weights: on a CPU, float32 layers that run their plain forward (no casts or weight patches on the fly, zero
    padding). Where this torch has no packing ops, none and a log line: the layers run on plain ``dtype`` weights."""
    parameter = next(module.parameters(), None)
    if parameter is None or parameter.device.type != "cpu" or dtype != torch.bfloat16:
        return None, []
    onednn, reason = onednn_packing_ops()
    if onednn is None:
        logging.info("comfyui-img2img accelerate: layers run on unpacked %s weights, because %s", dtype, reason)
        return None, []

    def packable(layer: torch.nn.Module) -> bool:
        if type(layer).forward not in PLAIN_FORWARDS or "forward" in vars(layer):
            return False  # another forward than the one packing replaces, or one patched by someone else
        if getattr(layer, "comfy_cast_weights", False) or getattr(layer, "weight_function", None):
            return False
        if getattr(layer, "bias_function", None) or layer.weight.dtype != torch.float32:
            return False
        return isinstance(layer, torch.nn.Linear) or (
            layer.padding_mode == "zeros" and not isinstance(layer.padding, str)
        )

    return onednn, [layer for layer in module.modules() if isinstance(layer, PACKED_TYPES) and packable(layer)]


PACKED_TYPES = (torch.nn.Conv2d, torch.nn.Linear)
# The forwards that compute exactly F.conv2d / F.linear of the layer's own weight: torch's and ComfyUI's ops'.
PLAIN_FORWARDS = {
    torch.nn.Conv2d.forward,
    torch.nn.Linear.forward,
    comfy.ops.disable_weight_init.Conv2d.forward,
    comfy.ops.disable_weight_init.Linear.forward,
}


class PackedForward:
    """A convolution's or linear layer's forward on its weight in oneDNN's blocked layout, packed at the first
    call for that call's input shape (oneDNN picks the layout by it; any other shape still runs). The output
    of a packed convolution comes back in the layout oneDNN computed it in (channels-last), which the next
    convolution takes without a reorder."""

    def __init__(self, layer: torch.nn.Module, packed: list, index: int, dtype: torch.dtype, onednn: OneDNNOps) -> None:
        self.layer, self.packed, self.index, self.dtype, self.onednn = layer, packed, index, dtype, onednn
        if not isinstance(layer, torch.nn.Linear):  # once, not on every call of the sampling loop
            self.geometry = (list(layer.padding), list(layer.stride), list(layer.dilation), layer.groups)

    def __call__(self, input: torch.Tensor) -> torch.Tensor:
        comfy.model_management.throw_exception_if_processing_interrupted()  # as ComfyUI's ops do every layer
        layer, weight, onednn = self.layer, self.packed[self.index], self.onednn
        if isinstance(layer, torch.nn.Linear):
            if weight is None:
                rows = input.numel() // input.shape[-1]
                weight = onednn.reorder_linear_weight(layer.weight.to(self.dtype), rows)
                self.packed[self.index] = weight
            return onednn.linear_pointwise(input, weight, layer.bias, "none", [], "")
        geometry = self.geometry
        if weight is None:
            weight = onednn.reorder_convolution_weight(layer.weight.to(self.dtype), *geometry, list(input.shape))
            self.packed[self.index] = weight
        return onednn.convolution_pointwise(input, weight, layer.bias, *geometry, "none", [], "")


class ConvertedWeights:
    """A module's weights in low precision: plain tensors, and oneDNN-packed ones filled in as layers run."""

    def __init__(self, tensors: list[torch.Tensor], layers: int) -> None:
        self.tensors = tensors
        self.packed: list[torch.Tensor | None] = [None] * layers

    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.tensors, *self.packed) if t is not None)


# The last converted weights kept on a CPU: {"module": weak reference, "key": ..., "weights": ConvertedWeights}.
_kept: dict[str, object] = {}


def kept_bytes() -> int:
    """The bytes of the kept copy."""
    return _kept["weights"].bytes() if _kept else 0


def release_kept_copy() -> None:
    """Drop the kept copy."""
    _kept.clear()


def converted_weights(
    module: torch.nn.Module,
    originals: list[torch.Tensor],
    layers: list[torch.nn.Module],
    dtype: torch.dtype,
    patches_key: object,
    keep: bool,
) -> ConvertedWeights:
    """``originals`` in ``dtype`` and room for ``layers``' packed weights, reused from the last run on a CPU
    while the weights are the same ones (``keep``).

    On a CPU, writing a fresh copy costs more than converting: the memory is new to the process each run
    (about 2 s for SD1.5's UNet on 2 cores, half of a 4-step run). One model's copy is kept, and released
    when another model or patch state is kept or the module is freed. A GPU converts in milliseconds and
    keeps nothing that ComfyUI's memory management does not know about.
    """
    if not keep or (originals and originals[0].device.type != "cpu"):
        return ConvertedWeights([t.to(dtype) for t in originals], len(layers))
    weights = [layer.weight.data for layer in layers]
    # The packed weights are found by their layer's place in ``layers``: the layers belong to the key too.
    key = (patches_key, dtype, tuple(t.data_ptr() for t in (*originals, *weights)), tuple(map(id, layers)))
    if _kept and _kept["module"]() is module and _kept["key"] == key:
        return _kept["weights"]
    release_kept_copy()  # before converting: never hold two copies
    converted = ConvertedWeights([t.to(dtype) for t in originals], len(layers))

    def release_if_still_kept(reference: weakref.ref) -> None:
        if _kept.get("module") is reference:
            release_kept_copy()

    _kept.update(module=weakref.ref(module, release_if_still_kept), key=key, weights=converted)
    return converted


def vae_accelerated_dtype(vae) -> tuple[torch.dtype | None, str]:
    """The dtype a VAE can run in on its device, or None and the reason why not. Never float16: SDXL's VAE
    overflows in it."""
    if vae.vae_dtype != torch.float32:
        return None, f"it runs in {vae.vae_dtype} already"
    dtype, reason = device_dtype(vae.device)
    if dtype is not None and dtype != torch.bfloat16:
        return None, "this device has no bfloat16 (float16 would overflow some VAEs)"
    return dtype, reason


@contextmanager
def accelerated_vae(vae, node: str) -> Iterator[None]:
    """The VAE's encodes and decodes in bfloat16 with fused attention until the block ends, where it can
    apply; else the plain VAE and a log line saying why."""
    dtype, reason = vae_accelerated_dtype(vae)
    model = vae.first_stage_model
    copy_bytes = sum(p.numel() for p in model.parameters()) * 2
    if dtype is not None and comfy.model_management.get_free_memory(vae.device) < 1.2 * copy_bytes:
        dtype, reason = None, f"a bfloat16 copy of the VAE ({copy_bytes / 2**30:.1f} GiB) would not fit in free memory"
    if dtype is None:
        logging.info("%s accelerate: plain path, because %s", node, reason)
        yield
        return
    comfy.model_management.load_models_gpu([vae.patcher])  # where the VAE works, before its weights are swapped
    attention = [block for block in model.modules() if isinstance(block, vae_blocks.AttnBlock)]
    declared = [block.optimized_attention for block in attention]
    try:
        with weights_in(model, dtype, keep=False):
            vae.vae_dtype = dtype
            for block in attention:
                block.optimized_attention = vae_blocks.pytorch_attention
            yield
    finally:
        vae.vae_dtype = torch.float32  # checked above: it was float32
        for block, original in zip(attention, declared, strict=True):
            block.optimized_attention = original
