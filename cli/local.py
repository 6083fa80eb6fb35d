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

# The name the tests load scripts/host.py under too, so that one process shares one copy.
HARNESS_MODULE = "img2img_host"


class HostError(Exception):
    """The local host could not be built or started."""


def load_harness(root: Path) -> ModuleType:
    """scripts/host.py of the checkout at ``root``: a standard-library script, not a package."""
    if HARNESS_MODULE in sys.modules:
        return sys.modules[HARNESS_MODULE]
    spec = importlib.util.spec_from_file_location(HARNESS_MODULE, root / "scripts" / "host.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[HARNESS_MODULE] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@contextmanager
def local_server(root: Path, models_dir: Path | None) -> Iterator[tuple[str, str]]:
    """Builds (or reuses) the host and serves it on a free loopback port until the block ends.

    Yields the server's URL and the name of the host's test checkpoint. ``models_dir`` is added to the
    server's checkpoint search path through ComfyUI's --extra-model-paths-config, the way ComfyUI itself
    shares model folders, so real models are used in place without copying or linking them.
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
            # JSON is YAML. Checkpoints may lie in DIR itself or in a ComfyUI-style DIR/checkpoints/.
            paths = {"img2img_cli": {"base_path": str(models_dir.resolve()), "checkpoints": ".\ncheckpoints"}}
            config.write_text(json.dumps(paths))
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
