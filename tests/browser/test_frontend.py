"""The example workflows and the pack's nodes in ComfyUI's real frontend, driven as a user would."""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.parse
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from pack_under_test import GRAPH_NODE_IDS, PACK_ROOT

EXAMPLES = PACK_ROOT / "example_workflows"
EXAMPLE_PNG = EXAMPLES / "img2img.png"
ARTIFACTS = PACK_ROOT / "test-artifacts"
# How the frontend reports node types it does not know: 1.32.9 opens a global dialog labelled by its key,
# 1.58.1 shows "Missing node: <type>" in its error overlay over the canvas.
MISSING_NODES_DIALOG = (
    '.global-dialog[aria-labelledby="global-missing-nodes"], [data-testid="error-overlay"]:has-text("Missing node")'
)
PLAN_INPUTS = ("steps", "denoise", "strength_mode", "scheduler", "sampler_name")
# Node ids in example_workflows/img2img.json (those of api/img2img.json).
CHECKPOINT_LOADER, KSAMPLER, SAVE = 1, 7, 9


def drop_file(page: Page, path: Path) -> None:
    """Drops a file onto the canvas as the browser does for one dragged from the desktop; returns once loaded."""
    transfer = page.evaluate_handle(
        """([data, name]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
            return transfer;
        }""",
        [base64.b64encode(path.read_bytes()).decode(), path.name],
    )
    canvas = page.locator("#graph-canvas")
    for event in ("dragenter", "dragover", "drop"):
        canvas.dispatch_event(event, {"dataTransfer": transfer})
    # The drop handler shows the spinner until the file is loaded, which ends by opening it as a (temporary)
    # workflow named after the file. The spinner's page-wide mask fades out after that and takes clicks
    # until it is removed: longer on a slow machine.
    page.wait_for_function(
        "name => app.extensionManager.workflow.activeWorkflow?.path.startsWith(`workflows/${name}`)"
        " && !app.extensionManager.spinner && !document.querySelector('.p-blockui-mask')",
        arg=path.stem,
    )
    # Dialogs opened during the load are rendered two frames later.
    page.evaluate("new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")


def node_types(page: Page) -> list[str]:
    return page.evaluate("app.graph.nodes.map((node) => node.type)")


def widget_value(page: Page, node_id: int, widget: str):
    return page.evaluate(
        "([id, name]) => app.graph.getNodeById(id).widgets?.find((w) => w.name === name)?.value", [node_id, widget]
    )


def wait_for_widget_value(page: Page, node_id: int, widget: str, expected, timeout: float = 20_000):
    """The widget's value once it equals ``expected``, or what it holds when the time is up."""
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(
            "([id, name, expected]) => app.graph.getNodeById(id).widgets?.find((w) => w.name === name)?.value"
            " === expected",
            arg=[node_id, widget, expected],
            timeout=timeout,
        )
    return widget_value(page, node_id, widget)


def center_on(page: Page, node_id: int) -> None:
    """Pans the view to put a node in the middle of the canvas, as a user would to look at it."""
    page.evaluate(
        "id => { app.canvas.centerOnNode(app.graph.getNodeById(id)); app.canvas.setDirty(true, true); }", node_id
    )


def click_widget(page: Page, node_id: int, widget: str) -> None:
    """Clicks the middle of a widget drawn on the canvas, after panning the view to its node."""
    center_on(page, node_id)
    x, y = page.evaluate(
        """([id, name]) => {
            const node = app.graph.getNodeById(id);
            const widget = node.widgets.find((w) => w.name === name);
            const height = widget.computedHeight ?? LiteGraph.NODE_WIDGET_HEIGHT;
            return app.canvasPosToClientPos([node.pos[0] + node.size[0] / 2, node.pos[1] + widget.y + height / 2]);
        }""",
        [node_id, widget],
    )
    on_top = page.evaluate(
        """([x, y]) => {
            const element = document.elementFromPoint(x, y);
            return element?.id === "graph-canvas" ? null : element?.outerHTML.slice(0, 300) ?? "nothing";
        }""",
        [x, y],
    )
    assert on_top is None, f"{widget} of node {node_id} is covered at ({x:.0f}, {y:.0f}) by {on_top}"
    page.mouse.click(x, y)


def pick_combo(page: Page, node_id: int, widget: str, value: str) -> None:
    """Opens a combo widget's menu on the canvas and clicks the entry."""
    click_widget(page, node_id, widget)
    page.locator(".litecontextmenu .litemenu-entry", has_text=value).click()


def type_number(page: Page, node_id: int, widget: str, value: float) -> None:
    """Clicks a number widget's value, types into the frontend's value prompt and presses Enter."""
    click_widget(page, node_id, widget)
    field = page.locator(".graphdialog input.value")
    field.fill(str(value))
    field.press("Enter")


def run_button(page: Page):
    """The Run button: 1.32.9 gives the test id "queue-button" to the group it sits in, 1.58.1 to the button."""
    queue = page.get_by_test_id("queue-button")
    return queue.get_by_role("button", name="Run", exact=True).or_(queue.and_(page.get_by_role("button", name="Run")))


def route_plan(server, page: Page, node_id: int) -> str:
    """What the pack's route answers for the node's current settings."""
    query = urllib.parse.urlencode({name: widget_value(page, node_id, name) for name in PLAN_INPUTS})
    return server.get_json(f"/img2img/plan?{query}")["text"]


def test_dropped_png_rebuilds_the_graph_with_the_pack_nodes(page):
    drop_file(page, EXAMPLE_PNG)

    # Loaded means ready for the user's clicks: the loading spinner's mask is gone from over the canvas.
    assert page.evaluate("document.elementFromPoint(innerWidth / 2, innerHeight / 2)?.id") == "graph-canvas"

    types = node_types(page)
    assert set(types) >= GRAPH_NODE_IDS, f"pack nodes missing from the dropped graph: {GRAPH_NODE_IDS - set(types)}"
    assert sorted(types) == sorted([*GRAPH_NODE_IDS, "CheckpointLoaderSimple", "CLIPTextEncode", "CLIPTextEncode"])
    assert page.locator(MISSING_NODES_DIALOG).count() == 0


def test_missing_nodes_dialog_is_what_the_drop_test_looks_for(page, tmp_path):
    """The control for the test above: a graph with an unknown node type does show that dialog."""
    image = Image.open(EXAMPLE_PNG)
    workflow = json.loads(image.text["workflow"])
    workflow["nodes"][0]["type"] = "Img2ImgNoSuchNode"
    info = PngImagePlugin.PngInfo()
    info.add_text("workflow", json.dumps(workflow))
    broken = tmp_path / "img2img.png"
    image.save(broken, pnginfo=info)

    drop_file(page, broken)

    # Checked at once, as the drop test checks its absence.
    assert page.locator(MISSING_NODES_DIALOG).count() == 1
    assert "Img2ImgNoSuchNode" in page.locator(MISSING_NODES_DIALOG).inner_text()


@pytest.fixture(scope="module")
def run_from_the_ui(open_app, ui_server):
    """Drops the example PNG, picks the test checkpoint in the loader's menu and presses Run.

    Answers the page once the save node shows an image, or when the time is up (the tests say which).
    """
    page = open_app()
    drop_file(page, EXAMPLE_PNG)
    checkpoint = ui_server.host.checkpoint.name
    pick_combo(page, CHECKPOINT_LOADER, "ckpt_name", checkpoint)
    center_on(page, SAVE)  # the frontend loads a node's images when it draws the node
    run_button(page).click()
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(
            "id => app.graph.getNodeById(id).imgs?.some((image) => image.complete && image.naturalWidth > 0)",
            arg=SAVE,
            timeout=240_000,
        )
    return page


def test_run_button_shows_the_output_and_saves_it(run_from_the_ui, ui_server):
    page = run_from_the_ui
    assert widget_value(page, CHECKPOINT_LOADER, "ckpt_name") == ui_server.host.checkpoint.name

    shown = page.evaluate(
        """id => ({
            outputs: app.nodeOutputs[String(id)]?.images ?? [],
            previews: (app.graph.getNodeById(id).imgs ?? []).map((image) => [image.src, image.naturalWidth]),
            error: app.lastExecutionError,
        })""",
        SAVE,
    )
    assert shown["outputs"], f"no output on the save node; execution error: {shown['error']}"
    image = shown["outputs"][0]
    assert image["type"] == "output"
    saved = ui_server.output_dir / image["subfolder"] / image["filename"]
    assert saved.is_file() and saved.stat().st_size > 0
    with Image.open(saved) as output:
        assert output.size == (128, 128)  # the sample picture's size
    # The node's preview is that file, loaded from the server.
    src, width = shown["previews"][0]
    assert urllib.parse.parse_qs(urllib.parse.urlparse(src).query)["filename"] == [image["filename"]]
    assert width == 128


def test_screenshot_after_the_run_shows_the_saved_image_and_the_plan_line(run_from_the_ui, ui_server):
    """Keeps test-artifacts/browser-after-run.png for a person to look at, and checks what it shows as the page
    has it at that moment: the pack's plan line under the sampler, and the save node on screen with its preview."""
    page = run_from_the_ui
    # After a run the line is the executed plan: the route's line for these settings, and what the run continued.
    assert widget_value(page, KSAMPLER, "img2img_plan").startswith(route_plan(ui_server, page, KSAMPLER))
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "browser-after-run.png"
    path.unlink(missing_ok=True)

    shown = page.evaluate(
        """id => {
            const node = app.graph.getNodeById(id);
            const {offset, scale} = app.canvas.ds;
            const canvas = app.canvas.canvas.getBoundingClientRect();
            return {
                previews: (node.imgs ?? []).filter((image) => image.complete).map((image) => image.naturalWidth),
                left: (node.pos[0] + offset[0]) * scale,
                top: (node.pos[1] + offset[1]) * scale,
                right: (node.pos[0] + node.size[0] + offset[0]) * scale,
                bottom: (node.pos[1] + node.size[1] + offset[1]) * scale,
                width: canvas.width,
                height: canvas.height,
            };
        }""",
        SAVE,
    )
    run_from_the_ui.screenshot(path=path)

    assert shown["previews"] == [128], "the save node shows no loaded preview of the output"
    assert 0 <= shown["left"] < shown["right"] <= shown["width"], shown
    assert 0 <= shown["top"] < shown["bottom"] <= shown["height"], shown
    with Image.open(path) as shot:
        assert shot.format == "PNG" and shot.size == (1280, 800)


def test_plan_line_follows_denoise(page, ui_server):
    drop_file(page, EXAMPLE_PNG)
    assert widget_value(page, KSAMPLER, "steps") == 20
    assert widget_value(page, KSAMPLER, "strength_mode") == "steps_x_denoise"
    # The line for the loaded settings first (denoise 0.6), so that a change below is a change.
    loaded = route_plan(ui_server, page, KSAMPLER)
    assert wait_for_widget_value(page, KSAMPLER, "img2img_plan", loaded) == loaded

    type_number(page, KSAMPLER, "denoise", 0.5)

    assert widget_value(page, KSAMPLER, "denoise") == 0.5
    expected = route_plan(ui_server, page, KSAMPLER)
    assert expected != loaded
    assert "steps 11–20 of 20" in expected and "10 model steps" in expected
    assert wait_for_widget_value(page, KSAMPLER, "img2img_plan", expected) == expected


API_GRAPHS = sorted(path.stem for path in (EXAMPLES / "api").glob("*.json"))


def test_templates_are_the_api_graphs(ui_server):
    """ComfyUI serves every top-level JSON in example_workflows/ as a template: exactly one per API graph."""
    assert sorted(ui_server.get_json("/api/workflow_templates").get("comfyui-img2img", [])) == API_GRAPHS


@pytest.mark.parametrize("name", API_GRAPHS)
def test_template_is_its_api_graph(page, ui_server, name):
    """Each template loads as the template browser loads it, without overlapping nodes, and queues as exactly
    its API-format graph in example_workflows/api/ (run scripts/make_example_workflows.py when this fails)."""
    loaded = page.evaluate(
        """async (name) => {
            const url = `api/workflow_templates/comfyui-img2img/${name}`;
            const thumbnail = await fetch(`${url}.jpg`);
            await app.loadGraphData(await (await fetch(`${url}.json`)).json(), true, true, name);
            return {
                thumbnail: [thumbnail.status, thumbnail.headers.get("content-type")],
                boxes: app.graph.nodes.map((node) => [...node.boundingRect]),
                prompt: (await app.graphToPrompt()).output,
            };
        }""",
        name,
    )
    assert loaded["thumbnail"] == [200, "image/jpeg"]
    boxes = loaded["boxes"]
    overlaps = [
        (i, j)
        for i, a in enumerate(boxes)
        for j, b in enumerate(boxes[:i])
        if a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
    ]
    assert overlaps == []
    api = json.loads((EXAMPLES / "api" / f"{name}.json").read_text())
    prompt = {
        node_id: {"class_type": n["class_type"], "inputs": n["inputs"]} for node_id, n in loaded["prompt"].items()
    }
    assert prompt == api


def test_plan_line_shows_where_the_sampler_stops(page, ui_server):
    drop_file(page, EXAMPLE_PNG)
    type_number(page, KSAMPLER, "end_at_step", 16)

    assert widget_value(page, KSAMPLER, "end_at_step") == 16
    query = urllib.parse.urlencode({name: widget_value(page, KSAMPLER, name) for name in (*PLAN_INPUTS, "end_at_step")})
    expected = ui_server.get_json(f"/img2img/plan?{query}")["text"]
    assert "steps 9–16 of 20" in expected and "stops with leftover noise" in expected
    assert wait_for_widget_value(page, KSAMPLER, "img2img_plan", expected) == expected


def test_crop_and_stitch_show_their_note_under_the_node(page):
    """Crop and stitch report a note after a run (frames without a mask region, the blend ring's figure): the
    extension shows it in the plan line's read-only box. The "executed" event is dispatched as the server's
    message makes the frontend dispatch it."""
    shown = page.evaluate(
        """async () => {
            const { api } = await import("/scripts/api.js");
            const shown = {};
            for (const type of ["Img2ImgCrop", "Img2ImgStitch"]) {
                const node = LiteGraph.createNode(type);
                app.graph.add(node);
                const output = { text: [`${type}: no mask region in frame 0: it passes through unchanged`] };
                api.dispatchEvent(new CustomEvent("executed", { detail: { node: String(node.id), output } }));
                shown[type] = node.widgets.find((w) => w.name === "img2img_plan")?.value;
            }
            return shown;
        }"""
    )
    assert shown == {
        node: f"{node}: no mask region in frame 0: it passes through unchanged"
        for node in ("Img2ImgCrop", "Img2ImgStitch")
    }
