// Shows the plan of the last run (which steps ran, from which sigma) under the pack's samplers.
// The text comes from the node's own output: the browser never computes a schedule.
import { app } from "../../scripts/app.js";

const PLAN_NODES = new Set(["Img2ImgKSampler", "Img2ImgNoiseAtStrength"]);
const PLAN_WIDGET = "img2img_plan";

app.registerExtension({
  name: "comfyui-img2img.planLine",
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (!PLAN_NODES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = message?.text?.[0];
      if (!text) return;
      let widget = this.widgets?.find((w) => w.name === PLAN_WIDGET);
      if (!widget) {
        widget = this.addWidget("text", PLAN_WIDGET, "", () => {}, { serialize: false });
        widget.serialize = false;
        widget.disabled = true;
      }
      widget.value = text;
      this.setDirtyCanvas(true, true);
    };
  },
});
