"""The server route behind the browser's plan line: what a sampler's settings will run, before anything is queued.

``GET /img2img/plan?steps=20&denoise=0.5&strength_mode=steps_x_denoise&scheduler=normal&sampler_name=euler``
(and optionally ``&end_at_step=14``) answers the plan as JSON, with ``text`` the line shown under the node.
The sigmas are those of an SD1.x/SDXL noise table (the model is not known before the graph runs); after a
run the node shows its model's own.

The route runs on the server's event loop, which every other request shares: its numbers are bounded as the
nodes' inputs are (a ladder of at most 10000 steps, about 0.3 s to compute), the work runs in a worker thread,
one plan at a time, and answers are cached.
"""

from __future__ import annotations

import asyncio
import functools
import sys

import comfy.model_sampling
from aiohttp import web

from .inputs import END_AT_STEP_INPUT, STEPS_INPUT
from .plans import ScheduleSettings, schedule_for_strength

PLAN_ROUTE = "/img2img/plan"
MAX_STEPS = STEPS_INPUT[1]["max"]
MAX_END_AT_STEP = END_AT_STEP_INPUT[1]["max"]
_one_plan_at_a_time = asyncio.Lock()


@functools.cache
def _default_sampling() -> comfy.model_sampling.ModelSamplingDiscrete:
    return comfy.model_sampling.ModelSamplingDiscrete()


def _number(query, name: str, kind, maximum: float | None = None):
    try:
        value = kind(query[name])
    except KeyError:
        raise ValueError(f"{name} is missing") from None
    except ValueError:
        raise ValueError(f"{name} must be a number, got {query[name][:40]!r}") from None
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def _text(query, name: str, default: str) -> str:
    return query.get(name, default)[:100]  # names only: an error message quotes it


@functools.lru_cache(maxsize=256)
def plan_answer(sampler_name: str, scheduler: str, steps: int, denoise: float, mode: str, end_at_step: int) -> dict:
    """The plan's JSON answer; a ValueError names the input that is wrong."""
    sampling = _default_sampling()
    schedule = schedule_for_strength(ScheduleSettings(sampling, sampler_name, scheduler, steps, denoise, mode))
    schedule = schedule.split_at(end_at_step, sampling)[0]
    return {**schedule.report(), "text": schedule.summary()}


async def plan(request: web.Request) -> web.Response:
    query = request.rel_url.query
    try:
        arguments = (
            _text(query, "sampler_name", "euler"),
            _text(query, "scheduler", "normal"),
            _number(query, "steps", int, MAX_STEPS),
            _number(query, "denoise", float),
            _text(query, "strength_mode", "steps_x_denoise"),
            _number(query, "end_at_step", int, MAX_END_AT_STEP) if "end_at_step" in query else MAX_END_AT_STEP,
        )
        async with _one_plan_at_a_time:
            answer = await asyncio.get_running_loop().run_in_executor(None, plan_answer, *arguments)
    except ValueError as error:
        return web.json_response({"error": str(error)}, status=400)
    return web.json_response(answer)


def register_routes() -> None:
    """Adds the route to the running ComfyUI server. ComfyUI has imported its ``server`` module by the time
    it loads custom nodes; imported anywhere else (tests, scripts) there is no server to add it to."""
    server = sys.modules.get("server")
    prompt_server = getattr(getattr(server, "PromptServer", None), "instance", None)
    if prompt_server is not None:
        prompt_server.routes.get(PLAN_ROUTE)(plan)
