"""The A1111 parameters of a saved image, read by walking ComfyUI's executed API-format prompt.

From the save node the walk goes back through decoders and image nodes to the sampler, from the
sampler's positive and negative inputs through conditioning nodes to the text encoders, and from its
model input to the checkpoint loader. ``parameters.py`` turns the result into A1111's text.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from .parameters import NEGATIVE_PROMPT, PROMPT, SAMPLER_NAMES, SCHEDULE_TYPES

SAMPLER_CLASSES = ("Img2ImgKSampler", "KSampler", "KSamplerAdvanced")
NOISE_AT_STRENGTH_CLASS = "Img2ImgNoiseAtStrength"
# Input names that carry IMAGE or LATENT in ComfyUI's nodes (images, samples, latent_image, pixels...).
_PICTURE_INPUT_PARTS = ("image", "samples", "latent", "pixels")
_TEXT_INPUTS = ("text", "text_g", "t5xxl")
_MODEL_FILE_INPUTS = ("ckpt_name", "unet_name")
# What Img2ImgNoiseAtStrength fixes for the Img2ImgKSampler that continues its latent.
_PLAN_INPUTS = ("steps", "denoise", "seed", "sampler_name", "scheduler")
# Conditioning nodes whose output no longer says what their input text was.
_TEXT_DISCARDING_CLASSES = ("ConditioningZeroOut",)

_Graph = dict[str, dict[str, Any]]


def _is_link(value: object) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _class_type(graph: _Graph, node_id: str) -> str:
    class_type = graph.get(node_id, {}).get("class_type")
    return class_type if isinstance(class_type, str) else ""


def _inputs(graph: _Graph, node_id: str) -> dict[str, Any]:
    inputs = graph.get(node_id, {}).get("inputs")
    return inputs if isinstance(inputs, dict) else {}


def _source(value: object) -> str | None:
    return str(value[0]) if _is_link(value) else None


def _literal(graph: _Graph, value: object, name: str) -> str | int | float | None:
    """A literal input, or the one behind a link to a node holding only literals (a primitive).

    The primitive's input must be named like the one asked for (a seed node's ``seed``) or
    ``value`` (core PrimitiveInt/String/Float); other names may mean something else, such as a path.
    """
    source = _source(value)
    if source is not None:
        held = _inputs(graph, source)
        if any(_is_link(item) for item in held.values()):
            return None
        value = held.get(name, held.get("value"))
    return value if isinstance(value, (str, int, float)) else None


def _find_sampler(graph: _Graph, save_node_id: str) -> str | None:
    """The sampler nearest upstream of the save node along IMAGE/LATENT inputs (depth first)."""
    seen: set[str] = set()
    stack = [save_node_id]
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        if node_id != save_node_id and _class_type(graph, node_id) in SAMPLER_CLASSES:
            return node_id
        upstream = [
            _source(value)
            for name, value in _inputs(graph, node_id).items()
            if any(part in name for part in _PICTURE_INPUT_PARTS)
        ]
        stack.extend(source for source in reversed(upstream) if source is not None)
    return None


def _prompt_text(graph: _Graph, sampler_id: str, side: str) -> str | None:
    """The text of the encoder behind the sampler's ``positive`` or ``negative`` input."""
    node_id = _source(_inputs(graph, sampler_id).get(side))
    seen: set[str] = set()
    while node_id is not None and node_id not in seen:
        seen.add(node_id)
        class_type, inputs = _class_type(graph, node_id), _inputs(graph, node_id)
        if "TextEncode" in class_type:
            name = next((name for name in _TEXT_INPUTS if name in inputs), None)
            text = _literal(graph, inputs[name], name) if name else None
            return text if isinstance(text, str) else None
        if class_type in _TEXT_DISCARDING_CLASSES:
            return None
        # Conditioning nodes pass their input on; ControlNet-style ones have positive/negative pairs.
        candidates = [inputs.get(side)] + [value for key, value in inputs.items() if "conditioning" in key]
        node_id = next((_source(value) for value in candidates if _is_link(value)), None)
    return None


def _model_name(graph: _Graph, sampler_id: str) -> str | None:
    """The checkpoint's name as A1111 writes it: folders joined by '_', no extension."""
    node_id = _source(_inputs(graph, sampler_id).get("model"))
    seen: set[str] = set()
    while node_id is not None and node_id not in seen:
        seen.add(node_id)
        inputs = _inputs(graph, node_id)
        name = next((name for name in _MODEL_FILE_INPUTS if name in inputs), None)
        if name is not None:
            file = _literal(graph, inputs[name], name)
            if not isinstance(file, str):
                return None
            return posixpath.splitext(file.replace("/", "_").replace("\\", "_"))[0]
        node_id = _source(inputs.get("model"))
    return None


def _size_text(size: tuple[int, int] | None) -> str | None:
    if size is None:
        return None
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in size)
    ):
        raise ValueError(f"size must be (width, height) in whole pixels, got {size!r}")
    return f"{size[0]}x{size[1]}"


def _sampler_settings(graph: _Graph, sampler_id: str | None) -> dict[str, Any]:
    """The sampler's inputs, with those of the Img2ImgNoiseAtStrength whose plan an Img2ImgKSampler continues."""
    if sampler_id is None:
        return {}
    settings = dict(_inputs(graph, sampler_id))
    latent_source = _source(settings.get("latent_image"))
    continues_plan = _class_type(graph, sampler_id) == "Img2ImgKSampler" and latent_source is not None
    if continues_plan and _class_type(graph, latent_source) == NOISE_AT_STRENGTH_CLASS:
        plan = _inputs(graph, latent_source)
        settings.update({key: plan[key] for key in _PLAN_INPUTS if key in plan})
    return settings


def parameters_from_prompt(
    prompt: Mapping[str, Any] | None, save_node_id: str | int, size: tuple[int, int] | None = None
) -> dict[str, str | int | float]:
    """The A1111 parameters of the image a save node writes, read from ComfyUI's API-format prompt.

    Walks from the save node's image input back (through decoders and image nodes) to the nearest
    Img2ImgKSampler / KSampler / KSamplerAdvanced, from its positive/negative inputs (through
    conditioning nodes) to the text encoders, and from its model input to the checkpoint loader.
    When an Img2ImgKSampler's latent comes straight from Img2ImgNoiseAtStrength, that node's steps,
    denoise, seed, sampler and scheduler are reported, since the sampler continues its plan.
    ``size`` is the saved image's (width, height). Sampler and scheduler come as A1111 labels;
    whatever the graph does not say, or says through a link to a computing node, is left out.
    """
    graph: _Graph = {}
    if isinstance(prompt, Mapping):
        graph = {str(node_id): node for node_id, node in prompt.items() if isinstance(node, dict)}
    result: dict[str, str | int | float] = {}
    sampler_id = _find_sampler(graph, str(save_node_id))
    settings = _sampler_settings(graph, sampler_id)
    if sampler_id is not None:
        for side, label in (("positive", PROMPT), ("negative", NEGATIVE_PROMPT)):
            text = _prompt_text(graph, sampler_id, side)
            if text is not None:
                result[label] = text

    def setting(*names: str) -> str | int | float | None:
        name = next((name for name in names if name in settings), None)
        return None if name is None else _literal(graph, settings[name], name)

    sampler_name, scheduler = setting("sampler_name"), setting("scheduler")
    labelled = {
        "Steps": setting("steps"),
        "Sampler": SAMPLER_NAMES.get(sampler_name, sampler_name) if isinstance(sampler_name, str) else None,
        "Schedule type": SCHEDULE_TYPES.get(scheduler, scheduler) if isinstance(scheduler, str) else None,
        "CFG scale": setting("cfg"),
        "Seed": setting("seed", "noise_seed"),
        "Size": _size_text(size),
        "Model": _model_name(graph, sampler_id) if sampler_id is not None else None,
        "Denoising strength": setting("denoise"),
    }
    result.update({label: value for label, value in labelled.items() if value is not None})
    return result
