// The plan line under the pack's samplers: which steps of the schedule will run, from which sigma,
// updated as the user changes steps, denoise, strength mode, scheduler or sampler. The server computes
// it (GET /img2img/plan), so the browser never re-implements a schedule; after a run the line shows
// the plan the node reported for its own model.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const PLAN_NODES = new Set(["Img2ImgKSampler", "Img2ImgNoiseAtStrength"]);
const PLAN_WIDGET = "img2img_plan";
const PLAN_INPUTS = ["steps", "denoise", "strength_mode", "scheduler", "sampler_name"];
const OPTIONAL_PLAN_INPUTS = ["end_at_step"]; // the sampler's only: where it stops for a second sampler
const DEBOUNCE_MS = 150;

function planWidget(node) {
  let widget = node.widgets?.find((w) => w.name === PLAN_WIDGET);
  if (!widget) {
    widget = ComfyWidgets.STRING(node, PLAN_WIDGET, ["STRING", { multiline: true }], app).widget;
    const element = widget.inputEl ?? widget.element;
    if (element) {
      element.readOnly = true;
      element.rows = 1;
      element.title = "What this sampler will run (img2img)";
    }
    widget.serialize = false;
    widget.options = { ...widget.options, serialize: false };
  }
  return widget;
}

async function refreshPlan(node) {
  const values = Object.fromEntries(
    PLAN_INPUTS.map((name) => [name, node.widgets?.find((w) => w.name === name)?.value]),
  );
  if (Object.values(values).some((value) => value === undefined)) return;
  for (const name of OPTIONAL_PLAN_INPUTS) {
    const value = node.widgets?.find((w) => w.name === name)?.value;
    if (value !== undefined) values[name] = value;
  }
  const request = (node.img2imgPlanRequest = (node.img2imgPlanRequest ?? 0) + 1);
  try {
    const response = await api.fetchApi(`/img2img/plan?${new URLSearchParams(values)}`);
    const answer = await response.json();
    if (request !== node.img2imgPlanRequest) return; // a newer change is on its way
    planWidget(node).value = response.ok ? answer.text : `⚠ ${answer.error}`;
    node.setDirtyCanvas(true, true);
  } catch (error) {
    console.warn("img2img: no plan from the server", error);
  }
}

function watchPlanInputs(node) {
  let timer;
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(() => refreshPlan(node), DEBOUNCE_MS);
  };
  for (const widget of node.widgets ?? []) {
    if (!PLAN_INPUTS.includes(widget.name) && !OPTIONAL_PLAN_INPUTS.includes(widget.name)) continue;
    const callback = widget.callback;
    widget.callback = function () {
      const result = callback?.apply(this, arguments);
      schedule();
      return result;
    };
  }
  planWidget(node);
  schedule();
}

app.registerExtension({
  name: "comfyui-img2img.planLine",
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (!PLAN_NODES.has(nodeData.name)) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      watchPlanInputs(this);
      return result;
    };
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      refreshPlan(this); // widget values loaded from a workflow
      return result;
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = message?.text?.[0];
      if (text) {
        planWidget(this).value = text;
        this.setDirtyCanvas(true, true);
      }
    };
  },
});
