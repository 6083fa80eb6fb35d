"""AUTOMATIC1111-style "parameters" text (infotext), which image browsers and model sites read.

The text is the positive prompt (any number of lines), then optionally a line starting
``Negative prompt: `` (continuing over the following lines), then one last line of ``Key: value``
pairs joined by ", "::

    a watercolor painting of hills
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x512

A value holding a comma, colon, quote, newline or edge whitespace is written JSON-quoted, which
A1111's reader (``modules/infotext_utils.py``) unquotes. Parameter dicts use the text's own
vocabulary: ``"Prompt"``, ``"Negative prompt"`` and the A1111 labels (``"Steps"``, ``"CFG scale"``...).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any

PROMPT = "Prompt"
NEGATIVE_PROMPT = "Negative prompt"
_NEGATIVE_PREFIX = NEGATIVE_PROMPT + ":"

# ComfyUI sampler_name -> the label A1111 shows (modules/sd_samplers_kdiffusion.py and friends).
# The *_gpu variants differ from their base only in where the Brownian noise is drawn.
SAMPLER_NAMES: dict[str, str] = {
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "heun": "Heun",
    "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS",
    "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive",
    "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde_gpu": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
    "dpmpp_2m_sde_heun": "DPM++ 2M SDE Heun",
    "dpmpp_2m_sde_heun_gpu": "DPM++ 2M SDE Heun",
    "dpmpp_3m_sde": "DPM++ 3M SDE",
    "dpmpp_3m_sde_gpu": "DPM++ 3M SDE",
    "ddim": "DDIM",
    "uni_pc": "UniPC",
    "lcm": "LCM",
}

# ComfyUI scheduler -> A1111's "Schedule type" label (modules/sd_schedulers.py).
SCHEDULE_TYPES: dict[str, str] = {
    "normal": "Normal",
    "karras": "Karras",
    "exponential": "Exponential",
    "sgm_uniform": "SGM Uniform",
    "simple": "Simple",
    "ddim_uniform": "DDIM",
    "beta": "Beta",
    "kl_optimal": "KL Optimal",
}

# Keys A1111's reader accepts: a word character, then at least one word character, space, dash or slash.
_KEY = re.compile(r"\w[\w \-/]+")
# One "Key: value" pair of the last line; a quoted value is a JSON string, a bare one runs to the comma.
_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:[^"\\]|\\.)*"|[^,]*?)\s*(?:,|$)')
# A params line needs this many pairs unless it starts with Steps (A1111 demands 3 to tell it from a prompt).
_MIN_PAIRS = 3


def _value_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        # Widgets hand over binary noise such as 0.6000000000000001; 15 digits drop it and keep the rest.
        return f"{value:.15g}"
    return str(value)


def _quote(text: str) -> str:
    needs_quotes = text != text.strip() or any(mark in text for mark in ',:"\n')
    return json.dumps(text, ensure_ascii=False) if needs_quotes else text


def format_parameters(params: Mapping[str, object]) -> str:
    """The A1111 text for a dict of ``Prompt``, ``Negative prompt`` and labelled values, in its order.

    Values of None are left out, as is an empty negative prompt. Numbers are written plainly
    (7.0 as "7"); anything else through ``str``.
    """
    lines = []
    prompt = str(params.get(PROMPT) or "")
    if prompt:
        lines.append(prompt)
    negative = str(params.get(NEGATIVE_PROMPT) or "")
    if negative:
        lines.append(f"{_NEGATIVE_PREFIX} {negative}")
    pairs = []
    for key, value in params.items():
        if key in (PROMPT, NEGATIVE_PROMPT) or value is None:
            continue
        if not isinstance(key, str) or not _KEY.fullmatch(key) or key != key.strip():
            raise ValueError(
                f"params: key {key!r} cannot be written; keys are a letter or digit followed by "
                "letters, digits, spaces, '-' or '/', and do not end in a space"
            )
        pairs.append(f"{key}: {_quote(_value_text(value))}")
    if pairs:
        lines.append(", ".join(pairs))
    return "\n".join(lines)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _parse_pairs(line: str) -> dict[str, str] | None:
    """The pairs of a line made only of ``Key: value`` pairs, or None when it is not one."""
    pairs: dict[str, str] = {}
    position = 0
    while position < len(line):
        match = _PAIR.match(line, position)
        if match is None or match.end() == position:
            return None
        pairs[match.group(1)] = _unquote(match.group(2))
        position = match.end()
    if len(pairs) >= _MIN_PAIRS or next(iter(pairs), None) == "Steps":
        return pairs
    return None


def parse_parameters(text: str) -> dict[str, str]:
    """``Prompt``, ``Negative prompt`` (only when the text has one) and the labelled values, all strings.

    The last line counts as the values line when it consists of ``Key: value`` pairs only and has
    at least three of them or starts with ``Steps`` (A1111 asks for three).
    """
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    values = _parse_pairs(lines[-1])
    if values is not None:
        lines.pop()
    prompt_lines: list[str] = []
    negative_lines: list[str] | None = None
    for line in lines:
        if negative_lines is None and line.startswith(_NEGATIVE_PREFIX):
            rest = line[len(_NEGATIVE_PREFIX) :]
            negative_lines = [rest.removeprefix(" ")]
        elif negative_lines is not None:
            negative_lines.append(line)
        else:
            prompt_lines.append(line)
    result = {PROMPT: "\n".join(prompt_lines)}
    if negative_lines is not None:
        result[NEGATIVE_PROMPT] = "\n".join(negative_lines)
    result.update(values or {})
    return result


# ---- reading the parameters out of ComfyUI's API-format prompt ----

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
    settings: dict[str, Any] = {}
    if sampler_id is not None:
        sampler_inputs = _inputs(graph, sampler_id)
        settings = dict(sampler_inputs)
        latent_source = _source(sampler_inputs.get("latent_image"))
        continues_plan = _class_type(graph, sampler_id) == "Img2ImgKSampler" and latent_source is not None
        if continues_plan and _class_type(graph, latent_source) == NOISE_AT_STRENGTH_CLASS:
            plan = _inputs(graph, latent_source)
            settings.update({key: plan[key] for key in _PLAN_INPUTS if key in plan})
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
