"""Pure-torch img2img core: strength plans, sigma schedules, samplers, noise, image conversion.

Nothing here imports ComfyUI, so it runs and is tested on its own.
"""
