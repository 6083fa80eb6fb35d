"""img2img: batch image-to-image with the comfyui-img2img nodes on ComfyUI servers, over HTTP and websocket.

The package never imports ComfyUI or the pack's node code, so it runs against any server that has the
pack installed, local or remote.
"""
