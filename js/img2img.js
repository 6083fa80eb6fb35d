// The plan line under the pack's samplers: which steps of the schedule will run, from which sigma,
// updated as the user changes steps, denoise, strength mode, scheduler or sampler. The server computes
// it (GET /img2img/plan), so the browser never re-implements a schedule; after a run the line shows
// the plan the node reported for its own model.
//
// Built on the frontend's extension API only: the nodeCreated and loadedGraphNode hooks, the api's
// "executed" event and node.addDOMWidget. No node prototype is wrapped and scripts/widgets.js is not
// imported. Tested on comfyui-frontend-package 1.32.9 (ComfyUI 0.3.75's pin) and 1.58.1.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const PLAN_NODES = new Set(["Img2ImgKSampler", "Img2ImgNoiseAtStrength"]);
const PLAN_WIDGET = "img2img_plan";
const PLAN_INPUTS = ["steps", "denoise", "strength_mode", "scheduler", "sampler_name"];
const OPTIONAL_PLAN_INPUTS = ["end_at_step"]; // the sampler's only: where it stops for a second sampler
const DEBOUNCE_MS = 150;

// Nodes whose run reports a note in the same read-only box: what crop and stitch did (frames without a mask
// region, passed through unchanged; the blend ring's colour difference).
const NOTE_NODES = new Set(["Img2ImgCrop", "Img2ImgStitch"]);

const isPlanNode = (node) => PLAN_NODES.has(node?.comfyClass ?? node?.type);
const isNoteNode = (node) => NOTE_NODES.has(node?.comfyClass ?? node?.type);
const widgetValue = (node, name) => node.widgets?.find((w) => w.name === name)?.value;

function planWidget(node) {
  let widget = node.widgets?.find((w) => w.name === PLAN_WIDGET);
  if (widget) return widget;
  const element = document.createElement("textarea");
  element.readOnly = true;
  element.rows = isPlanNode(node) ? 1 : 3;
  element.title = isPlanNode(node) ? "What this sampler will run (img2img)" : "What this node did (img2img)";
  element.className = "comfy-multiline-input img2img-plan";
  element.style.resize = "none";
  widget = node.addDOMWidget(PLAN_WIDGET, "img2img_plan", element, {
    getValue: () => element.value,
    setValue: (value) => {
      element.value = value ?? "";
    },
    getMinHeight: () => 32,
    serialize: false, // not an input of the node: neither in the prompt nor in widgets_values
  });
  widget.serialize = false;
  return widget;
}

function showPlan(node, text) {
  planWidget(node).value = text;
  node.setDirtyCanvas?.(true, true);
}

async function refreshPlan(node) {
  const values = Object.fromEntries(PLAN_INPUTS.map((name) => [name, widgetValue(node, name)]));
  if (Object.values(values).some((value) => value === undefined)) return;
  for (const name of OPTIONAL_PLAN_INPUTS) {
    const value = widgetValue(node, name);
    if (value !== undefined) values[name] = value;
  }
  const request = (node.img2imgPlanRequest = (node.img2imgPlanRequest ?? 0) + 1);
  try {
    const response = await api.fetchApi(`/img2img/plan?${new URLSearchParams(values)}`);
    const answer = await response.json();
    if (request !== node.img2imgPlanRequest) return; // a newer change is on its way
    showPlan(node, response.ok ? answer.text : `⚠ ${answer.error}`);
  } catch (error) {
    console.warn("img2img: no plan from the server", error);
  }
}

function schedulePlan(node) {
  clearTimeout(node.img2imgPlanTimer);
  node.img2imgPlanTimer = setTimeout(() => refreshPlan(node), DEBOUNCE_MS);
}

// A widget's callback runs when the user changes its value (canvas, prompt dialog or the Vue node's
// control); this node's own widgets are chained, the node type is left alone.
function watchPlanInputs(node) {
  for (const widget of node.widgets ?? []) {
    if (!PLAN_INPUTS.includes(widget.name) && !OPTIONAL_PLAN_INPUTS.includes(widget.name)) continue;
    if (widget.img2imgWatched) continue;
    widget.img2imgWatched = true;
    const callback = widget.callback;
    widget.callback = function (...args) {
      const result = callback?.apply(this, args);
      schedulePlan(node);
      return result;
    };
  }
}

// After a run the node reports the plan it ran for its own model ({"text": [line]} in its UI output), or its note.
api.addEventListener("executed", ({ detail }) => {
  const text = detail?.output?.text?.[0];
  const id = detail?.display_node ?? detail?.node;
  if (!text || id === undefined) return;
  const node = app.graph?.getNodeById(Number.isNaN(Number(id)) ? id : Number(id));
  if (isPlanNode(node) || isNoteNode(node)) showPlan(node, text);
});

app.registerExtension({
  name: "comfyui-img2img.planLine",
  nodeCreated(node) {
    if (!isPlanNode(node)) return;
    planWidget(node);
    watchPlanInputs(node);
    schedulePlan(node); // the defaults of a node added by hand
  },
  loadedGraphNode(node) {
    if (!isPlanNode(node)) return;
    watchPlanInputs(node);
    schedulePlan(node); // widget values loaded from a workflow
  },
});
