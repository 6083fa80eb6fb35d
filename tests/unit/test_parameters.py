import copy
import json

import pytest

from a1111_infotext import read_infotext
from comfyui_img2img.nodes.core.parameters import SAMPLER_NAMES, SCHEDULE_TYPES, format_parameters, parse_parameters
from comfyui_img2img.nodes.core.prompt_graph import parameters_from_prompt
from pack_under_test import PACK_ROOT

# ---- format_parameters / parse_parameters ----

FULL = {
    "Prompt": "a watercolor, of hills: at sunset\nsecond line, (detailed:1.2)",
    "Negative prompt": "blurry, low quality\nugly: yes",
    "Steps": 20,
    "Sampler": "DPM++ 2M",
    "Schedule type": "Karras",
    "CFG scale": 7.5,
    "Seed": 42,
    "Size": "512x768",
    "Model": "sd_xl: base, v1",
    "Denoising strength": 0.6,
}


def test_format_writes_prompt_negative_and_the_values_line_as_a1111():
    text = format_parameters(FULL)
    prompt, negative, values = read_infotext(text)
    assert prompt == FULL["Prompt"]
    assert negative == FULL["Negative prompt"]
    assert values == {
        "Steps": "20",
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "CFG scale": "7.5",
        "Seed": "42",
        "Size": "512x768",
        "Model": "sd_xl: base, v1",
        "Denoising strength": "0.6",
    }
    assert text.splitlines()[-1] == (
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 42, Size: 512x768, "
        'Model: "sd_xl: base, v1", Denoising strength: 0.6'
    )


def test_no_negative_prompt_means_no_negative_line():
    params = {"Prompt": "a cat", "Steps": 4, "Seed": 1, "Size": "64x64"}
    text = format_parameters(params)
    assert text == "a cat\nSteps: 4, Seed: 1, Size: 64x64"
    assert read_infotext(text) == ("a cat", None, {"Steps": "4", "Seed": "1", "Size": "64x64"})
    assert "Negative prompt" not in parse_parameters(text)
    assert "Negative prompt" not in format_parameters({**params, "Negative prompt": ""})


@pytest.mark.parametrize(
    "value",
    ['say "hi"', "two\nlines", " padded ", "a, b", "k: v", '"quoted"', "back\\slash, here", "ünïcode: 日本"],
)
def test_awkward_values_are_json_quoted_and_read_back(value):
    text = format_parameters({"Prompt": "p", "Steps": 1, "Model": value, "Seed": 2})
    last = text.splitlines()[-1]
    assert f"Model: {json.dumps(value, ensure_ascii=False)}," in last
    assert read_infotext(text)[2]["Model"] == value
    assert parse_parameters(text)["Model"] == value


def test_numbers_are_written_plainly_and_none_is_left_out():
    text = format_parameters(
        {
            "Steps": 30,
            "CFG scale": 7.0,
            "Denoising strength": 0.6000000000000001,
            "Seed": float(2**60),
            "Shift": 1234567.5,
            "VAE": None,
        }
    )
    assert text == "Steps: 30, CFG scale: 7, Denoising strength: 0.6, Seed: 1152921504606846976, Shift: 1234567.5"


@pytest.mark.parametrize("key", ["X", "Bad:key", "Comma, key", "Trailing ", "new\nline", 3])
def test_keys_a1111_cannot_read_are_refused(key):
    with pytest.raises(ValueError, match="params"):
        format_parameters({"Steps": 1, key: "v"})


ROUND_TRIPS = [
    {k: str(v) for k, v in FULL.items()},
    {"Prompt": "only a prompt, with: colons", "Steps": "12", "Sampler": "Euler a", "Seed": "3"},
    {"Prompt": "", "Negative prompt": "nothing wanted", "Steps": "5", "CFG scale": "1", "Seed": "0"},
    {"Prompt": "  indented first line\n\nafter an empty line", "Steps": "8", "Size": "8x8", "Seed": "9"},
    {"Prompt": "emoji 🎨 and 日本語", "Negative prompt": " leading space", "Steps": "1", "Model": 'a"b', "Seed": "1"},
]


@pytest.mark.parametrize("params", ROUND_TRIPS)
def test_parse_reads_back_what_format_wrote(params):
    assert parse_parameters(format_parameters(params)) == params


def test_parse_reads_an_a1111_text_and_formats_it_back_unchanged():
    text = (
        "masterpiece, a castle on a hill\n"
        "Negative prompt: lowres, bad anatomy\n"
        "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6, Seed: 965400086, Size: 832x1216, "
        'Model hash: 45dee52b, Model: animagine, Lora hashes: "detail: 1a2b3c, style: 4d5e6f", Version: v1.10.1'
    )
    parsed = parse_parameters(text)
    assert parsed["Prompt"] == "masterpiece, a castle on a hill"
    assert parsed["Negative prompt"] == "lowres, bad anatomy"
    assert parsed["Lora hashes"] == "detail: 1a2b3c, style: 4d5e6f"
    assert parsed["Version"] == "v1.10.1" and parsed["Seed"] == "965400086"
    assert format_parameters(parsed) == text
    assert parse_parameters(text.replace("\n", "\r\n") + "\r\n") == parsed


def test_a_last_line_that_is_not_a_values_line_stays_prompt():
    assert parse_parameters("style: anime, mood: calm") == {"Prompt": "style: anime, mood: calm"}
    assert parse_parameters("Steps: 20") == {"Prompt": "", "Steps": "20"}


def test_name_maps_cover_the_common_names():
    assert SAMPLER_NAMES["euler_ancestral"] == "Euler a"
    assert SAMPLER_NAMES["dpmpp_2m"] == "DPM++ 2M"
    assert SAMPLER_NAMES["dpmpp_2m_sde_gpu"] == "DPM++ 2M SDE"
    assert SCHEDULE_TYPES["karras"] == "Karras"
    assert SCHEDULE_TYPES["sgm_uniform"] == "SGM Uniform"


# ---- parameters_from_prompt ----


def example_graph() -> dict:
    return json.loads((PACK_ROOT / "example_workflows" / "api" / "img2img.json").read_text())


def test_pack_graph_reports_the_noise_at_strength_plan():
    graph = example_graph()
    # Values the sampler would use on its own: the plan's must win, the sampler's cfg stays.
    graph["7"]["inputs"].update(seed=7, steps=30, denoise=0.9, sampler_name="dpmpp_2m", scheduler="karras", cfg=6.5)
    assert parameters_from_prompt(graph, "9", size=(512, 384)) == {
        "Prompt": "a watercolor painting of hills at sunset",
        "Negative prompt": "blurry, low quality",
        "Steps": 20,
        "Sampler": "Euler",
        "Schedule type": "Normal",
        "CFG scale": 6.5,
        "Seed": 42,
        "Size": "512x384",
        "Model": "v1-5-pruned-emaonly",
        "Denoising strength": 0.6,
    }


def test_pack_graph_without_noise_at_strength_reports_the_sampler():
    graph = example_graph()
    del graph["6"]
    graph["7"]["inputs"].update(latent_image=["5", 0], seed=7, steps=30, denoise=0.9, sampler_name="dpmpp_2m")
    found = parameters_from_prompt(graph, 9)
    assert (found["Seed"], found["Steps"], found["Denoising strength"], found["Sampler"]) == (7, 30, 0.9, "DPM++ 2M")
    assert "Size" not in found


def core_graph() -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl/juggernaut.v9.safetensors"}},
        "10": {
            "class_type": "LoraLoader",
            "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "x.safetensors", "strength_model": 1.0},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["10", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["10", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["10", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
                "seed": 156680208700286,
                "steps": 25,
                "cfg": 8.0,
                "sampler_name": "dpmpp_2m_sde_gpu",
                "scheduler": "karras",
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "11": {"class_type": "ImageScale", "inputs": {"image": ["8", 0], "width": 512, "height": 512}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": "ComfyUI"}},
    }


def test_core_ksampler_graph_through_lora_and_image_scale():
    assert parameters_from_prompt(core_graph(), "9", size=(512, 512)) == {
        "Prompt": "a red fox",
        "Negative prompt": "text, watermark",
        "Steps": 25,
        "Sampler": "DPM++ 2M SDE",
        "Schedule type": "Karras",
        "CFG scale": 8.0,
        "Seed": 156680208700286,
        "Size": "512x512",
        "Model": "sdxl_juggernaut.v9",  # A1111's model_name: folders joined by '_', no extension
        "Denoising strength": 1.0,
    }


def test_ksampler_advanced_reports_its_noise_seed():
    graph = core_graph()
    sampler = graph["3"]["inputs"]
    del sampler["seed"], sampler["denoise"]
    graph["3"]["class_type"] = "KSamplerAdvanced"
    sampler.update(noise_seed=99, add_noise="enable", start_at_step=10, end_at_step=10000, sampler_name="lcm")
    found = parameters_from_prompt(graph, "9")
    assert (found["Seed"], found["Sampler"]) == (99, "LCM")
    assert "Denoising strength" not in found


def test_prompts_are_followed_through_conditioning_nodes():
    graph = core_graph()
    graph["12"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "second", "clip": ["10", 1]}}
    graph["13"] = {
        "class_type": "ConditioningCombine",
        "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["12", 0]},
    }
    graph["14"] = {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {"positive": ["13", 0], "negative": ["7", 0], "control_net": ["15", 0], "strength": 1.0},
    }
    graph["3"]["inputs"].update(positive=["14", 0], negative=["14", 1])
    found = parameters_from_prompt(graph, "9")
    assert (found["Prompt"], found["Negative prompt"]) == ("a red fox", "text, watermark")


def test_zeroed_out_negative_has_no_text():
    graph = core_graph()
    graph["12"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}}
    graph["3"]["inputs"]["negative"] = ["12", 0]
    assert "Negative prompt" not in parameters_from_prompt(graph, "9")


def test_linked_values_resolve_from_primitives_only():
    graph = core_graph()
    graph["20"] = {"class_type": "PrimitiveInt", "inputs": {"value": 1234}}
    graph["21"] = {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "from a primitive"}}
    graph["22"] = {"class_type": "Seed (rgthree)", "inputs": {"seed": 77}}
    graph["23"] = {"class_type": "SomeMath", "inputs": {"a": ["20", 0], "b": 3}}
    graph["24"] = {"class_type": "LoadTextFile", "inputs": {"path": "prompt.txt"}}
    sampler = graph["3"]["inputs"]

    sampler["seed"] = ["20", 0]
    graph["6"]["inputs"]["text"] = ["21", 0]
    sampler["steps"] = ["22", 0]  # a seed node feeding steps: names differ, so not taken
    found = parameters_from_prompt(graph, "9")
    assert (found["Seed"], found["Prompt"]) == (1234, "from a primitive")
    assert "Steps" not in found

    sampler["seed"] = ["22", 0]
    sampler["cfg"] = ["23", 0]
    graph["6"]["inputs"]["text"] = ["24", 0]
    found = parameters_from_prompt(graph, "9")
    assert found["Seed"] == 77
    assert "CFG scale" not in found and "Prompt" not in found


class ReadLimitedNode(dict):
    """A node that fails the test, instead of hanging it, when a walk keeps reading it."""

    reads = 0

    def get(self, *args):
        self.reads += 1
        assert self.reads < 100, "the walk does not end"
        return super().get(*args)


def read_limited(graph: dict) -> dict:
    return {node_id: ReadLimitedNode(node) for node_id, node in graph.items()}


def test_cycles_end_without_a_result():
    graph = core_graph()
    graph["8"]["inputs"]["samples"] = ["11", 0]  # decode <- scale <- decode
    assert parameters_from_prompt(read_limited(graph), "9", size=(8, 8)) == {"Size": "8x8"}

    graph = core_graph()
    graph["13"] = {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["13", 0]}}
    graph["10"]["inputs"]["model"] = ["10", 0]
    graph["3"]["inputs"]["positive"] = ["13", 0]
    found = parameters_from_prompt(read_limited(graph), "9")
    assert "Prompt" not in found and "Model" not in found and found["Negative prompt"] == "text, watermark"


def test_dangling_links_and_malformed_nodes_leave_pieces_out():
    graph = core_graph()
    graph["3"]["inputs"].update(positive=["77", 0], model=["78", 0], seed=["79", 0])
    found = parameters_from_prompt(graph, "9")
    assert not {"Prompt", "Model", "Seed"} & found.keys() and found["Steps"] == 25

    graph = core_graph()
    graph["9"]["inputs"]["images"] = ["99", 0]
    assert parameters_from_prompt(graph, "9") == {}
    assert parameters_from_prompt(core_graph(), "404") == {}

    graph = core_graph()
    graph["6"] = "not a node"
    graph["7"] = {"class_type": "CLIPTextEncode", "inputs": "not a dict"}
    graph["4"] = {"inputs": {"ckpt_name": 5}}
    found = parameters_from_prompt(graph, "9")
    assert not {"Prompt", "Negative prompt", "Model"} & found.keys() and found["Seed"] == 156680208700286

    assert parameters_from_prompt(None, "9") == {}
    assert parameters_from_prompt(["not", "a", "graph"], "9", size=(1, 2)) == {"Size": "1x2"}


def test_the_graph_is_not_changed():
    graph = example_graph()
    before = copy.deepcopy(graph)
    parameters_from_prompt(graph, "9")
    assert graph == before


@pytest.mark.parametrize("size", [(0, 5), (5,), "512x512", (5.0, 5), (True, 5)])
def test_bad_size_is_refused(size):
    with pytest.raises(ValueError, match="size"):
        parameters_from_prompt(example_graph(), "9", size=size)


def test_found_parameters_format_and_parse_back():
    found = parameters_from_prompt(example_graph(), "9", size=(640, 480))
    prompt, negative, values = read_infotext(format_parameters(found))
    assert (prompt, negative) == (found["Prompt"], found["Negative prompt"])
    assert values["Size"] == "640x480" and values["CFG scale"] == "7" and values["Sampler"] == "Euler"
