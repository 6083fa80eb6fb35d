"""The CLI's parts that need no server: graph, inputs, resume keys, output files, messages, packaging, the
options record, and the outcome both backends report an image with."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from img2img_cli import batch as cli_batch
from img2img_cli import graph as cli_graph
from img2img_cli import main as cli_main
from img2img_cli.batch import Batch, ImageOutcome, Upload, run_on_server
from img2img_cli.client import JobFailed, JobInterrupted, Result, ServerGone, describe_execution_error, describe_refusal
from img2img_cli.graph import CHECKOUT_TEMPLATES, Parameters, build_graph, load_template
from img2img_cli.local import load_harness
from img2img_cli.options import RunOptions, build_parser, options_from_arguments
from img2img_cli.results import Manifest, resume_key, write_output

from cli_progress import manifest_lines
from pack_under_test import PACK_ROOT

PARAMETERS = Parameters(
    prompt="a red barn",
    negative="fog",
    denoise=0.35,
    steps=9,
    cfg=5.5,
    sampler="dpmpp_2m",
    scheduler="karras",
    mode="a1111",
    checkpoint="model.safetensors",
    width=96,
    height=0,
    fit="pad",
)


def node_of(graph: dict, class_type: str) -> tuple[str, dict]:
    [(node_id, node)] = [(i, n) for i, n in graph.items() if n["class_type"] == class_type]
    return node_id, node


def test_the_template_is_the_checkouts_example_graph():
    path = next(PACK_ROOT / name for name in CHECKOUT_TEMPLATES if (PACK_ROOT / name).is_file())
    assert load_template() == json.loads(path.read_text(encoding="utf-8"))


def test_the_graph_is_the_plain_chain_with_every_input_set():
    template = load_template()
    original = json.dumps(template, sort_keys=True)
    graph, save = build_graph(template, PARAMETERS, seed=77, image="img2img-cli/abc-photo.png")
    assert json.dumps(template, sort_keys=True) == original
    load_id, load = node_of(graph, "Img2ImgLoadImage")
    encode_id, encode = node_of(graph, "Img2ImgVAEEncode")
    sampler_id, sampler = node_of(graph, "Img2ImgKSampler")
    decode_id, decode = node_of(graph, "Img2ImgVAEDecode")
    assert graph[save]["class_type"] == "Img2ImgSaveImage"
    assert "Img2ImgNoiseAtStrength" not in {node["class_type"] for node in graph.values()}
    # Every link points at a node that is still there, and the chain is the plain one.
    for node in graph.values():
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert value[0] in graph
    assert encode["inputs"]["pixels"] == [load_id, 0]
    assert sampler["inputs"]["latent_image"] == [encode_id, 0]
    assert decode["inputs"]["samples"] == [sampler_id, 0]
    assert graph[save]["inputs"]["images"] == [decode_id, 0]
    assert graph[sampler["inputs"]["positive"][0]]["inputs"]["text"] == "a red barn"
    assert graph[sampler["inputs"]["negative"][0]]["inputs"]["text"] == "fog"
    assert node_of(graph, "CheckpointLoaderSimple")[1]["inputs"]["ckpt_name"] == "model.safetensors"
    expected_sampler = {
        "seed": 77,
        "steps": 9,
        "cfg": 5.5,
        "sampler_name": "dpmpp_2m",
        "scheduler": "karras",
        "denoise": 0.35,
        "strength_mode": "a1111",
        "batch_seed": "comfy",
    }
    assert {name: sampler["inputs"][name] for name in expected_sampler} == expected_sampler
    expected_load = {"image": "img2img-cli/abc-photo.png", "folder": "", "limit": 1, "width": 96, "height": 0}
    assert {name: load["inputs"][name] for name in expected_load} == expected_load
    assert load["inputs"]["fit"] == "pad"


def test_accelerate_sets_the_sampler_encoder_and_decoder_and_keeps_old_resume_keys():
    accelerate_inputs = {}
    for parameters in (PARAMETERS, replace(PARAMETERS, accelerate=True)):
        graph, _ = build_graph(load_template(), parameters, seed=77, image="photo.png")
        accelerate_inputs[parameters.accelerate] = [
            node_of(graph, class_type)[1]["inputs"]["accelerate"]
            for class_type in ("Img2ImgVAEEncode", "Img2ImgKSampler", "Img2ImgVAEDecode")
        ]
    assert accelerate_inputs == {False: [False] * 3, True: [True] * 3}
    assert "accelerate" not in PARAMETERS.as_dict()  # a manifest from before the option still matches
    assert replace(PARAMETERS, accelerate=True).as_dict()["accelerate"] is True


def test_inputs_are_image_files_of_folders_and_named_files_sorted_once(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "a.JPG", "notes.txt", "sub/c.png"):
        (folder / name).write_bytes(b"x")
    named = tmp_path / "z.dat"
    named.write_bytes(b"x")
    found = cli_main.collect_inputs([named, folder, folder / "b.png"])
    assert found == [folder / "a.JPG", folder / "b.png", named]
    with pytest.raises(ValueError, match="no such file or folder"):
        cli_main.collect_inputs([tmp_path / "missing"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image files"):
        cli_main.collect_inputs([empty])


def test_folders_are_filtered_by_the_loaders_own_suffixes():
    from comfyui_img2img.nodes.core.images import IMAGE_SUFFIXES

    assert cli_main.IMAGE_SUFFIXES == IMAGE_SUFFIXES


def test_per_image_seeds_follow_the_sorted_order_and_resume_skips_only_exact_matches(tmp_path):
    images = []
    for number in range(3):
        images.append(tmp_path / f"{number}.png")
        images[-1].write_bytes(bytes([number]))
    manifest = Manifest(tmp_path)
    jobs, skipped, unreadable = cli_main.plan_jobs(images, 10, True, PARAMETERS, manifest)
    assert [(job.path, job.seed) for job in jobs] == [(image, 10 + i) for i, image in enumerate(images)]
    assert (skipped, unreadable) == (0, [])
    manifest.append({"sha256": jobs[1].sha256, "seed": 11, "parameters": PARAMETERS.as_dict()})
    manifest.append({"sha256": jobs[2].sha256, "seed": 12, "parameters": {**PARAMETERS.as_dict(), "cfg": 1.0}})
    again, skipped, _ = cli_main.plan_jobs(images, 10, True, PARAMETERS, manifest)
    assert [job.seed for job in again] == [10, 12] and skipped == 1
    # A fixed seed is another key: nothing matches.
    assert len(cli_main.plan_jobs(images, 11, False, PARAMETERS, manifest)[0]) == 2


def test_the_resume_key_ignores_where_the_file_lies_and_key_order():
    parameters = PARAMETERS.as_dict()
    assert resume_key("ab", 1, parameters) == resume_key("ab", 1, dict(reversed(parameters.items())))
    assert resume_key("ab", 1, parameters) != resume_key("ab", 2, parameters)


@pytest.mark.parametrize("hard_links", [True, False], ids=["hard links", "no hard links"])
def test_outputs_never_overwrite_and_leave_no_partial_file(tmp_path, monkeypatch, hard_links):
    """Without hard links (FAT, exFAT, some network shares) os.link refuses with an OSError; the test's own
    file system has them, so os.link is made to answer as Windows does on FAT."""

    def no_hard_links(source, target, **kwargs):
        raise OSError(1, "Incorrect function")  # Windows' answer on FAT

    if not hard_links:
        monkeypatch.setattr("os.link", no_hard_links)
    (tmp_path / "cat.png").write_bytes(b"mine")
    first = write_output(tmp_path, "cat", ".png", b"one")
    second = write_output(tmp_path, "cat", ".png", b"two")
    assert (first.name, second.name) == ("cat_1.png", "cat_2.png")
    names = ["cat.png", "cat_1.png", "cat_2.png"]
    assert [(tmp_path / name).read_bytes() for name in names] == [b"mine", b"one", b"two"]
    assert sorted(path.name for path in tmp_path.iterdir()) == names


def test_a_torn_manifest_line_is_skipped_and_the_next_line_starts_clean(tmp_path, capsys):
    manifest = Manifest(tmp_path)
    record = {"sha256": "ab", "seed": 1, "parameters": {"steps": 2}}
    manifest.append(record)
    with open(manifest.path, "a", encoding="utf-8") as file:
        file.write('{"sha256": "cd", "se')  # what a power cut in the middle of an append could leave
    manifest.append({**record, "seed": 2})
    lines = manifest.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["seed"] == 2
    assert manifest.done_keys() == {resume_key("ab", 1, {"steps": 2}), resume_key("ab", 2, {"steps": 2})}
    assert "ignoring unreadable line 2" in capsys.readouterr().err


def test_server_refusals_name_the_node_class_and_input():
    answer = {
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
        "node_errors": {
            "4": {
                "class_type": "Img2ImgLoadImage",
                "errors": [
                    {
                        "type": "custom_validation_failed",
                        "message": "Custom validation failed for node",
                        "details": "image: cannot identify image file 'x.png'",
                        "extra_info": {"input_name": "image"},
                    }
                ],
            }
        },
    }
    assert describe_refusal(answer) == "Img2ImgLoadImage (node 4), input 'image': cannot identify image file 'x.png'"
    no_nodes = {"error": {"message": "Cannot execute because node Foo does not exist.", "details": "Node ID '#3'"}}
    assert describe_refusal(no_nodes) == "Cannot execute because node Foo does not exist.: Node ID '#3'"
    error = {"node_id": "7", "node_type": "Img2ImgKSampler", "exception_type": "ValueError", "exception_message": "cfg"}
    assert describe_execution_error(error) == "Img2ImgKSampler (node 7) failed: ValueError: cfg"


def test_usage_errors_exit_2_with_a_message(tmp_path, capsys, monkeypatch):
    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    base = ["run", str(image), "--prompt", "p", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main([*base, "--denoise", "1.5"])
    assert exit_info.value.code == 2 and "between 0 and 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main.main([*base, "--denoise", "0.5", "--server", "127.0.0.1:8188"])
    assert "http://" in capsys.readouterr().err
    # Installed without a checkout there is no host to start: it says --server is needed.
    monkeypatch.setattr(cli_main, "checkout_root", lambda: None)
    with pytest.raises(SystemExit):
        cli_main.main([*base, "--denoise", "0.5"])
    assert "pass --server URL" in capsys.readouterr().err


def options_for(*argv: str) -> RunOptions:
    return options_from_arguments(build_parser().parse_args(argv))


def test_the_command_line_becomes_one_typed_record_at_its_edge(monkeypatch):
    plain = ["run", "a.png", "in", "--prompt", "p", "--denoise", "0.5", "--out", "o"]
    defaults = options_for(*plain)
    assert defaults == RunOptions(
        inputs=(Path("a.png"), Path("in")),
        out=Path("o"),
        prompt="p",
        negative="",
        denoise=0.5,
        sweep_seeds=(),
        steps=20,
        cfg=7.0,
        sampler="euler",
        scheduler="normal",
        mode="steps_x_denoise",
        width=0,
        height=0,
        fit="crop",
        accelerate=False,
        scale=1.0,
        tile=0,
        upscale_model=None,
        mask="auto",
        crop_width=512,
        crop_height=512,
        blend=16,
        color_correction=False,
        seed=0,
        per_image_seeds=False,
        checkpoint=None,
        servers=(),
        models_dir=None,
        job_timeout=3600.0,
        ray_address=None,
        comfyui=None,
        workers=None,
        cpu=False,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        defaults.seed = 1
    sweep = ["sweep", "in", "--prompt", "p", "--denoise", "0.2,0.4", "--seeds", "3,4", "--out", "o", "--cfg", "1"]
    sweep += ["--server", "http://a:1/", "--server", "http://b:2", "--server", "http://a:1", "--timeout", "30"]
    sweep += ["--seed", "5", "--per-image-seeds", "--accelerate", "--ray", "auto", "--workers", "2", "--cpu"]
    flags = options_for(*sweep)
    assert (flags.denoise, flags.sweep_seeds, flags.cfg, flags.seed, flags.per_image_seeds) == (
        (0.2, 0.4),
        (3, 4),
        1,
        5,
        True,
    )
    assert flags.servers == ("http://a:1", "http://b:2")  # without the trailing slash, each once
    assert (flags.job_timeout, flags.ray_address, flags.workers, flags.cpu) == (30.0, "auto", 2, True)
    assert flags.parameters("model.safetensors") == Parameters(
        prompt="p",
        negative="",
        denoise=(0.2, 0.4),
        sweep_seeds=(3, 4),
        steps=20,
        cfg=1.0,
        sampler="euler",
        scheduler="normal",
        mode="steps_x_denoise",
        checkpoint="model.safetensors",
        width=0,
        height=0,
        fit="crop",
        accelerate=True,
        mask="none",  # a sweep's sheet is of the whole picture
    )
    # main() hands the run the record, not argparse's Namespace.
    handed = []
    monkeypatch.setattr(cli_main, "run", lambda options: handed.append(options) or 0)
    assert cli_main.main(sweep) == 0 and handed == [flags]


class FakeServer:
    """Stands in for a ServerClient (client.py): builds each image's graph as a real run does, then answers it,
    by file name, with its Result or raises its exception."""

    url = "http://fake:8188"

    def __init__(self, answers: dict[str, Result | Exception]) -> None:
        self.answers = answers

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass

    def run(self, data, name, make_graph, on_progress) -> Result:
        make_graph(f"img2img-cli/{name}")
        answer = self.answers[name]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_both_backends_report_an_image_as_one_outcome_that_work_records(tmp_path, monkeypatch):
    images = []
    for name in ("a.png", "b.png", "c.png", "d.png"):
        images.append(tmp_path / name)
        images[-1].write_bytes(name.encode())
    out = tmp_path / "out"
    out.mkdir()
    jobs = cli_main.plan_jobs(images, 3, False, PARAMETERS, Manifest(out))[0]
    picture = Result(b"picture", "img2img_00001_.png", "prompt-a", {"total_s": 1.5})
    answers = {"a.png": picture, "b.png": JobFailed("refused"), "c.png": KeyError("x"), "d.png": JobInterrupted()}
    server, template = FakeServer(answers), load_template()
    expected = {
        "a.png": ImageOutcome(jobs[0], result=picture, server=server.url),
        "b.png": ImageOutcome(jobs[1], error="refused"),
        "c.png": ImageOutcome(jobs[2], error="KeyError: 'x'"),  # a surprise answer fails the image alone
        "d.png": ImageOutcome(jobs[3]),  # stopped by Ctrl-C: neither done nor failed
    }
    with pytest.raises(ServerGone):  # no outcome of the image: each backend replaces its server
        run_on_server(FakeServer({"a.png": ServerGone("gone")}), Upload(b""), jobs[0], template, PARAMETERS, "", print)

    # The local backend: a --server's worker thread; every image it settles goes through Work.record.
    recorded = []
    record = cli_batch.Work.record
    monkeypatch.setattr(cli_batch, "ServerClient", lambda url, stop, job_timeout: server)
    monkeypatch.setattr(
        cli_batch.Work, "record", lambda work, outcome: recorded.append(outcome) or record(work, outcome)
    )
    summary = Batch(jobs, [server.url], PARAMETERS, template, out, 60.0).run()
    assert {outcome.job.path.name: outcome for outcome in recorded} == expected
    assert (summary.done, summary.failed, summary.interrupted) == (1, 2, False)
    [line] = manifest_lines(out)
    fields = {name: line[name] for name in ("input", "output", "server", "prompt_id")}
    assert fields == {"input": str(images[0]), "output": "a.png", "server": server.url, "prompt_id": "prompt-a"}
    assert (out / "a.png").read_bytes() == b"picture"

    # The Ray backend: an actor's run returns the driver the same outcomes (its method alone, without a cluster).
    ray_cluster = pytest.importorskip("img2img_cli.ray_cluster")
    monkeypatch.setattr(ray_cluster.ray.util, "get_node_ip_address", lambda: "10.0.0.9")
    actor = object.__new__(ray_cluster.ComfyWorker)  # no ComfyUI started: the fake server answers
    actor.client, actor.url, actor.template, actor.parameters = server, server.url, template, PARAMETERS
    on_ray = {job.path.name: actor.run(Upload(job.path.read_bytes()), job) for job in jobs}
    assert on_ray == {**expected, "a.png": replace(expected["a.png"], server=f"{server.url} on 10.0.0.9")}


def test_an_unreachable_server_fails_every_image(tmp_path, capsys):
    images = []
    for name in ("a.png", "b.png"):
        images.append(tmp_path / name)
        images[-1].write_bytes(b"x")
    port = load_harness(PACK_ROOT).free_port()  # nothing listens there
    args = ["run", *map(str, images), "--prompt", "p", "--denoise", "0.5", "--out", str(tmp_path / "out")]
    code = cli_main.main([*args, "--server", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "is gone" in err and err.count("no server left to run it") == 2


def test_python_m_img2img_cli_shows_the_usage(cli_env):
    result = subprocess.run(
        [sys.executable, "-m", "img2img_cli", "run", "--help"], env=cli_env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: img2img run") and "--per-image-seeds" in result.stdout
    assert result.stdout.isascii()  # prints on any console (test_cli_encoding.py runs this under ASCII)


def test_the_wheel_carries_the_cli_its_graph_and_the_console_script(tmp_path):
    # Built from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(PACK_ROOT / name, source / name)
    shutil.copytree(PACK_ROOT / "cli", source / "cli", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PACK_ROOT / "example_workflows" / "api", source / "example_workflows" / "api")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."],
        cwd=source,
        check=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [entry_points] = [name for name in names if name.endswith("entry_points.txt")]
        [metadata] = [name for name in names if name.endswith("METADATA")]
        assert "img2img = img2img_cli.main:main" in archive.read(entry_points).decode()
        requirements = archive.read(metadata).decode()
    assert {"img2img_cli/main.py", "img2img_cli/__main__.py", "img2img_cli/workflows/img2img.json"} <= names
    assert not any(name.startswith(("nodes/", "scripts/", "tests/")) for name in names)
    requires = [line.removeprefix("Requires-Dist: ") for line in requirements.splitlines() if "Requires-Dist" in line]
    # The command's own packages, and the frontend range the registry reads (pyproject.toml says why); Ray extra.
    plain = {line.split(">")[0] for line in requires if "extra ==" not in line}
    assert plain == {"requests", "websocket-client", "tqdm", "comfyui-frontend-package"}
    assert [line.split(">")[0] for line in requires if 'extra == "ray"' in line] == ["ray"]


def test_the_sweep_graph_puts_the_sweep_node_in_the_samplers_place():
    parameters = dataclasses.replace(PARAMETERS, denoise=(0.2, 0.45), sweep_seeds=(3, 4))
    graph, save = build_graph(load_template(), parameters, seed=77, image="img2img-cli/abc-photo.png")
    sweep_id, sweep = node_of(graph, "Img2ImgDenoiseSweep")
    assert {node["class_type"] for node in graph.values()}.isdisjoint({"Img2ImgKSampler", "Img2ImgVAEDecode"})
    assert graph[save]["inputs"]["images"] == [sweep_id, 0]
    assert graph[sweep["inputs"]["vae"][0]]["class_type"] == "CheckpointLoaderSimple"
    assert graph[sweep["inputs"]["latent_image"][0]]["class_type"] == "Img2ImgVAEEncode"
    assert (sweep["inputs"]["denoise_values"], sweep["inputs"]["seeds"]) == ("0.2, 0.45", "3, 4")
    assert "denoise" not in sweep["inputs"] and "batch_seed" not in sweep["inputs"]
    for node in graph.values():
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert value[0] in graph


def test_a_fresh_process_loads_the_checkouts_host_harness_by_its_path(cli_env):
    """Without --server the CLI imports scripts/img2img_host/ from the checkout; the tests import it from their
    path, so only a process of its own shows the CLI's loader at work."""
    script = (
        "from pathlib import Path; from img2img_cli.local import load_harness;"
        f"harness = load_harness(Path({str(PACK_ROOT)!r})); print(harness.Server.__module__, harness.TEST_CHECKPOINT)"
    )
    run = subprocess.run([sys.executable, "-c", script], env=cli_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["img2img_host.server", load_harness(PACK_ROOT).TEST_CHECKPOINT]


# Text the platform's default encoding may not hold: Windows' cp1252 has neither the cat nor the sigma.
NON_ASCII = "Kätzchen im Schnee, 猫, σ → café"


def test_a_graph_and_a_manifest_with_non_ascii_text_are_read_as_utf8(tmp_path, monkeypatch):
    """Files are UTF-8 whatever the platform's default (tests/cli/test_cli_encoding.py runs this file under a
    non-UTF-8 default): the API graph of a checkout, and the manifest's records."""
    template = json.loads((PACK_ROOT / CHECKOUT_TEMPLATES[0]).read_text(encoding="utf-8"))
    prompts = [node for node in template.values() if node["class_type"] == "CLIPTextEncode"]
    assert prompts
    for node in prompts:
        node["inputs"]["text"] = NON_ASCII
    checkout = tmp_path / "checkout"
    (checkout / CHECKOUT_TEMPLATES[0]).parent.mkdir(parents=True)
    (checkout / CHECKOUT_TEMPLATES[0]).write_bytes(json.dumps(template, ensure_ascii=False).encode("utf-8"))
    (checkout / "scripts").mkdir()
    (checkout / "scripts" / "host.py").write_bytes(b"")
    monkeypatch.setattr(cli_graph, "CHECKOUT", checkout)  # the checkout the command runs from
    assert load_template() == template

    parameters = dataclasses.replace(PARAMETERS, prompt=NON_ASCII).as_dict()
    manifest = Manifest(tmp_path)
    manifest.append({"sha256": "ab", "seed": 1, "parameters": parameters, "output": f"{NON_ASCII}.png"})
    assert manifest.done_keys() == {resume_key("ab", 1, parameters)}
    assert json.loads(manifest.path.read_bytes().decode("utf-8"))["output"] == f"{NON_ASCII}.png"


def upscale_graph(**options: object) -> dict:
    return build_graph(load_template(), replace(PARAMETERS, **options), seed=77, image="photo.png")[0]


def test_scale_and_tile_put_image_scale_by_and_the_tiled_model_into_the_chain():
    graph = upscale_graph(scale=2.0, tile=256)
    load_id, load = node_of(graph, "Img2ImgLoadImage")
    scale_id, scale = node_of(graph, "ImageScaleBy")
    checkpoint_id, _ = node_of(graph, "CheckpointLoaderSimple")
    tiled_id, tiled = node_of(graph, "Img2ImgTiledModel")
    assert scale["inputs"] == {"image": [load_id, 0], "upscale_method": "lanczos", "scale_by": 2.0}
    assert node_of(graph, "Img2ImgVAEEncode")[1]["inputs"]["pixels"] == [scale_id, 0]
    assert tiled["inputs"] == {"model": [checkpoint_id, 0], "tile_size": 256, "overlap": 64, "tile_batch": 0}
    assert node_of(graph, "Img2ImgKSampler")[1]["inputs"]["model"] == [tiled_id, 0]
    for class_type in ("Img2ImgVAEEncode", "Img2ImgVAEDecode"):
        inputs = node_of(graph, class_type)[1]["inputs"]
        assert (inputs["tiling"], inputs["tile_size"]) == ("auto", 256)
    assert load["inputs"]["multiple"] == 8  # a whole scale keeps the loader's multiple
    for node in graph.values():
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert value[0] in graph
    # The overlap is a quarter of the tile, down to a multiple of 8 (the node's step); at least 16.
    tiled_models = [node_of(upscale_graph(tile=tile), "Img2ImgTiledModel")[1] for tile in (64, 72, 520)]
    assert [node["inputs"]["overlap"] for node in tiled_models] == [16, 16, 128]
    # A scale n/d fits the input to a multiple of 8·d, so that the scaled picture stays a multiple of 8.
    loaders = [node_of(upscale_graph(scale=scale), "Img2ImgLoadImage")[1] for scale in (1.5, 0.125)]
    assert [node["inputs"]["multiple"] for node in loaders] == [16, 64]


# The inputs build_graph sets for every run; the noise node's latent link passes to the sampler.
SET_FOR_EACH_RUN = {
    "ckpt_name", "text", "image", "frames", "folder", "index", "limit", "width", "height", "fit", "seed", "steps",
    "cfg", "sampler_name", "scheduler", "denoise", "strength_mode", "batch_seed", "accelerate", "filename_prefix",
    "latent_image",
}  # fmt: skip


def test_without_the_options_the_graph_and_the_resume_key_are_as_before():
    """At their defaults nothing is added: the graph is the template's plain chain with only the run's inputs
    set (tiles, the loader's multiple and every link as in the template), and manifests written before the
    options still resume."""
    template = load_template()
    graph = upscale_graph(scale=1.0, tile=0, upscale_model=None)
    assert set(graph) == set(template) - {node_of(template, "Img2ImgNoiseAtStrength")[0]}
    for node_id, node in graph.items():
        inputs = template[node_id]["inputs"]
        assert node["class_type"] == template[node_id]["class_type"] and set(node["inputs"]) == set(inputs)
        changed = {name for name, value in node["inputs"].items() if value != inputs[name]}
        assert changed <= SET_FOR_EACH_RUN, (node["class_type"], changed)
    fields = {field.name for field in dataclasses.fields(Parameters)}
    later = {"accelerate", "scale", "tile", "upscale_model", "mask", "crop_width", "crop_height", "blend"}
    assert set(PARAMETERS.as_dict()) == fields - later - {"color_correction"}
    upscaled = replace(PARAMETERS, scale=2.0, tile=256, upscale_model="4x.pth").as_dict()
    assert (upscaled["scale"], upscaled["tile"], upscaled["upscale_model"]) == (2.0, 256, "4x.pth")
    assert resume_key("ab", 1, upscaled) != resume_key("ab", 1, PARAMETERS.as_dict())


def test_an_upscale_model_is_resized_to_exactly_the_scale_with_the_size_read_on_the_server():
    graph = upscale_graph(scale=2.0, upscale_model="4x-tiny.safetensors")
    load_id, _ = node_of(graph, "Img2ImgLoadImage")
    loader_id, loader = node_of(graph, "UpscaleModelLoader")
    model_id, model = node_of(graph, "ImageUpscaleWithModel")
    reference_id, reference = node_of(graph, "ImageScaleBy")
    size_id, size = node_of(graph, "GetImageSize")
    resize_id, resize = node_of(graph, "ImageScale")
    assert loader["inputs"] == {"model_name": "4x-tiny.safetensors"}
    assert model["inputs"] == {"upscale_model": [loader_id, 0], "image": [load_id, 0]}
    # The size lanczos alone would give, from a cheap nearest-neighbour copy at the scale.
    assert reference["inputs"] == {"image": [load_id, 0], "upscale_method": "nearest-exact", "scale_by": 2.0}
    assert size["inputs"] == {"image": [reference_id, 0]}
    expected = {"image": [model_id, 0], "upscale_method": "lanczos", "width": [size_id, 0], "height": [size_id, 1]}
    assert resize["inputs"] == {**expected, "crop": "disabled"}
    assert node_of(graph, "Img2ImgVAEEncode")[1]["inputs"]["pixels"] == [resize_id, 0]
    # At scale 1 the model's picture goes back to the loaded size.
    same_size = upscale_graph(upscale_model="4x-tiny.safetensors")
    assert "ImageScaleBy" not in {node["class_type"] for node in same_size.values()}
    assert node_of(same_size, "GetImageSize")[1]["inputs"] == {"image": [node_of(same_size, "Img2ImgLoadImage")[0], 0]}


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--scale", "0", "more than 0 and at most 8"),
        ("--scale", "-2", "more than 0 and at most 8"),
        ("--scale", "17", "more than 0 and at most 8"),
        ("--scale", "1.3", "d at most 8"),
        ("--scale", "two", "must be a number"),
        ("--tile", "32", "multiple of 8 from 64 to 4096"),
        ("--tile", "100", "multiple of 8 from 64 to 4096"),
        ("--tile", "8192", "multiple of 8 from 64 to 4096"),
    ],
)
def test_scale_and_tile_usage_errors_name_the_option_and_exit_2(tmp_path, capsys, flag, value, message):
    base = ["run", str(tmp_path / "a.png"), "--prompt", "p", "--denoise", "0.5", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main([*base, flag, value])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("usage: img2img run")
    assert f"argument {flag}: " in err and message in err and value in err


def test_scale_tile_and_upscale_model_reach_the_parameters():
    options = options_for("run", "a.png", "--prompt", "p", "--denoise", "0.3", "--out", "o", "--scale", "1.5")
    assert (options.scale, options.tile, options.upscale_model) == (1.5, 0, None)
    options = options_for(
        *("run", "a.png", "--prompt", "p", "--denoise", "0.3", "--out", "o"),
        *("--scale", "4", "--tile", "512", "--upscale-model", "4x.pth"),
    )
    parameters = options.parameters("model.safetensors")
    assert (parameters.scale, parameters.tile, parameters.upscale_model) == (4.0, 512, "4x.pth")
    # `sweep` has no upscale-and-refine: its records keep the defaults.
    sweep = options_for("sweep", "a.png", "--prompt", "p", "--denoise", "0.3,0.5", "--out", "o")
    assert (sweep.scale, sweep.tile, sweep.upscale_model) == (1.0, 0, None)
