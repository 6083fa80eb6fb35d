"""Without --server: the repository's own headless ComfyUI host (scripts/host.py), started for the run."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

# The host harness: the package scripts/img2img_host/ of a checkout (scripts/host.py is its command line).
HARNESS_PACKAGE = "img2img_host"


class HostError(Exception):
    """The local host could not be built or started."""


def load_harness(root: Path) -> ModuleType:
    """The host harness of the checkout at ``root``: a standard-library package that is no part of this wheel,
    so it is imported from its folder. A process that has imported it already (the tests, whose path holds
    scripts/) gets that copy: one process, one harness."""
    if HARNESS_PACKAGE in sys.modules:
        return sys.modules[HARNESS_PACKAGE]
    folder = root / "scripts" / HARNESS_PACKAGE
    spec = importlib.util.spec_from_file_location(
        HARNESS_PACKAGE, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[HARNESS_PACKAGE] = module  # before it runs: its modules import each other through it
    spec.loader.exec_module(module)
    return module


@contextmanager
def local_server(root: Path, models_dir: Path | None) -> Iterator[tuple[str, str]]:
    """Builds (or reuses) the host and serves it on a free loopback port until the block ends.

    Yields the server's URL and the name of the host's test checkpoint. ``models_dir`` is added to the
    server's checkpoint and upscale model search paths through ComfyUI's --extra-model-paths-config, the way
    ComfyUI itself shares model folders, so real models are used in place without copying or linking them.
    """
    harness = load_harness(root)
    try:
        host = harness.build()
    except (subprocess.CalledProcessError, OSError) as error:
        raise HostError(f"building it failed: {error}") from error
    with tempfile.TemporaryDirectory(prefix="img2img-cli-") as workdir:
        extra_args: list[str] = []
        if models_dir is not None:
            config = Path(workdir) / "extra_model_paths.yaml"
            # JSON is YAML. Checkpoints may lie in DIR itself or in a ComfyUI-style DIR/checkpoints/; upscale
            # models (--upscale-model) in DIR/upscale_models/, as in a ComfyUI models folder.
            paths = {
                "img2img_cli": {
                    "base_path": str(models_dir.resolve()),
                    "checkpoints": ".\ncheckpoints",
                    "upscale_models": "upscale_models",
                }
            }
            config.write_text(json.dumps(paths), encoding="utf-8")
            extra_args = ["--extra-model-paths-config", str(config)]
        server = harness.Server(host, Path(workdir), extra_args=extra_args)
        try:  # stopped also after Ctrl-C during start-up: its own session does not get the SIGINT
            try:
                server.start()
            except (RuntimeError, TimeoutError) as error:
                raise HostError(str(error)) from error
            yield server.url, harness.TEST_CHECKPOINT
        finally:
            server.stop()
