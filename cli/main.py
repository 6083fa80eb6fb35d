"""``img2img run|sweep``: inputs, backend and resume; the command line is options.py, the work batch.py."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .batch import Batch, Job, Summary, say
from .graph import GraphError, Parameters, checkout_root, load_template, template_checkpoint
from .local import HostError, load_harness, local_server
from .masks import MASK_SUFFIX, is_mask_file, plan_mask
from .options import RunOptions, UsageError, build_parser, options_from_arguments
from .results import MANIFEST_NAME, Manifest, file_sha256, resume_key

# What Img2ImgLoadImage reads; a folder's other files are left out. Files named on the command line are
# always sent, and the server judges them. A copy of the node's set, since the command is installed without
# the pack (its wheel holds cli/ alone); tests/cli/test_cli_offline.py holds the two equal.
IMAGE_SUFFIXES = frozenset((".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".apng"))
INTERRUPTED_EXIT = 130  # the shell's code for a run ended by SIGINT
EXIT_CAP = 255


class StartFailed(Exception):
    """The servers for the run could not be built or started: the message alone, exit status 2."""


def collect_inputs(paths: Sequence[Path]) -> list[Path]:
    """Files and the image files of folders (not their subfolders), absolute, sorted, each once. Masks
    (``*.mask.png``) are no inputs: a folder's are left out, and so is a named one whose picture is an input
    too (a shell's ``photos/*`` names both); a mask named alone is a picture like any other."""
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found.update(
                item.absolute()
                for item in path.iterdir()
                if item.suffix.lower() in IMAGE_SUFFIXES and not is_mask_file(item) and item.is_file()
            )
        elif path.is_file():
            found.add(path.absolute())
        else:
            raise ValueError(f"no such file or folder: {path}")
    pictures = {(item.parent, item.stem) for item in found if not is_mask_file(item)}
    found -= {
        item for item in found if is_mask_file(item) and (item.parent, item.name[: -len(MASK_SUFFIX)]) in pictures
    }
    if not found:
        raise ValueError("no image files in " + " ".join(map(str, paths)))
    return sorted(found, key=str)


def plan_jobs(
    images: list[Path], seed: int, per_image: bool, parameters: Parameters, manifest: Manifest
) -> tuple[list[Job], int, list[tuple[Path, str]]]:
    """The jobs still to do, how many are already in the manifest, and the inputs that cannot run: a file that
    cannot be read, or no mask file beside it under --mask sibling."""
    done = manifest.done_keys()
    jobs, skipped, unreadable = [], 0, []
    for index, path in enumerate(images):
        # The seed follows the position among all inputs, skipped ones included, so a rerun keeps it.
        image_seed = seed + index if per_image else seed
        try:
            job = Job(path, file_sha256(path), image_seed, plan_mask(path, parameters.mask))
        except (OSError, ValueError) as error:
            unreadable.append((path, str(error)))
            continue
        if resume_key(job.sha256, job.seed, parameters.as_dict(), job.mask_key) in done:
            skipped += 1
        else:
            jobs.append(job)
    return jobs, skipped, unreadable


def run(options: RunOptions) -> int:
    """Runs the images on the backend the options choose (a list of servers, the local host, or Ray) and
    returns the exit status."""
    try:
        images = collect_inputs(options.inputs)
        template = load_template()
        graph_checkpoint = template_checkpoint(template)
    except (ValueError, GraphError) as error:
        raise UsageError(str(error)) from error
    root = checkout_root()
    if options.ray_address:
        return run_on_ray(options, images, template, root, graph_checkpoint)
    if options.comfyui or options.workers or options.cpu:
        raise UsageError("--comfyui, --workers and --cpu go with --ray")
    if options.servers and options.models_dir:
        raise UsageError("--models-dir is for the local host; a --server finds checkpoints in its own models folder")
    if not options.servers and root is None:
        raise UsageError(
            "no --server given, and this installation has no repository checkout (scripts/host.py) to start a "
            "local ComfyUI host from: pass --server URL of a ComfyUI server with comfyui-img2img installed"
        )
    if options.models_dir and not options.models_dir.is_dir():
        raise UsageError(f"--models-dir {options.models_dir} is not a folder")
    options.out.mkdir(parents=True, exist_ok=True)
    if options.servers:
        return run_batch(options, images, template, list(options.servers), options.checkpoint or graph_checkpoint)
    try:
        with local_server(root, options.models_dir) as (url, test_checkpoint):
            return run_batch(options, images, template, [url], options.checkpoint or test_checkpoint)
    except HostError as error:
        raise StartFailed(f"the local ComfyUI host did not start: {error}") from error


def run_on_ray(
    options: RunOptions, images: list[Path], template: dict, root: Path | None, graph_checkpoint: str
) -> int:
    """--ray: the images on Ray workers that each start a ComfyUI server from --comfyui (in a checkout, by
    default the headless host's, built if needed)."""
    if options.servers or options.models_dir:
        raise UsageError("--ray starts its own servers: no --server or --models-dir with it")
    try:
        from . import ray_cluster
    except ImportError as error:
        raise UsageError(f"--ray needs Ray ({error}): pip install 'comfyui-img2img[ray]'") from error
    checkpoint = options.checkpoint or graph_checkpoint
    comfyui = options.comfyui
    if comfyui is None:
        if root is None:
            raise UsageError("--ray needs --comfyui DIR: the ComfyUI folder with comfyui-img2img on every node")
        harness = load_harness(root)
        try:
            host = harness.build()
        except (subprocess.CalledProcessError, OSError) as error:
            raise StartFailed(f"building the local ComfyUI host failed: {error}") from error
        comfyui, checkpoint = host.comfyui, options.checkpoint or harness.TEST_CHECKPOINT
    elif not (comfyui / "main.py").is_file():
        raise UsageError(f"--comfyui {comfyui} has no main.py: not a ComfyUI folder")
    options.out.mkdir(parents=True, exist_ok=True)
    try:
        workers = ray_cluster.connect(options.ray_address, options.workers, options.cpu)
    except ray_cluster.NoGpu as error:
        raise StartFailed(str(error)) from error
    parameters, jobs, skipped, unreadable = prepare(options, images, checkpoint)
    batch = ray_cluster.RayBatch(
        jobs, workers, comfyui.absolute(), options.cpu, parameters, template, options.out, options.job_timeout
    )
    return report(options.out, batch.run(), skipped, unreadable)


def prepare(
    options: RunOptions, images: list[Path], checkpoint: str
) -> tuple[Parameters, list[Job], int, list[tuple[Path, str]]]:
    """The run's parameters and its jobs, for either backend; says what is skipped or unreadable."""
    parameters = options.parameters(checkpoint)
    jobs, skipped, unreadable = plan_jobs(
        images, options.seed, options.per_image_seeds, parameters, Manifest(options.out)
    )
    for path, message in unreadable:
        say(f"FAILED {path}: {message}", error=True)
    if skipped:
        say(f"img2img: {skipped} of {len(images)} inputs are already in {options.out / MANIFEST_NAME}")
    return parameters, jobs, skipped, unreadable


def run_batch(options: RunOptions, images: list[Path], template: dict, servers: list[str], checkpoint: str) -> int:
    """The images on running servers (--server, or the local host), one job in flight on each."""
    parameters, jobs, skipped, unreadable = prepare(options, images, checkpoint)
    summary = Batch(jobs, servers, parameters, template, options.out, options.job_timeout).run()
    return report(options.out, summary, skipped, unreadable)


def report(out: Path, summary: Summary, skipped: int, unreadable: list) -> int:
    """The last line of a run, and its exit status."""
    failed = summary.failed + len(unreadable)
    if summary.elsewhere:
        say(f"img2img: {summary.elsewhere} inputs were done by another run into {out} meanwhile")
    say(
        f"img2img: {summary.done} done, {skipped + summary.elsewhere} skipped, {failed} failed"
        + (", interrupted" if summary.interrupted else "")
        + f"; pictures and {MANIFEST_NAME} in {out}"
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
    arguments = build_parser().parse_args(argv)
    try:
        return run(options_from_arguments(arguments))
    except UsageError as error:
        arguments.parser.error(str(error))  # the command's own usage line, exit status 2
    except StartFailed as error:
        arguments.parser.exit(2, f"img2img: {error}\n")
    except KeyboardInterrupt:  # before or after the batch, which handles its own Ctrl-C
        say("img2img: interrupted", error=True)
        return INTERRUPTED_EXIT
