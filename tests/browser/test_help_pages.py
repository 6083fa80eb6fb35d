"""Each node's help page (js/docs/<node id>.md), served by a real server and shown in the frontend's node help.

Where the frontend looks (ComfyUI_frontend, src/services/nodeHelpService.ts; the same in the built 1.32.9 and
1.58.1): for a node whose python_module is custom_nodes.<folder>, it fetches
/extensions/<folder>/docs/<node id>/<locale>.md, then /extensions/<folder>/docs/<node id>.md, and shows the
first that answers with something other than HTML. ComfyUI serves the pack's WEB_DIRECTORY (js/) under
/extensions/<folder>/, so js/docs/<node id>.md is the page for every locale.

How a user opens it: select the node and press Node Info (ⓘ) in the selection toolbox. On 1.32.9 that opens
the node library's help page in the left sidebar; on 1.58.1 the properties panel's Info tab on the right. On
1.32.9 the node library also has a help button (?) beside each node.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import Page, expect

from pack_under_test import PACK_ROOT

HELP_PAGES = PACK_ROOT / "js" / "docs"
ARTIFACTS = PACK_ROOT / "test-artifacts"
NODE = "Img2ImgKSampler"
# Where each frontend renders the page: both wrap the markdown in this element.
HELP_CONTENT = ".node-help-content"
OLD_FRONTEND = "1.32.9"


def pack_nodes(server) -> dict[str, str]:
    """The pack's nodes as the server registered them: node id → the folder its python_module names."""
    info = server.get_json("/object_info")
    return {
        node: spec["python_module"].split(".")[1]
        for node, spec in info.items()
        if spec.get("python_module", "").split(".")[:2] == ["custom_nodes", "comfyui-img2img"]
    }


def page_text(node: str) -> tuple[str, str]:
    """The page's title and its first paragraph as the rendered page reads (markup taken out)."""
    blocks = (HELP_PAGES / f"{node}.md").read_text(encoding="utf-8").split("\n\n")
    title = blocks[0].removeprefix("# ").strip()
    paragraph = next(block for block in blocks[1:] if not block.startswith(("`", "#", "|", "-")))
    return title, " ".join(re.sub(r"\*\*|`", "", paragraph).split())


def test_every_node_has_its_help_page_served(ui_server):
    nodes = pack_nodes(ui_server)
    assert len(nodes) >= 11, sorted(nodes)
    unserved = []
    for node, folder in nodes.items():
        try:
            with urllib.request.urlopen(f"{ui_server.url}/extensions/{folder}/docs/{node}.md", timeout=30) as answer:
                body, kind = answer.read(), answer.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            unserved.append(f"{node}: {error.code}")
            continue
        assert body and "text/html" not in kind, (node, kind)  # the frontend takes HTML for a missing page
        assert body == (HELP_PAGES / f"{node}.md").read_bytes(), node
    assert not unserved, f"no help page served (add js/docs/<node id>.md, docs/development.md): {unserved}"


def select_node(page: Page, node_type: str) -> None:
    """Clicks the node's title bar on the canvas, after panning the view to it, as a user selects it."""
    x, y = page.evaluate(
        """type => {
            const node = app.graph.nodes.find((n) => n.type === type);
            app.canvas.centerOnNode(node);
            app.canvas.setDirty(true, true);
            return app.canvasPosToClientPos([node.pos[0] + 40, node.pos[1] - LiteGraph.NODE_TITLE_HEIGHT / 2]);
        }""",
        node_type,
    )
    page.mouse.click(x, y)
    page.wait_for_function(
        "type => Object.values(app.canvas.selected_nodes).map((n) => n.type).join() === type", arg=node_type
    )


def open_the_example(page: Page) -> None:
    """Opens the img2img template as the template browser does."""
    page.evaluate(
        """async () => {
            const url = "api/workflow_templates/comfyui-img2img/img2img";
            await app.loadGraphData(await (await fetch(`${url}.json`)).json(), true, true, "img2img");
        }"""
    )


def expect_the_page(page: Page, node: str, screenshot: str) -> None:
    title, paragraph = page_text(node)
    panel = page.locator(HELP_CONTENT)
    expect(panel.get_by_role("heading", name=title, exact=True)).to_be_visible(timeout=20_000)
    expect(panel).to_contain_text(paragraph)
    inputs = panel.get_by_role("heading", name="Inputs", exact=True)
    expect(inputs).to_be_attached()
    expect(panel.get_by_role("listitem").filter(has=page.locator("code", has_text="latent_image"))).to_have_count(1)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{screenshot}.png")
    inputs.scroll_into_view_if_needed()  # and the list of inputs, for a person to see how it renders
    page.screenshot(path=ARTIFACTS / f"{screenshot}-inputs.png")


def test_node_info_shows_the_help_page(page, frontend):
    """Select the sampler on the canvas, press Node Info: the panel shows js/docs/Img2ImgKSampler.md."""
    fetched = []
    page.on("request", lambda request: "/docs/" in request.url and fetched.append(request.url))
    open_the_example(page)
    select_node(page, NODE)

    page.get_by_test_id("info-button").click()

    expect_the_page(page, NODE, f"help-panel-frontend-{frontend}")
    assert any(url.endswith(f"/extensions/comfyui-img2img/docs/{NODE}.md") for url in fetched), fetched


def test_the_node_library_help_button_shows_the_help_page(page, frontend):
    if frontend != OLD_FRONTEND:
        pytest.skip(
            f"frontend {frontend}'s node library has no help button: its default design "
            "(setting Comfy.NodeLibrary.NewDesign, on by default) gives a node only a bookmark button and a "
            "hover preview of its description; the page is in the properties panel's Info tab (TabInfo → "
            "NodeHelpContent), which the Node Info test opens"
        )
    page.get_by_role("button", name="Node Library (n)").click()
    page.locator(".node-lib-search-box input").fill("KSampler (img2img)")
    entry = page.get_by_role("treeitem", name="KSampler (img2img)")
    entry.hover()

    entry.locator(".help-button").click()

    expect_the_page(page, NODE, f"help-node-library-frontend-{frontend}")
