"""The server under load and faults: many concurrent prompts, an interrupt mid-sampling, a disk that refuses a write.

None of them may crash the server, lose or overwrite an image, or leave a partial file in the output folder.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import websocket
from PIL import Image

from host_servers import host_harness, load_and_save

# The 200 prompts take about 25 s on two idle cores (64x64, 4 steps); IMG2IMG_LOAD_PROMPTS sets
# fewer for a busy machine, or more for a longer soak.
LOAD_PROMPTS = int(os.environ.get("IMG2IMG_LOAD_PROMPTS") or 200)
LOAD_CLIENTS = 4
# The first prompts load the model and fill the caches and allocator pools: memory is compared from here on.
WARMUP_PROMPTS = 10
RSS_GROWTH_LIMIT = 0.10
# Above the server's log (a few KB: it is written by the same process, so it must stay under the limit) and a
# small PNG; far below a 512x512 noise PNG, which so fails part-way through its write.
FSIZE_LIMIT = 64 * 1024


def files_in(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (hidden temporary files too), by relative path, with its size."""
    return {str(path.relative_to(folder)): path.stat().st_size for path in folder.rglob("*") if not path.is_dir()}


def write_noise(path: Path, size: int, seed: int) -> None:
    # Noise does not compress: the PNG is about width x height x 3 bytes.
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def test_concurrent_prompts_all_save_distinct_files_without_leaking_memory(start_server, api_graph, tmp_path):
    assert LOAD_PROMPTS > WARMUP_PROMPTS, f"IMG2IMG_LOAD_PROMPTS must be more than {WARMUP_PROMPTS}"
    server = start_server()  # its own output folder: every file in it must come from these prompts
    lock = threading.Lock()
    # prompt id -> (file, size, inode, mtime) when its client first saw it; an overwrite would change them.
    seen: dict[str, tuple[Path, int, int, int]] = {}

    def run(seeds: range) -> float:
        left = iter(seeds)

        def client() -> None:
            while True:
                with lock:
                    seed = next(left, None)
                if seed is None:
                    return
                # A new seed per prompt: ComfyUI's cache would otherwise answer from the last run.
                graph = api_graph(seed, **{"4.width": 64, "4.height": 64, "6.steps": 4, "7.steps": 4})
                prompt_id = server.queue(graph)
                entry = server.wait(prompt_id, timeout=120)
                assert entry["status"]["status_str"] == "success", entry["status"]
                [path] = server.saved_paths(entry)
                stat = path.stat()
                with lock:
                    seen[prompt_id] = (path, stat.st_size, stat.st_ino, stat.st_mtime_ns)

        start = time.monotonic()
        with ThreadPoolExecutor(LOAD_CLIENTS) as pool:
            for future in [pool.submit(client) for _ in range(LOAD_CLIENTS)]:
                future.result()  # a client's failed assertion fails the test here
        return time.monotonic() - start

    memory = psutil.Process(server.process.pid)
    warmup_s = run(range(WARMUP_PROMPTS))
    rss_warm = memory.memory_info().rss
    steady_s = run(range(WARMUP_PROMPTS, LOAD_PROMPTS))
    rss_end = memory.memory_info().rss
    figures = {
        "prompts": LOAD_PROMPTS,
        "client_threads": LOAD_CLIENTS,
        "graph": "README img2img graph, 64x64, steps 4, denoise 0.6, test checkpoint, --cpu",
        "wall_s": round(warmup_s + steady_s, 2),
        "prompts_per_s": round(LOAD_PROMPTS / (warmup_s + steady_s), 2),
        "prompts_per_s_after_warmup": round((LOAD_PROMPTS - WARMUP_PROMPTS) / steady_s, 2),
        "rss_after_10_mib": round(rss_warm / 2**20, 1),
        "rss_end_mib": round(rss_end / 2**20, 1),
        "rss_growth_percent": round(100 * (rss_end / rss_warm - 1), 2),
    }
    report = tmp_path / "load_figures.json"
    report.write_text(json.dumps(figures, indent=1))
    print(f"load figures ({report}): {json.dumps(figures)}")

    assert server.get_json("/queue") == {"queue_running": [], "queue_pending": []}
    assert len(seen) == LOAD_PROMPTS
    paths = [path for path, *_ in seen.values()]
    assert len(set(paths)) == LOAD_PROMPTS, "two prompts reported the same file"
    for path, size, inode, mtime in seen.values():
        stat = path.stat()
        assert (stat.st_size, stat.st_ino, stat.st_mtime_ns) == (size, inode, mtime), f"{path} was rewritten"
    # Nothing else: no temporary file left behind, no file a prompt wrote but did not report.
    assert set(files_in(server.output_dir)) == {str(path.relative_to(server.output_dir)) for path in paths}
    assert rss_end <= rss_warm * (1 + RSS_GROWTH_LIMIT), figures
    server.stop()  # its memory back for the rest of the session


def progress_messages(ws: websocket.WebSocket, prompt_id: str, node: str, timeout: float) -> Iterator[dict]:
    """The progress messages of ``node`` in ``prompt_id`` as they come, for up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            raw = ws.recv()
        except websocket.WebSocketTimeoutException:
            continue
        if not isinstance(raw, str):
            continue  # binary previews
        message = json.loads(raw)
        data = message.get("data") or {}
        if message.get("type") == "progress" and data.get("prompt_id") == prompt_id and data.get("node") == node:
            yield data


def test_interrupt_mid_sampling_leaves_no_file_and_the_next_prompt_saves_one(server, api_graph):
    before = files_in(server.output_dir)
    client_id = uuid.uuid4().hex
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?clientId={client_id}", timeout=1)
    try:
        # 10000 steps from pure noise: many minutes, so only the interrupt can end it.
        graph = api_graph(111, **{"6.steps": 10000, "6.denoise": 1.0, "9.filename_prefix": "interrupt-midway/run"})
        status, answer = server.post_json("/prompt", {"prompt": graph, "client_id": client_id})
        assert status == 200, answer
        prompt_id = answer["prompt_id"]
        # Progress comes from the sampler's step callback: the model is loaded and the steps are running.
        first = next(progress_messages(ws, prompt_id, "7", timeout=120), None)
        assert first is not None, "the sampler reported no progress"
        assert first["max"] >= 1000
        server.post_json("/interrupt", {"prompt_id": prompt_id})
        entry = server.wait(prompt_id, timeout=60)
        # Every step it reported, the last one included, came before the end of its 10000: it stopped between steps.
        last = [first, *progress_messages(ws, prompt_id, "7", timeout=2)][-1]
    finally:
        ws.close()
    assert last["value"] < last["max"], last
    assert entry["status"]["status_str"] == "error"
    messages = dict(entry["status"]["messages"])
    assert "execution_error" not in messages, messages
    interrupted = messages["execution_interrupted"]
    assert (interrupted["node_id"], interrupted["node_type"]) == ("7", "Img2ImgKSampler")
    assert "9" not in interrupted["executed"] and not entry["outputs"].get("9")
    assert server.get_json("/queue") == {"queue_running": [], "queue_pending": []}
    # Not a byte more in the output folder: no picture, no partial or temporary file, no new folder.
    assert files_in(server.output_dir) == before
    assert not (server.output_dir / "interrupt-midway").exists()

    after = server.wait(server.queue(api_graph(112, **{"9.filename_prefix": "interrupt-midway/after"})))
    assert after["status"]["status_str"] == "success", after["status"]
    [path] = server.saved_paths(after)
    assert files_in(server.output_dir) == {**before, str(path.relative_to(server.output_dir)): path.stat().st_size}
    with Image.open(path) as png:
        png.load()
        assert png.size == (128, 128)


def limit_file_size() -> None:
    """In the server's process: writes past FSIZE_LIMIT bytes of a file fail with EFBIG.

    Without SIG_IGN the kernel kills the process with SIGXFSZ instead (CPython ignores it too once it
    runs, but not before).
    """
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


def test_a_write_that_fails_part_way_leaves_no_file_and_the_server_keeps_saving(comfy_host, tmp_path):
    with host_harness.Server(comfy_host, tmp_path / "server", preexec_fn=limit_file_size) as server:
        write_noise(server.input_dir / "big.png", 512, seed=1)
        write_noise(server.input_dir / "small.png", 32, seed=2)
        assert (server.input_dir / "big.png").stat().st_size > 4 * FSIZE_LIMIT
        # The log is written by the limited process too; past the limit its own prints would fail.
        assert server.log_path.stat().st_size < FSIZE_LIMIT / 2

        entry = server.wait(server.queue(load_and_save("big.png", "big")), timeout=120)
        assert entry["status"]["status_str"] == "error", entry["status"]
        error = dict(entry["status"]["messages"])["execution_error"]
        assert (error["node_id"], error["node_type"]) == ("2", "Img2ImgSaveImage"), error
        # The limit made the write fail, part-way: not some other error before it.
        assert os.strerror(errno.EFBIG) in error["exception_message"], error
        assert server.get_json("/system_stats")["system"]["comfyui_version"] == "0.3.75"
        assert server.process.poll() is None
        # No truncated picture under its final name, and no temporary file left beside it.
        assert files_in(server.output_dir) == {}

        # The failure leaves nothing behind that stops the next save.
        entry = server.wait(server.queue(load_and_save("small.png", "small")), timeout=120)
        assert entry["status"]["status_str"] == "success", entry["status"]
        [path] = server.saved_paths(entry)
        assert files_in(server.output_dir) == {str(path.relative_to(server.output_dir)): path.stat().st_size}
        with Image.open(path) as png:
            png.load()
            assert png.size == (32, 32)
        assert server.log_path.stat().st_size < FSIZE_LIMIT, "the server's log reached the file size limit"
