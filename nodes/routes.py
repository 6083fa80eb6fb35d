"""The server route behind the browser's plan line: what a sampler's settings will run, before anything is queued.

``GET /img2img/plan?steps=20&denoise=0.5&strength_mode=steps_x_denoise&scheduler=normal&sampler_name=euler``
(and optionally ``&end_at_step=14``) answers the plan as JSON, with ``text`` the line shown under the node.
The sigmas are those of an SD1.x/SDXL noise table (the model is not known before the graph runs); after a
run the node shows its model's own.
"""

from __future__ import annotations

import functools
import sys

import comfy.model_sampling
from aiohttp import web

from .sampling import schedule_for_strength

PLAN_ROUTE = "/img2img/plan"


@functools.cache
def _default_sampling() -> comfy.model_sampling.ModelSamplingDiscrete:
    return comfy.model_sampling.ModelSamplingDiscrete()


def _number(query, name: str, kind):
    try:
        return kind(query[name])
    except KeyError:
        raise ValueError(f"{name} is missing") from None
    except ValueError:
        raise ValueError(f"{name} must be a number, got {query[name]!r}") from None


async def plan(request: web.Request) -> web.Response:
    query = request.rel_url.query
    try:
        sampling = _default_sampling()
        schedule = schedule_for_strength(
            sampling,
            query.get("sampler_name", "euler"),
            query.get("scheduler", "normal"),
            _number(query, "steps", int),
            _number(query, "denoise", float),
            query.get("strength_mode", "steps_x_denoise"),
        )
        if "end_at_step" in query:
            schedule = schedule.split_at(_number(query, "end_at_step", int), sampling)[0]
    except ValueError as error:
        return web.json_response({"error": str(error)}, status=400)
    return web.json_response({**schedule.report(), "text": schedule.summary()})


def register_routes() -> None:
    """Adds the route to the running ComfyUI server. ComfyUI has imported its ``server`` module by the time
    it loads custom nodes; imported anywhere else (tests, scripts) there is no server to add it to."""
    server = sys.modules.get("server")
    prompt_server = getattr(getattr(server, "PromptServer", None), "instance", None)
    if prompt_server is not None:
        prompt_server.routes.get(PLAN_ROUTE)(plan)
