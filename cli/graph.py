"""The API-format graph queued per image: the pack's example graph with the run's inputs set."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from importlib import resources
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
# A checkout's example graph first (it moved from the second name to the first); an installed wheel
# carries example_workflows/api/ as the package's workflows/ folder.
CHECKOUT_TEMPLATES = ("example_workflows/api/img2img.json", "example_workflows/img2img_api.json")
# Server-side outputs go to their own subfolder so that they never mix with a user's other outputs.
SAVE_PREFIX = "img2img-cli/img2img"
# The fields added after the first manifests: left out of a manifest's parameters at their default, so that
# manifests written before each option still resume.
LATER_FIELDS = (
    "accelerate", "scale", "tile", "upscale_model", "mask", "crop_width", "crop_height", "blend", "color_correction",
)  # fmt: skip
# `run --mask`'s fields: with --mask none (and in every sweep) no picture is cropped, so they change nothing.
REGION_FIELDS = ("mask", "crop_width", "crop_height", "blend", "color_correction")
# Img2ImgCrop's inputs the command leaves at the node's defaults.
CROP_DEFAULTS = {
    "context_factor": 1.2, "context_pixels": 16, "grow": 0, "fill_holes": True, "regions": "separate",
    "method": "lanczos",
}  # fmt: skip
# The transparency probe's crop size: the node's least, since only its note (is there a region?) is read.
PROBE_CROP = 64
# Img2ImgCrop's note for a frame without a region (nodes/core/crop_stitch.py).
NO_REGION_NOTE = "no mask region"


class GraphError(Exception):
    """The example graph is missing or lacks a node the CLI sets."""


@dataclass(frozen=True)
class Parameters:
    """Everything besides the seed that decides the picture; part of the resume key."""

    prompt: str
    negative: str
    # One strength for `run`; for `sweep` the strengths of the contact sheet's columns.
    denoise: float | tuple[float, ...]
    steps: int
    cfg: float
    sampler: str
    scheduler: str
    mode: str
    checkpoint: str
    width: int
    height: int
    fit: str
    # `sweep` only: the seeds of the contact sheet's rows (empty: the image's seed alone).
    sweep_seeds: tuple[int, ...] = ()
    # The sampler's, encoder's and decoder's accelerate inputs (bfloat16 where the server's device has it).
    accelerate: bool = False
    # Upscale and refine: each input scaled by this before encoding (1: as loaded) ...
    scale: float = 1.0
    # ... the model over tiles of this many pixels, also the VAE nodes' tile size (0: untiled) ...
    tile: int = 0
    # ... and an upscale model (a file of the server's models/upscale_models) ahead of the resize.
    upscale_model: str | None = None
    # A region of each picture: where each input's mask comes from (masks.MASK_MODES; "none" for sweeps) ...
    mask: str = "auto"
    # ... Img2ImgCrop's target size and blend width ...
    crop_width: int = 512
    crop_height: int = 512
    blend: int = 16
    # ... and Img2ImgStitch's colour correction.
    color_correction: bool = False

    def as_dict(self) -> dict[str, object]:
        parameters = asdict(self)
        defaults = {field.name: field.default for field in fields(self)}
        for name in LATER_FIELDS:
            # Left out at the default so that manifests written before each option still resume; the region's
            # fields also with --mask none (every sweep), which runs the plain graph those manifests were made
            # with. "auto" without a mask runs it too; a mask it finds is part of the input's identity instead
            # (batch.Job.mask_key).
            if parameters[name] == defaults[name] or (name in REGION_FIELDS and self.mask == "none"):
                del parameters[name]
        return parameters


def checkout_root() -> Path | None:
    """The repository this package runs from, or None when it was installed without one."""
    return CHECKOUT if (CHECKOUT / "scripts" / "host.py").is_file() else None


def load_template() -> dict:
    root = checkout_root()
    if root is not None:
        for relative in CHECKOUT_TEMPLATES:
            if (root / relative).is_file():
                return json.loads((root / relative).read_text(encoding="utf-8"))
    packaged = resources.files("img2img_cli") / "workflows" / "img2img.json"
    if packaged.is_file():
        return json.loads(packaged.read_text(encoding="utf-8"))
    raise GraphError(f"no img2img API graph: looked for {', '.join(CHECKOUT_TEMPLATES)} and the packaged copy")


def _only(graph: dict, class_type: str) -> str:
    ids = [node_id for node_id, node in graph.items() if node["class_type"] == class_type]
    if len(ids) != 1:
        raise GraphError(f"the example graph has {len(ids)} {class_type} nodes, the CLI needs exactly one")
    return ids[0]


def _linked(graph: dict, node_id: str, name: str, class_type: str) -> str:
    source = graph[node_id]["inputs"][name][0]
    if graph[source]["class_type"] != class_type:
        raise GraphError(f"{graph[node_id]['class_type']}.{name} is not fed by a {class_type} node")
    return source


def _bypass_noise_nodes(graph: dict) -> None:
    # Img2ImgKSampler noises a clean latent itself with the same result, so the CLI queues the plain
    # chain and the seed and strength live in one node only.
    for node_id in [node_id for node_id, node in graph.items() if node["class_type"] == "Img2ImgNoiseAtStrength"]:
        source = graph.pop(node_id)["inputs"]["latent"]
        for node in graph.values():
            for name, value in node["inputs"].items():
                if isinstance(value, list) and value[:1] == [node_id]:
                    node["inputs"][name] = source


def template_checkpoint(template: dict) -> str:
    """The checkpoint the example graph names: the default with --server."""
    return template[_only(template, "CheckpointLoaderSimple")]["inputs"]["ckpt_name"]


def build_graph(
    template: dict,
    parameters: Parameters,
    seed: int,
    image: str,
    mask_file: str | None = None,
    alpha_mask: bool = False,
) -> tuple[dict, str]:
    """The graph for one uploaded image (its name inside the input folder) and the id of its save node. With
    ``mask_file`` (an uploaded white-on-black mask) or ``alpha_mask`` (the input's transparency) only the mask's
    regions change: crop, img2img of the crops, stitch."""
    graph = copy.deepcopy(template)
    _bypass_noise_nodes(graph)
    sampler = _only(graph, "Img2ImgKSampler")
    load = _only(graph, "Img2ImgLoadImage")
    save = _only(graph, "Img2ImgSaveImage")
    graph[_only(graph, "CheckpointLoaderSimple")]["inputs"]["ckpt_name"] = parameters.checkpoint
    graph[_linked(graph, sampler, "positive", "CLIPTextEncode")]["inputs"]["text"] = parameters.prompt
    graph[_linked(graph, sampler, "negative", "CLIPTextEncode")]["inputs"]["text"] = parameters.negative
    _set_loader(graph, load, parameters, image)
    graph[sampler]["inputs"].update(
        seed=seed,
        steps=parameters.steps,
        cfg=parameters.cfg,
        sampler_name=parameters.sampler,
        scheduler=parameters.scheduler,
        denoise=parameters.denoise,
        strength_mode=parameters.mode,
        # One image per prompt: core's noise stream, so a ComfyUI run with this seed gives this picture.
        batch_seed="comfy",
    )
    for node in (sampler, _only(graph, "Img2ImgVAEEncode"), _only(graph, "Img2ImgVAEDecode")):
        graph[node]["inputs"]["accelerate"] = parameters.accelerate
    graph[save]["inputs"]["filename_prefix"] = SAVE_PREFIX
    _upscale_and_tile(graph, parameters, load, sampler)
    if isinstance(parameters.denoise, tuple):
        _sweep_instead_of_sampler(graph, sampler, save, parameters)
    elif mask_file is not None or alpha_mask:
        _crop_and_stitch(graph, parameters, mask_file)
    return graph, save


def _set_loader(graph: dict, load: str, parameters: Parameters, image: str) -> None:
    graph[load]["inputs"].update(
        image=image,
        frames="first",
        folder="",
        index=0,
        limit=1,
        width=parameters.width,
        height=parameters.height,
        fit=parameters.fit,
    )


def _crop_inputs(parameters: Parameters, image: list, mask: list, width: int, height: int) -> dict:
    return {
        "image": image,
        "mask": mask,
        "target_width": width,
        "target_height": height,
        "blend": parameters.blend,
        **CROP_DEFAULTS,
    }


def _crop_and_stitch(graph: dict, parameters: Parameters, mask_file: str | None) -> None:
    """Img2ImgCrop ahead of the encoder (on what it would have encoded: the picture, or its upscaled copy) by
    the mask file (its red channel, white = change) or else the input's transparency, and Img2ImgStitch ahead
    of the save node. The crops' masks are the sampler's strength map and the decoder's, with the crops as the
    decoder's source, so that the crops' pixels outside the mask come back unchanged and the stitch adds
    nothing there."""
    load, encode, decode = (_only(graph, name) for name in ("Img2ImgLoadImage", "Img2ImgVAEEncode", "Img2ImgVAEDecode"))
    sampler, save = _only(graph, "Img2ImgKSampler"), _only(graph, "Img2ImgSaveImage")
    # The crops are the VAE's multiples of 8 themselves: the picture keeps its own size, and the saved one too.
    graph[load]["inputs"]["multiple"] = 1
    mask = [load, 1]  # Img2ImgLoadImage's MASK: 1 − alpha
    if mask_file is not None:
        mask = [_new_node(graph, "LoadImageMask", {"image": mask_file, "channel": "red"}), 0]
    inputs = _crop_inputs(
        parameters, graph[encode]["inputs"]["pixels"], mask, parameters.crop_width, parameters.crop_height
    )
    crop = _new_node(graph, "Img2ImgCrop", inputs)
    graph[encode]["inputs"]["pixels"] = [crop, 0]
    graph[sampler]["inputs"]["strength_map"] = [crop, 1]
    graph[decode]["inputs"].update(source=[crop, 0], strength_map=[crop, 1])
    stitch = {"stitch": [crop, 2], "crops": [decode, 0], "color_correction": parameters.color_correction}
    graph[save]["inputs"]["images"] = [_new_node(graph, "Img2ImgStitch", stitch), 0]


def probe_graph(template: dict, parameters: Parameters, image: str) -> tuple[dict, str]:
    """A graph without a model that loads the uploaded input as the run would and crops it by its own
    transparency, and the crop node's id: its note says whether there is a region (``found_region``)."""
    load = _only(template, "Img2ImgLoadImage")
    graph = {load: copy.deepcopy(template[load])}
    _set_loader(graph, load, parameters, image)
    graph[load]["inputs"]["multiple"] = 1
    crop = _new_node(graph, "Img2ImgCrop", _crop_inputs(parameters, [load, 0], [load, 1], PROBE_CROP, PROBE_CROP))
    _new_node(graph, "PreviewImage", {"images": [crop, 0]})  # an output node, so that the crop runs
    return graph, crop


def found_region(outputs: dict, crop: str) -> bool:
    """Whether the probe's crop node (its /history outputs) found a region of the mask."""
    return not any(NO_REGION_NOTE in note for note in outputs.get(crop, {}).get("text", []))


def _sweep_instead_of_sampler(graph: dict, sampler: str, save: str, parameters: Parameters) -> None:
    """Img2ImgDenoiseSweep in the sampler's place; it decodes its results itself into the saved sheet."""
    decode = _only(graph, "Img2ImgVAEDecode")
    inputs = graph[sampler]["inputs"]
    for name in ("denoise", "batch_seed"):
        del inputs[name]
    inputs.update(
        vae=graph.pop(decode)["inputs"]["vae"],
        denoise_values=", ".join(f"{strength:g}" for strength in parameters.denoise),
        seeds=", ".join(str(seed) for seed in parameters.sweep_seeds),
    )
    graph[sampler]["class_type"] = "Img2ImgDenoiseSweep"
    graph[save]["inputs"]["images"] = [sampler, 0]


def _new_node(graph: dict, class_type: str, inputs: dict) -> str:
    """Adds a node under the first free number past the graph's size and returns its id."""
    number = len(graph) + 1
    while str(number) in graph:
        number += 1
    graph[str(number)] = {"class_type": class_type, "inputs": inputs}
    return str(number)


def _upscale_and_tile(graph: dict, parameters: Parameters, load: str, sampler: str) -> None:
    """--scale, --upscale-model and --tile; at their defaults the graph stays the template's."""
    encode = _only(graph, "Img2ImgVAEEncode")
    if parameters.scale != 1 or parameters.upscale_model:
        # A scale n/d keeps the picture a multiple of the VAE's 8 px when the loader's sides are multiples of
        # 8·d: the loader fits them so (options.py allows d up to 8).
        denominator = Fraction(parameters.scale).limit_denominator(64).denominator
        graph[load]["inputs"]["multiple"] = graph[load]["inputs"].get("multiple", 8) * denominator
        graph[encode]["inputs"]["pixels"] = _upscaled(graph, parameters, [load, 0])
    if parameters.tile:
        tiled = _new_node(
            graph,
            "Img2ImgTiledModel",
            {
                "model": graph[sampler]["inputs"]["model"],
                "tile_size": parameters.tile,
                # A quarter of the tile, a multiple of 8 (the node's step): 64 px at 256, 128 at 512.
                "overlap": parameters.tile // 4 // 8 * 8,
                "tile_batch": 0,  # as many tiles per model call as free memory holds
            },
        )
        graph[sampler]["inputs"]["model"] = [tiled, 0]
        for node in (encode, _only(graph, "Img2ImgVAEDecode")):
            graph[node]["inputs"].update(tiling="auto", tile_size=parameters.tile)


def _upscaled(graph: dict, parameters: Parameters, image: list) -> list:
    """The link to ``image`` scaled by ``parameters.scale``: lanczos alone, or the upscale model's picture
    resized with lanczos to exactly the size lanczos alone gives. The model's own factor (2x, 4x, ...) is not
    known to the client, so that size is read on the server, from a nearest-neighbour copy (cheap) of the
    input at the scale."""
    if not parameters.upscale_model:
        lanczos = {"image": image, "upscale_method": "lanczos", "scale_by": parameters.scale}
        return [_new_node(graph, "ImageScaleBy", lanczos), 0]
    loader = _new_node(graph, "UpscaleModelLoader", {"model_name": parameters.upscale_model})
    upscaled = _new_node(graph, "ImageUpscaleWithModel", {"upscale_model": [loader, 0], "image": image})
    reference = image
    if parameters.scale != 1:
        nearest = {"image": image, "upscale_method": "nearest-exact", "scale_by": parameters.scale}
        reference = [_new_node(graph, "ImageScaleBy", nearest), 0]
    size = _new_node(graph, "GetImageSize", {"image": reference})
    resize = {"image": [upscaled, 0], "upscale_method": "lanczos", "width": [size, 0], "height": [size, 1]}
    return [_new_node(graph, "ImageScale", {**resize, "crop": "disabled"}), 0]
