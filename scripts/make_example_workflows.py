"""Regenerates example_workflows/ from the API-format graphs in example_workflows/api/.

Re-run it by hand whenever the nodes change (inputs, widgets, sizes) or a graph in api/ does, and commit
what it writes; CI does not run it (the browser tests check that the committed files still load):

    .host/venv/bin/python scripts/make_example_workflows.py

It needs the host (``python3 scripts/host.py build``), Playwright in the host's venv and Debian's
Chromium at /usr/bin/chromium. It starts its own ComfyUI server and for each ``api/<name>.json``:

- checks the graph against the server's ``/object_info`` (known nodes, every required input, link types);
- loads it into the real frontend (``app.loadApiJson``), lays it out (``app.graph.arrange``, seeds fixed)
  and writes the UI-format workflow ``<name>.json`` (``app.graph.serialize``), which ComfyUI's template
  browser serves, and its thumbnail ``<name>.jpg`` (a screenshot of the canvas, 512 px wide);
- queues it on the server, every checkpoint loader set to the project's demo model, to prove that it runs.

For img2img, img2img_upscale and img2img_crop_stitch it also writes ``<name>.png``: that run's output (the demo
model's picture), saved with the UI workflow in its ``workflow`` chunk, so that dropping it onto ComfyUI
rebuilds the graph. ``input/sample_regional.png`` (the sample with a transparent rectangle, for the regional
graph) is generated first; every file in ``input/`` is uploaded.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path

from PIL import Image, PngImagePlugin
from playwright.sync_api import sync_playwright

import img2img_host as host_harness  # scripts/img2img_host, beside this script

EXAMPLES = host_harness.PACK_ROOT / "example_workflows"
SAMPLE = EXAMPLES / "input" / "sample.png"
REGIONAL_SAMPLE = EXAMPLES / "input" / "sample_regional.png"
FOLDER = "batch"  # the input subfolder of the folder graph
# No first-run templates dialog; no minimap, canvas info or zoom menu in the thumbnails; full detail at any zoom.
SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.Minimap.Visible": False,
    "Comfy.Graph.CanvasInfo": False,
    "Comfy.Graph.CanvasMenu": False,
    "LiteGraph.Canvas.MinFontSizeForLOD": 0,
}
THUMBNAIL_WIDTH = 512
# The graphs whose run's output is committed as a PNG to drag into ComfyUI.
DRAG_IN_PNGS = ("img2img", "img2img_upscale", "img2img_crop_stitch")

# In the page, after app.loadApiJson: wait for the loader's image preview and for the node sizes to settle,
# fix the seeds, arrange the graph (moving down a node left overlapping), fit it into the view, and answer
# the workflow as the frontend saves it (JSON text) with the nodes' boxes in graph units and their outline in
# page pixels.
LAYOUT = """async () => {
  const pause = () => new Promise((resolve) => setTimeout(resolve, 100));
  const loaded = (node) => node.type !== "Img2ImgLoadImage" || node.imgs?.[0]?.naturalWidth > 0;
  for (const start = Date.now(); !app.graph.nodes.every(loaded); await pause())
    if (Date.now() - start > 60000) throw new Error("no preview of the loaded image after 60 s: is it in input/?");
  const sizes = () => JSON.stringify(app.graph.nodes.map((node) => node.size));
  for (let last = null, now = sizes(); last !== now; last = now, now = sizes()) await pause();
  for (const node of app.graph.nodes)
    for (const widget of node.widgets ?? []) if (widget.name === "control_after_generate") widget.value = "fixed";
  app.graph.arrange(80);
  // arrange() can leave a node of a crowded column overlapping the one above it: push it down, below that
  // one. Boxes from pos and size (the title bar above pos): boundingRect is only brought up to date on a draw.
  const title = LiteGraph.NODE_TITLE_HEIGHT;
  const box = (node) => [node.pos[0], node.pos[1] - title, node.size[0], node.size[1] + title];
  const meet = (a, b) => a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3];
  for (let moved = true, round = 0; moved && round < 50; round++) {
    moved = false;
    for (const upper of app.graph.nodes)
      for (const lower of app.graph.nodes) {
        const [a, b] = [box(upper), box(lower)];
        if (upper === lower || b[1] < a[1] || !meet(a, b)) continue;
        lower.pos[1] += a[1] + a[3] + 40 - b[1];
        moved = true;
      }
  }
  const boxes = app.graph.nodes.map(box);
  const left = Math.min(...boxes.map((b) => b[0])), right = Math.max(...boxes.map((b) => b[0] + b[2]));
  const top = Math.min(...boxes.map((b) => b[1])), bottom = Math.max(...boxes.map((b) => b[1] + b[3]));
  const { clientWidth: width, clientHeight: height } = app.canvasEl;
  const ds = app.canvas.ds;
  ds.scale = Math.floor(1000 * Math.min((width - 80) / (right - left), (height - 80) / (bottom - top))) / 1000;
  ds.offset[0] = Math.round((width / ds.scale - (right - left)) / 2 - left);
  ds.offset[1] = Math.round((height / ds.scale - (bottom - top)) / 2 - top);
  app.canvas.setDirty(true, true);
  await pause();
  const [x0, y0] = app.canvasPosToClientPos([left, top]);
  const [x1, y1] = app.canvasPosToClientPos([right, bottom]);
  return { workflow: JSON.stringify(app.graph.serialize()), boxes, clip: { x0, y0, x1, y1 } };
}"""


def make_regional_sample() -> None:
    """The sample picture with a transparent rectangle: its MASK selects the area the regional graph repaints."""
    image = Image.open(SAMPLE).convert("RGBA")
    width, height = image.size
    alpha = Image.new("L", image.size, 255)
    alpha.paste(0, (width // 8, height // 8, width // 2, height // 2))
    image.putalpha(alpha)
    image.save(REGIONAL_SAMPLE, optimize=True)


def check_against_object_info(name: str, graph: dict, object_info: dict) -> None:
    """Every node known to the server, every required input given, every link from an output of the right type."""
    for node_id, node in graph.items():
        where = f"{name} node {node_id} ({node['class_type']})"
        if node["class_type"] not in object_info:
            raise SystemExit(f"{where}: the server has no such node")
        info = object_info[node["class_type"]]
        declared = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        missing = set(info["input"].get("required", {})) - set(node["inputs"])
        unknown = set(node["inputs"]) - set(declared)
        if missing or unknown:
            raise SystemExit(f"{where}: missing inputs {sorted(missing)}, unknown inputs {sorted(unknown)}")
        for input_name, value in node["inputs"].items():
            if isinstance(value, list):
                source = graph[value[0]]["class_type"]
                output_type = object_info[source]["output"][value[1]]
                if output_type != declared[input_name][0]:
                    raise SystemExit(f"{where}: {input_name} wants {declared[input_name][0]}, gets {output_type}")


def overlapping(boxes: list[list[float]]) -> list[tuple[int, int]]:
    def meet(a, b):
        return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]

    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes)) if meet(boxes[i], boxes[j])]


def thumbnail(screenshot: bytes, path: Path) -> None:
    image = Image.open(io.BytesIO(screenshot)).convert("RGB")
    height = round(image.height * THUMBNAIL_WIDTH / image.width)
    image.resize((THUMBNAIL_WIDTH, height), Image.Resampling.LANCZOS).save(path, quality=85, optimize=True)


def example_png(output: Path, graph: dict, workflow: dict, path: Path) -> None:
    """The run's output PNG with its ``prompt`` and ``workflow`` chunks, as committed.

    The ``parameters`` chunk (A1111 text) is left out: ComfyUI's frontend (1.32.9) imports a dropped PNG that
    has one as an A1111 graph of core nodes instead of reading its ``workflow``. The prompt names the
    committed checkpoint, as the workflow does, rather than the demo model that ran.
    """
    image = Image.open(output)
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(graph))
    info.add_text("workflow", json.dumps(workflow))
    image.save(path, pnginfo=info, optimize=True)


def main() -> None:
    graphs = {
        path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted((EXAMPLES / "api").glob("*.json"))
    }
    make_regional_sample()
    host = host_harness.default_host()
    if not host.demo_checkpoint.exists():
        raise SystemExit(f"no ComfyUI host at {host.root}: run `python3 scripts/host.py build` first")
    with tempfile.TemporaryDirectory() as workdir, host_harness.Server(host, Path(workdir)) as server:
        for image in (EXAMPLES / "input").iterdir():
            if image.is_file():
                shutil.copy(image, server.input_dir / image.name)
        (server.input_dir / FOLDER).mkdir()
        shutil.copy(SAMPLE, server.input_dir / FOLDER / SAMPLE.name)
        for setting, value in SETTINGS.items():
            server.post_json(f"/api/settings/{setting}", value)
        object_info = server.get_json("/object_info")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(host_harness.CHROMIUM), headless=True, args=list(host_harness.CHROMIUM_ARGS)
            )
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.add_init_script("localStorage.setItem('vueNodesBannerDismissed', 'true')")
            page.goto(server.url)
            page.wait_for_function("window.app?.graph?.nodes.length > 0", timeout=120_000)
            page.evaluate("app.extensionManager.command.execute('Workspace.ToggleFocusMode')")
            for name, graph in graphs.items():
                check_against_object_info(name, graph, object_info)
                # clean() first: the frontend keeps the last run's previews by node id, and would show the
                # previous graph's pictures on this graph's nodes of the same ids.
                page.evaluate("([graph, name]) => { app.clean(); app.loadApiJson(graph, name); }", [graph, name])
                laid_out = page.evaluate(LAYOUT)
                if overlapping(laid_out["boxes"]):
                    raise SystemExit(f"{name}: nodes overlap after arranging: {overlapping(laid_out['boxes'])}")
                box, margin = laid_out["clip"], 40
                shot = page.screenshot(
                    clip={
                        "x": box["x0"] - margin,
                        "y": box["y0"] - margin,
                        "width": box["x1"] - box["x0"] + 2 * margin,
                        "height": box["y1"] - box["y0"] + 2 * margin,
                    }
                )
                workflow = json.loads(laid_out["workflow"])
                text = json.dumps(workflow, indent=1, ensure_ascii=False) + "\n"
                (EXAMPLES / f"{name}.json").write_text(text, encoding="utf-8")
                thumbnail(shot, EXAMPLES / f"{name}.jpg")

                prompt = json.loads(json.dumps(graph))
                for node in prompt.values():
                    if node["class_type"] == "CheckpointLoaderSimple":
                        node["inputs"]["ckpt_name"] = host_harness.DEMO_CHECKPOINT
                entry = server.wait(server.queue(prompt, {"extra_pnginfo": {"workflow": workflow}}))
                if entry["status"]["status_str"] != "success":
                    raise SystemExit(f"{name} failed on the server: {json.dumps(entry['status'], indent=1)}")
                if name in DRAG_IN_PNGS:
                    example_png(server.saved_paths(entry)[0], graph, workflow, EXAMPLES / f"{name}.png")
                print(f"example_workflows/{name}.json, .jpg: {len(workflow['nodes'])} nodes", flush=True)
            browser.close()


if __name__ == "__main__":
    main()
