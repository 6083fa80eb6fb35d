"""The side-by-side benchmark behind bench/run.py, one topic a module.

specs.py       what is measured: the models, their rows and strength curves, the full-shape checkpoint
device.py      the device it measures on, and its log lines
comfyui.py     ComfyUI and the pack in this process
measure.py     one run: wall time, time in the denoiser and in the sampler, peak memory; medians and ratios
one_model.py   the benchmark of one model: rows beside core, accelerate, the strength curve
end_to_end.py  the same graph POSTed to a headless server, pack nodes against core nodes
report.py      the results as Markdown
main.py        the command line
ray_throughput.py  `img2img run --ray`: images per minute, 1 vs 2 workers, a cluster on paper (bench/ray_run.py)
"""
