"""The command line of ``img2img run`` and ``img2img sweep``: argparse's parser, and ``RunOptions``, the typed
record built from its answer in one place (``options_from_arguments``). Past that edge the command sees the
record alone, never argparse's Namespace."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .graph import Parameters
from .masks import MASK_MODES

SEED_MAX = 0xFFFFFFFFFFFFFFFF
# --scale: core's ImageScaleBy takes at most 8. The scaled picture must stay a multiple of the VAE's 8 px, so
# a scale n/d in lowest terms has the loader fit the input to a multiple of 8·d: d at most 8 keeps that
# multiple small (64) and makes 1/8 the smallest scale, above ImageScaleBy's least (0.01).
MAX_SCALE = 8
MAX_SCALE_DENOMINATOR = 8
# --tile: Img2ImgTiledModel's and the VAE nodes' least tile (64 px, a step of 8), and the VAE nodes' largest.
MIN_TILE, MAX_TILE, TILE_STEP = 64, 4096, 8
# --crop-size and --blend: Img2ImgCrop's target sides and blend width, as its inputs allow them.
MIN_CROP, MAX_CROP, CROP_STEP = 64, 8192, 8
MAX_BLEND = 256

DESCRIPTION = """\
img2img with the comfyui-img2img nodes on ComfyUI servers. Each input image is uploaded, run through
Img2ImgLoadImage -> Img2ImgVAEEncode -> Img2ImgKSampler -> Img2ImgVAEDecode -> Img2ImgSaveImage, and its
result fetched into DIR (never over an existing file), with one line per image in DIR/manifest.jsonl.
Running again into the same DIR skips the inputs already there with the same content and parameters.
An input with a mask (a file NAME.mask.png beside it, or its transparency) has only the mask's regions
changed: cropped, run through the same chain, and stitched back (see --mask).
"""

SWEEP_DESCRIPTION = """\
The same image at several denoise strengths (columns) and seeds (rows) in one job per image: each
input is run through Img2ImgDenoiseSweep, and its labelled contact sheet saved into DIR, with one line
per image in DIR/manifest.jsonl. Without --seeds, the row's seed is --seed (or seed + i with
--per-image-seeds).
"""

EPILOG = """\
servers: without --server, the repository's headless ComfyUI host (scripts/host.py) is built if needed
and started on a free loopback port for the run, with its random-weight test checkpoint unless
--checkpoint names one in --models-dir (a folder of checkpoints, or a ComfyUI models folder with a
checkpoints/ subfolder). This needs a checkout of the repository. With one or more --server URLs the
images are spread over those servers, one job in flight on each; a server that stops answering has its
image retried on the others. With --ray the images are Ray tasks on workers that each start and own a
ComfyUI server (--comfyui DIR on every node); a worker whose server dies is restarted and its image retried.

runs into one DIR: each input is claimed in DIR/.img2img-claims/ before it is sent, so two runs started
at once on the same inputs do each input once between them; the claims of a run that died are taken over.

exit status: the number of images that failed (at most 255; 0 when all succeeded), 130 after Ctrl-C
(the jobs in flight are stopped on their servers first), 2 for a usage error.
"""


class UsageError(Exception):
    """A command line that parses but cannot run (e.g. --workers without --ray): shown under the command's
    usage line, exit status 2, as argparse's own errors are."""


@dataclass(frozen=True)
class RunOptions:
    """What one ``run`` or ``sweep`` was asked to do, typed; argparse's flags, one field each, under the
    names below where the flag's own would not say what the value is."""

    inputs: tuple[Path, ...]  # image files and folders of them, as given
    out: Path
    # What decides the picture, with the checkpoint: see parameters().
    prompt: str
    negative: str
    denoise: float | tuple[float, ...]  # `run`: one strength; `sweep`: the contact sheet's columns
    sweep_seeds: tuple[int, ...]  # `sweep --seeds`: the contact sheet's rows; empty for `run`
    steps: int
    cfg: float
    sampler: str
    scheduler: str
    mode: str
    width: int
    height: int
    fit: str
    accelerate: bool
    scale: float  # `run --scale`: 1 for `sweep`
    tile: int  # `run --tile`: 0 (none) for `sweep`
    upscale_model: str | None  # `run --upscale-model`: None for `sweep`
    mask: str  # `run --mask`: none for `sweep`
    crop_width: int  # `run --crop-size`: Img2ImgCrop's target
    crop_height: int
    blend: int  # `run --blend`
    color_correction: bool  # `run --color-correction`: Img2ImgStitch's
    seed: int
    per_image_seeds: bool
    checkpoint: str | None  # None: the backend's default (the test host's, or the example graph's)
    # Where the images run.
    servers: tuple[str, ...]  # --server, each URL once; empty: the checkout's local host, or Ray
    models_dir: Path | None
    job_timeout: float  # --timeout, seconds per image
    ray_address: str | None  # --ray
    comfyui: Path | None
    workers: int | None
    cpu: bool

    def parameters(self, checkpoint: str) -> Parameters:
        """The picture's parameters (part of every resume key) with the checkpoint the backend settled on."""
        return Parameters(
            prompt=self.prompt,
            negative=self.negative,
            denoise=self.denoise,
            sweep_seeds=self.sweep_seeds,
            steps=self.steps,
            cfg=self.cfg,
            sampler=self.sampler,
            scheduler=self.scheduler,
            mode=self.mode,
            checkpoint=checkpoint,
            width=self.width,
            height=self.height,
            fit=self.fit,
            accelerate=self.accelerate,
            scale=self.scale,
            tile=self.tile,
            upscale_model=self.upscale_model,
            mask=self.mask,
            crop_width=self.crop_width,
            crop_height=self.crop_height,
            blend=self.blend,
            color_correction=self.color_correction,
        )


def options_from_arguments(arguments: argparse.Namespace) -> RunOptions:
    """The record of what ``build_parser().parse_args`` returned for ``run`` or ``sweep``."""
    return RunOptions(
        inputs=tuple(arguments.inputs),
        out=arguments.out,
        prompt=arguments.prompt,
        negative=arguments.negative,
        denoise=arguments.denoise,
        sweep_seeds=getattr(arguments, "seeds", ()),  # only `sweep` has --seeds
        steps=arguments.steps,
        cfg=arguments.cfg,
        sampler=arguments.sampler,
        scheduler=arguments.scheduler,
        mode=arguments.mode,
        width=arguments.width,
        height=arguments.height,
        fit=arguments.fit,
        accelerate=arguments.accelerate,
        # Only `run` has upscale-and-refine.
        scale=getattr(arguments, "scale", 1.0),
        tile=getattr(arguments, "tile", 0),
        upscale_model=getattr(arguments, "upscale_model", None),
        # Only `run` has a region of each picture: a sweep's contact sheet is of the whole picture.
        mask=getattr(arguments, "mask", "none"),
        crop_width=getattr(arguments, "crop_size", (512, 512))[0],
        crop_height=getattr(arguments, "crop_size", (512, 512))[1],
        blend=getattr(arguments, "blend", 16),
        color_correction=getattr(arguments, "color_correction", False),
        seed=arguments.seed,
        per_image_seeds=arguments.per_image_seeds,
        checkpoint=arguments.checkpoint,
        # The same URL twice would put two jobs in flight on one server.
        servers=tuple(dict.fromkeys(arguments.server or ())),
        models_dir=arguments.models_dir,
        job_timeout=arguments.timeout,
        ray_address=arguments.ray,
        comfyui=arguments.comfyui,
        workers=arguments.workers,
        cpu=arguments.cpu,
    )


def _unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _scale(text: str) -> float:
    try:
        exact = Fraction(text.strip())  # the decimal as typed: 1.25 is 5/4
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"must be a number, e.g. 2 or 1.5, got {text}") from None
    if not 0 < exact <= MAX_SCALE:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_SCALE}, got {text}")
    if exact.denominator > MAX_SCALE_DENOMINATOR:
        raise argparse.ArgumentTypeError(
            f"must be n/d with d at most {MAX_SCALE_DENOMINATOR} (e.g. 2, 1.5, 1.25, 0.5) so that the scaled "
            f"picture stays a multiple of 8 px, got {text}"
        )
    return float(exact)


def _tile(text: str) -> int:
    value = int(text)
    if value != 0 and not (MIN_TILE <= value <= MAX_TILE and value % TILE_STEP == 0):
        raise argparse.ArgumentTypeError(
            f"must be 0 (no tiles) or a multiple of {TILE_STEP} from {MIN_TILE} to {MAX_TILE}, got {text}"
        )
    return value


def _crop_size(text: str) -> tuple[int, int]:
    """W or WxH: the crop's target width and height (W alone: a square)."""
    parts = text.lower().split("x")
    try:
        sides = tuple(int(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be W or WxH in pixels, e.g. 512 or 768x512, got {text}") from None
    if len(sides) > 2 or not all(MIN_CROP <= side <= MAX_CROP and side % CROP_STEP == 0 for side in sides):
        raise argparse.ArgumentTypeError(
            f"must be W or WxH, each a multiple of {CROP_STEP} from {MIN_CROP} to {MAX_CROP}, got {text}"
        )
    return sides[0], sides[-1]


def _blend(text: str) -> int:
    value = int(text)
    if not 0 <= value <= MAX_BLEND:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_BLEND} pixels, got {text}")
    return value


def _unit_floats(text: str) -> tuple[float, ...]:
    values = tuple(_unit_float(part) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"needs at least one strength, got {text!r}")
    return values


def _seeds(text: str) -> tuple[int, ...]:
    return tuple(_seed(part) for part in text.split(",") if part.strip())


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be between 0 and {SEED_MAX}, got {text}")
    return value


def _server_url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"must start with http:// or https://, got {text}")
    return text.rstrip("/")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="img2img", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="img2img of image files and folders into an output folder",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--denoise", required=True, type=_unit_float, metavar="S", help="strength, 0 to 1")
    _add_upscale_arguments(run)
    _add_region_arguments(run)
    sweep = commands.add_parser(
        "sweep",
        help="each image at several strengths (and seeds), as one labelled contact sheet per image",
        description=SWEEP_DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument(
        "--denoise", required=True, type=_unit_floats, metavar="S,S,...", help="strengths, one column each"
    )
    sweep.add_argument("--seeds", type=_seeds, default=(), metavar="N,N,...", help="seeds, one row each")
    for command in (run, sweep):
        _add_common_arguments(command)
    return parser


def _add_common_arguments(command: argparse.ArgumentParser) -> None:
    """The options `run` and `sweep` share, in the order --help lists them."""
    command.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files, or folders of them")
    _add_sampling_arguments(command)
    _add_model_and_size_arguments(command)
    _add_output_and_server_arguments(command)
    _add_ray_arguments(command)
    command.set_defaults(parser=command)  # usage errors show the command's own usage line


def _add_sampling_arguments(command: argparse.ArgumentParser) -> None:
    """The prompt, the sampler and the seed."""
    command.add_argument("--prompt", required=True, metavar="TEXT", help="what the picture should show")
    command.add_argument("--negative", default="", metavar="TEXT", help="what it should not show (default: empty)")
    command.add_argument("--steps", type=_positive_int, default=20, help="steps of the full schedule (default: 20)")
    command.add_argument("--cfg", type=float, default=7.0, help="guidance scale (default: 7)")
    command.add_argument("--sampler", default="euler", metavar="NAME", help="a ComfyUI sampler name (default: euler)")
    command.add_argument("--scheduler", default="normal", metavar="NAME", help="a ComfyUI scheduler (default: normal)")
    command.add_argument(
        "--mode",
        default="steps_x_denoise",
        metavar="MODE",
        help="strength mode: steps_x_denoise, a1111, comfy or snr (default: steps_x_denoise)",
    )
    command.add_argument("--seed", type=_seed, default=0, help="noise seed for every image (default: 0)")
    command.add_argument(
        "--per-image-seeds",
        action="store_true",
        help="image i (in sorted input order, from 0) gets seed + i, so a rerun gives each input its picture",
    )


def _add_model_and_size_arguments(command: argparse.ArgumentParser) -> None:
    """The checkpoint, the picture's size and the bfloat16 switch."""
    command.add_argument(
        "--checkpoint",
        metavar="NAME",
        help="checkpoint file name on the server (default: the test checkpoint of the local host, or the "
        "example graph's with --server)",
    )
    command.add_argument(
        "--models-dir",
        type=Path,
        metavar="DIR",
        help="local host only: where --checkpoint lies (and --upscale-model, in DIR/upscale_models)",
    )
    command.add_argument("--width", type=int, default=0, help="resize to this width (default 0: keep)")
    command.add_argument("--height", type=int, default=0, help="resize to this height (default 0: keep)")
    command.add_argument(
        "--fit", default="crop", metavar="FIT", help="to the VAE's multiple of 8: crop, pad or stretch (default: crop)"
    )
    command.add_argument(
        "--accelerate",
        action="store_true",
        help="the nodes' accelerate inputs: sampler, encoder and decoder in bfloat16 where the server's device "
        "has it (a slightly different picture, about 3x faster on a CPU with AMX)",
    )


def _add_upscale_arguments(run: argparse.ArgumentParser) -> None:
    """`run`'s upscale-and-refine, in a section of their own in --help."""
    refine = run.add_argument_group(
        "upscale and refine",
        "each input made larger before encoding, then refined at --denoise; --tile for pictures larger than "
        "the model's trained size",
    )
    refine.add_argument(
        "--scale",
        type=_scale,
        default=1.0,
        metavar="F",
        help="upscale each input by F before encoding (lanczos, core's ImageScaleBy), e.g. 2; at most 8; n/d "
        "with d up to 8, for which the input is first fitted to a multiple of 8*d (default: 1, as loaded)",
    )
    refine.add_argument(
        "--tile",
        type=_tile,
        default=0,
        metavar="PIXELS",
        help="the model computed over tiles of this size (Img2ImgTiledModel, overlap a quarter), and the VAE's "
        "tile size; a multiple of 8 from 64 to 4096, e.g. 512 for SD1.5, 1024 for SDXL (default 0: untiled)",
    )
    refine.add_argument(
        "--upscale-model",
        metavar="NAME",
        help="upscale with this model file of the server's models/upscale_models (ESRGAN and the like, core's "
        "UpscaleModelLoader), then resize with lanczos to exactly F times the input (default: lanczos alone)",
    )


def _add_region_arguments(run: argparse.ArgumentParser) -> None:
    """`run`'s masks: a region of each picture, in a section of their own in --help."""
    region = run.add_argument_group(
        "a region of each picture",
        "an input with a mask has each region of the mask cut out with context (Img2ImgCrop), run at the crop "
        "size, and stitched back (Img2ImgStitch): the picture keeps its size, and pixels --blend px or more from "
        "the mask are the input's, bit for bit (docs/command.md: a region of each picture)",
    )
    region.add_argument(
        "--mask",
        choices=MASK_MODES,
        default="auto",
        help="where each input's mask comes from: sibling: the file NAME.mask.png beside NAME.png or NAME.jpg "
        "(white = change; a folder's *.mask.png files are no inputs); alpha: the input's transparency (none: the "
        "input comes back unchanged); auto: the "
        "sibling file if there is one, else the transparency if the input has any, else no mask (the whole "
        "picture, as without masks); none: never (default: auto)",
    )
    region.add_argument(
        "--crop-size",
        type=_crop_size,
        default=(512, 512),
        metavar="W[xH]",
        help="the crops' size, each side a multiple of 8 from 64 to 8192: about the model's trained size, e.g. "
        "512 for SD1.5, 1024 for SDXL (default: 512)",
    )
    region.add_argument(
        "--blend",
        type=_blend,
        default=16,
        metavar="PIXELS",
        help="the stitch fades the change out over this many pixels outside the mask, 0 to 256 (default: 16)",
    )
    region.add_argument(
        "--color-correction",
        action="store_true",
        help="the stitch shifts each edited crop's colours (CIELAB) to meet the picture's around the region",
    )


def _add_output_and_server_arguments(command: argparse.ArgumentParser) -> None:
    """Where the pictures go, the servers that make them, and how long one may take."""
    command.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if needed)")
    command.add_argument(
        "--server",
        action="append",
        type=_server_url,
        metavar="URL",
        help="a ComfyUI server with the pack, e.g. http://127.0.0.1:8188; repeat to use several",
    )
    command.add_argument(
        "--timeout",
        type=_positive_float,
        default=3600.0,
        metavar="SECONDS",
        help="per image, then it is stopped and fails (default: 3600)",
    )


def _add_ray_arguments(command: argparse.ArgumentParser) -> None:
    """--ray and the options that go with it, in a section of their own in --help."""
    cluster = command.add_argument_group(
        "Ray cluster",
        "--ray runs the images as Ray tasks on workers that each start and own a ComfyUI server "
        "(pip install 'comfyui-img2img[ray]'; docs/command.md: the three ways to scale)",
    )
    cluster.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="a running Ray cluster's address (e.g. 10.0.0.1:6379 or auto), or 'local' for a Ray instance of "
        "this machine for the run",
    )
    cluster.add_argument(
        "--comfyui",
        type=Path,
        metavar="DIR",
        help="with --ray: the ComfyUI folder (with comfyui-img2img in custom_nodes) at this path on every node "
        "(default in a checkout: the headless host's)",
    )
    cluster.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="with --ray: how many ComfyUI servers (default: one per GPU Ray reports, else one)",
    )
    cluster.add_argument(
        "--cpu", action="store_true", help="with --ray: ComfyUI's --cpu on every worker (else one GPU per worker)"
    )
