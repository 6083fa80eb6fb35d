"""Img2ImgCrop and Img2ImgStitch: one region of a big picture changed at the model's own size, and put back."""

from __future__ import annotations

from .core.crop_stitch import REGION_MODES, CropBox, CropOptions, crop_regions
from .core.crop_stitch import stitch as stitch_crops
from .core.fit import RESAMPLE_METHODS

STITCH_TYPE = "IMG2IMG_STITCH"
_MAX_NOTE_LINES = 12


def _side_input(name: str) -> tuple:
    return (
        "INT",
        {
            "default": 512,
            "min": 64,
            "max": 8192,
            "step": 8,
            "tooltip": f"The crop's {name} in pixels (a multiple of 8): the size the model works best at.",
        },
    )


# The crop node's inputs: the picture and mask, the target size, the context, the blend, the mask's clean-up.
CROP_INPUTS = {
    "image": ("IMAGE", {"tooltip": "The picture, or a batch of frames."}),
    "mask": ("MASK", {
        "tooltip": "Where to change: its non-zero pixels. One mask, or one per frame; another size is resized as "
                   "core resizes a mask (bilinear).",
    }),
    "target_width": _side_input("width"),
    "target_height": _side_input("height"),
    "context_factor": ("FLOAT", {
        "default": 1.2, "min": 1.0, "max": 10.0, "step": 0.05,
        "tooltip": "Context around the region as a factor of its bounding box's sides (1: none).",
    }),
    "context_pixels": ("INT", {
        "default": 16, "min": 0, "max": 4096,
        "tooltip": "Context in pixels added on each side, after the factor.",
    }),
    "blend": ("INT", {
        "default": 16, "min": 0, "max": 256,
        "tooltip": "Pixels outside the mask over which the stitch fades the change out. Every pixel farther from "
                   "the mask is the input's, bit for bit.",
    }),
    "grow": ("INT", {"default": 0, "min": 0, "max": 256, "tooltip": "Grow the mask by this many pixels first."}),
    "fill_holes": ("BOOLEAN", {
        "default": True, "tooltip": "Fill holes in the mask (areas it encloses) before cropping.",
    }),
    "regions": (list(REGION_MODES), {
        "default": "separate",
        "tooltip": "separate: one crop per region of the mask (regions closer than twice the blend are one). "
                   "together: one crop around all of them.",
    }),
    "method": (list(RESAMPLE_METHODS), {
        "default": "lanczos", "tooltip": "How crops are scaled to the target and back.",
    }),
}  # fmt: skip


def _box_line(box: CropBox) -> str:
    padded = " (edge-padded to the aspect)" if any(box.pad) else ""
    return f"frame {box.frame}: box {box.width}×{box.height} at ({box.left}, {box.top}){padded}"


class Img2ImgCrop:
    DESCRIPTION = (
        "Cuts each region of the mask out of the picture with some context around it, scaled to the size the "
        "model works best at, for img2img or inpainting; Stitch (img2img) puts the edited crops back. Several "
        "separate regions give one crop each, as a batch; frames of a batch get boxes that follow the mask smoothly."
    )
    CATEGORY = "img2img"
    FUNCTION = "crop"
    RETURN_TYPES = ("IMAGE", "MASK", STITCH_TYPE)
    RETURN_NAMES = ("crops", "masks", "stitch")
    OUTPUT_TOOLTIPS = (
        "One crop per region (frame by frame, regions top to bottom, then left to right), at the target size.",
        "Each crop's region mask (0..1): the sampler's strength_map, the decoder's strength_map, or a noise mask.",
        "What Stitch (img2img) needs to put the edited crops back: connect it there.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": CROP_INPUTS}

    def crop(
        self, image, mask, target_width, target_height, context_factor, context_pixels, blend, grow, fill_holes,
        regions, method,
    ):  # fmt: skip
        options = CropOptions(
            target_width, target_height, context_factor, context_pixels, blend, grow, fill_holes, regions, method
        )
        crops, masks, record = crop_regions(image, mask, options)
        lines = [f"{len(record.boxes)} crop(s) of {target_width}×{target_height}"]
        lines += [_box_line(box) for box in record.boxes if not box.empty][:_MAX_NOTE_LINES]
        lines += list(record.notes)
        return {"ui": {"text": ["\n".join(lines)]}, "result": (crops, masks, record)}


class Img2ImgStitch:
    DESCRIPTION = (
        "Puts the edited crops of Crop for Stitch (img2img) back into the picture: each crop's change is scaled to "
        "its box and blended in, fading out over the blend width outside the mask. Every other pixel is the "
        "input's, bit for bit; without an edit the picture comes back exactly."
    )
    CATEGORY = "img2img"
    FUNCTION = "stitch"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The whole picture (or every frame) with the edited regions in.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "stitch": (STITCH_TYPE, {"tooltip": "The record from Crop for Stitch (img2img)."}),
                "crops": (
                    "IMAGE",
                    {"tooltip": "The edited crops, one per crop in the crop node's order (another size is scaled)."},
                ),
                "color_correction": (
                    "BOOLEAN",
                    {
                        "default": False,
                        "tooltip": "Shift each edited crop's colours (CIELAB) so that they meet the original's "
                        "around the region: against a colour or tone seam.",
                    },
                ),
            }
        }

    def stitch(self, stitch, crops, color_correction):
        images, figures, plain = stitch_crops(stitch, crops, color_correction)
        lines = []
        if figures:
            mean = 255 * sum(figures) / len(figures)
            line = f"blend ring: channel means {mean:.2f}/255 from the input"
            if color_correction:
                line += f" (colour corrected; {255 * sum(plain) / len(plain):.2f}/255 without)"
            lines.append(line)
        lines += [note for note in stitch.notes if note.startswith("no mask region")]
        return {"ui": {"text": ["\n".join(lines)]}, "result": (images,)}
