"""Pure-torch img2img core: strength plans, noise, tiles, image conversion and metadata.

Nothing here imports ComfyUI, so it runs and is tested on its own.
"""
