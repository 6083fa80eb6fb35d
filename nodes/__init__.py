"""The pack's code: ``core/`` is pure torch, the modules beside it are ComfyUI node classes.

Kept empty so that the core can be imported without importing ComfyUI.
"""
