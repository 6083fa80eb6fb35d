"""``img2img run``: command line, inputs and resume; the work itself happens in batch.py."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .batch import Batch, Job, Summary, say
from .graph import GraphError, Parameters, checkout_root, load_template, template_checkpoint
from .local import HostError, load_harness, local_server
from .results import MANIFEST_NAME, Manifest, file_sha256, resume_key

# What Img2ImgLoadImage reads; a folder's other files are left out. Files named on the command line are
# always sent, and the server judges them. A copy of the node's set, since the command is installed without
# the pack (its wheel holds cli/ alone); tests/cli/test_cli_offline.py holds the two equal.
IMAGE_SUFFIXES = frozenset((".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".apng"))
SEED_MAX = 0xFFFFFFFFFFFFFFFF
INTERRUPTED_EXIT = 130  # the shell's code for a run ended by SIGINT
EXIT_CAP = 255

DESCRIPTION = """\
img2img with the comfyui-img2img nodes on ComfyUI servers. Each input image is uploaded, run through
Img2ImgLoadImage -> Img2ImgVAEEncode -> Img2ImgKSampler -> Img2ImgVAEDecode -> Img2ImgSaveImage, and its
result fetched into DIR (never over an existing file), with one line per image in DIR/manifest.jsonl.
Running again into the same DIR skips the inputs already there with the same content and parameters.
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


def _add_common_arguments(run: argparse.ArgumentParser) -> None:
    """The options `run` and `sweep` share."""
    run.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files, or folders of them")
    run.add_argument("--prompt", required=True, metavar="TEXT", help="what the picture should show")
    run.add_argument("--negative", default="", metavar="TEXT", help="what it should not show (default: empty)")
    run.add_argument("--steps", type=_positive_int, default=20, help="steps of the full schedule (default: 20)")
    run.add_argument("--cfg", type=float, default=7.0, help="guidance scale (default: 7)")
    run.add_argument("--sampler", default="euler", metavar="NAME", help="a ComfyUI sampler name (default: euler)")
    run.add_argument("--scheduler", default="normal", metavar="NAME", help="a ComfyUI scheduler (default: normal)")
    run.add_argument(
        "--mode",
        default="steps_x_denoise",
        metavar="MODE",
        help="strength mode: steps_x_denoise, a1111, comfy or snr (default: steps_x_denoise)",
    )
    run.add_argument("--seed", type=_seed, default=0, help="noise seed for every image (default: 0)")
    run.add_argument(
        "--per-image-seeds",
        action="store_true",
        help="image i (in sorted input order, from 0) gets seed + i, so a rerun gives each input its picture",
    )
    run.add_argument(
        "--checkpoint",
        metavar="NAME",
        help="checkpoint file name on the server (default: the test checkpoint of the local host, or the "
        "example graph's with --server)",
    )
    run.add_argument("--models-dir", type=Path, metavar="DIR", help="local host only: where --checkpoint lies")
    run.add_argument("--width", type=int, default=0, help="resize to this width (default 0: keep)")
    run.add_argument("--height", type=int, default=0, help="resize to this height (default 0: keep)")
    run.add_argument(
        "--fit", default="crop", metavar="FIT", help="to the VAE's multiple of 8: crop, pad or stretch (default: crop)"
    )
    run.add_argument(
        "--accelerate",
        action="store_true",
        help="the nodes' accelerate inputs: sampler, encoder and decoder in bfloat16 where the server's device "
        "has it (a slightly different picture, about 3x faster on a CPU with AMX)",
    )
    run.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if needed)")
    run.add_argument(
        "--server",
        action="append",
        type=_server_url,
        metavar="URL",
        help="a ComfyUI server with the pack, e.g. http://127.0.0.1:8188; repeat to use several",
    )
    run.add_argument(
        "--timeout",
        type=_positive_float,
        default=3600.0,
        metavar="SECONDS",
        help="per image, then it is stopped and fails (default: 3600)",
    )
    cluster = run.add_argument_group(
        "Ray cluster",
        "--ray runs the images as Ray tasks on workers that each start and own a ComfyUI server "
        "(pip install 'comfyui-img2img[ray]'; README: the three ways to scale)",
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
    run.set_defaults(parser=run)  # usage errors show the command's own usage line


def collect_inputs(paths: Sequence[Path]) -> list[Path]:
    """Files and the image files of folders (not their subfolders), absolute, sorted, each once."""
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found.update(
                item.absolute() for item in path.iterdir() if item.suffix.lower() in IMAGE_SUFFIXES and item.is_file()
            )
        elif path.is_file():
            found.add(path.absolute())
        else:
            raise ValueError(f"no such file or folder: {path}")
    if not found:
        raise ValueError("no image files in " + " ".join(map(str, paths)))
    return sorted(found, key=str)


def plan_jobs(
    images: list[Path], seed: int, per_image: bool, parameters: Parameters, manifest: Manifest
) -> tuple[list[Job], int, list[tuple[Path, str]]]:
    """The jobs still to do, how many are already in the manifest, and the inputs that cannot be read."""
    done = manifest.done_keys()
    jobs, skipped, unreadable = [], 0, []
    for index, path in enumerate(images):
        # The seed follows the position among all inputs, skipped ones included, so a rerun keeps it.
        image_seed = seed + index if per_image else seed
        try:
            digest = file_sha256(path)
        except OSError as error:
            unreadable.append((path, str(error)))
            continue
        if resume_key(digest, image_seed, parameters.as_dict()) in done:
            skipped += 1
        else:
            jobs.append(Job(path, digest, image_seed))
    return jobs, skipped, unreadable


def run(options: argparse.Namespace) -> int:
    parser = options.parser
    try:
        images = collect_inputs(options.inputs)
        template = load_template()
        graph_checkpoint = template_checkpoint(template)
    except (ValueError, GraphError) as error:
        parser.error(str(error))
    root = checkout_root()
    if options.ray:
        return run_on_ray(options, images, template, root, graph_checkpoint)
    if options.comfyui or options.workers or options.cpu:
        parser.error("--comfyui, --workers and --cpu go with --ray")
    if options.server and options.models_dir:
        parser.error("--models-dir is for the local host; a --server finds checkpoints in its own models folder")
    if not options.server and root is None:
        parser.error(
            "no --server given, and this installation has no repository checkout (scripts/host.py) to start a "
            "local ComfyUI host from: pass --server URL of a ComfyUI server with comfyui-img2img installed"
        )
    if options.models_dir and not options.models_dir.is_dir():
        parser.error(f"--models-dir {options.models_dir} is not a folder")
    options.out.mkdir(parents=True, exist_ok=True)
    if options.server:
        # The same URL twice would put two jobs in flight on one server.
        servers = list(dict.fromkeys(options.server))
        return run_batch(options, images, template, servers, options.checkpoint or graph_checkpoint)
    try:
        with local_server(root, options.models_dir) as (url, test_checkpoint):
            return run_batch(options, images, template, [url], options.checkpoint or test_checkpoint)
    except HostError as error:
        parser.exit(2, f"img2img: the local ComfyUI host did not start: {error}\n")


def run_on_ray(
    options: argparse.Namespace, images: list[Path], template: dict, root: Path | None, graph_checkpoint: str
) -> int:
    parser = options.parser
    if options.server or options.models_dir:
        parser.error("--ray starts its own servers: no --server or --models-dir with it")
    try:
        from . import ray_cluster
    except ImportError as error:
        parser.error(f"--ray needs Ray ({error}): pip install 'comfyui-img2img[ray]'")
    checkpoint = options.checkpoint or graph_checkpoint
    comfyui = options.comfyui
    if comfyui is None:
        if root is None:
            parser.error("--ray needs --comfyui DIR: the ComfyUI folder with comfyui-img2img on every node")
        harness = load_harness(root)
        try:
            host = harness.build()
        except (subprocess.CalledProcessError, OSError) as error:
            parser.exit(2, f"img2img: building the local ComfyUI host failed: {error}\n")
        comfyui, checkpoint = host.comfyui, options.checkpoint or harness.TEST_CHECKPOINT
    elif not (comfyui / "main.py").is_file():
        parser.error(f"--comfyui {comfyui} has no main.py: not a ComfyUI folder")
    options.out.mkdir(parents=True, exist_ok=True)
    try:
        workers = ray_cluster.connect(options.ray, options.workers, options.cpu)
    except ray_cluster.NoGpu as error:
        parser.exit(2, f"img2img: {error}\n")
    parameters, jobs, skipped, unreadable = prepare(options, images, checkpoint)
    batch = ray_cluster.RayBatch(
        jobs, workers, comfyui.absolute(), options.cpu, parameters, template, options.out, options.timeout
    )
    return report(options, batch.run(), skipped, unreadable)


def prepare(
    options: argparse.Namespace, images: list[Path], checkpoint: str
) -> tuple[Parameters, list[Job], int, list[tuple[Path, str]]]:
    """The run's parameters and its jobs, for either backend; says what is skipped or unreadable."""
    parameters = Parameters(
        prompt=options.prompt,
        negative=options.negative,
        denoise=options.denoise,
        sweep_seeds=getattr(options, "seeds", ()),
        steps=options.steps,
        cfg=options.cfg,
        sampler=options.sampler,
        scheduler=options.scheduler,
        mode=options.mode,
        checkpoint=checkpoint,
        width=options.width,
        height=options.height,
        fit=options.fit,
        accelerate=options.accelerate,
    )
    jobs, skipped, unreadable = plan_jobs(
        images, options.seed, options.per_image_seeds, parameters, Manifest(options.out)
    )
    for path, message in unreadable:
        say(f"FAILED {path}: {message}", error=True)
    if skipped:
        say(f"img2img: {skipped} of {len(images)} inputs are already in {options.out / MANIFEST_NAME}")
    return parameters, jobs, skipped, unreadable


def run_batch(
    options: argparse.Namespace, images: list[Path], template: dict, servers: list[str], checkpoint: str
) -> int:
    parameters, jobs, skipped, unreadable = prepare(options, images, checkpoint)
    summary = Batch(jobs, servers, parameters, template, options.out, options.timeout).run()
    return report(options, summary, skipped, unreadable)


def report(options: argparse.Namespace, summary: Summary, skipped: int, unreadable: list) -> int:
    """The last line of a run, and its exit status."""
    failed = summary.failed + len(unreadable)
    if summary.elsewhere:
        say(f"img2img: {summary.elsewhere} inputs were done by another run into {options.out} meanwhile")
    say(
        f"img2img: {summary.done} done, {skipped + summary.elsewhere} skipped, {failed} failed"
        + (", interrupted" if summary.interrupted else "")
        + f"; pictures and {MANIFEST_NAME} in {options.out}"
    )
    if summary.interrupted:
        return INTERRUPTED_EXIT
    return min(failed, EXIT_CAP)


def keep_going_on_any_console() -> None:
    """A console or pipe in a legacy code page (Windows' cp1252 when redirected, a C locale) cannot show every
    character of a file name or a server's message: those print as escapes instead of ending the run."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    keep_going_on_any_console()
    options = build_parser().parse_args(argv)
    try:
        return run(options)
    except KeyboardInterrupt:  # before or after the batch, which handles its own Ctrl-C
        say("img2img: interrupted", error=True)
        return INTERRUPTED_EXIT
