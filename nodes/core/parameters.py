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
import re
from collections.abc import Mapping

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
