"""comfyui-img2img: image-to-image nodes with exact denoise strength.

Registered through the V1 mappings, which ComfyUI 0.3.75 and every later release load (see README).
"""

from .nodes.crop_stitch import Img2ImgCrop, Img2ImgStitch
from .nodes.custom_sampling import Img2ImgBatchSeedSampler, Img2ImgNoise, Img2ImgStrengthSigmas
from .nodes.ksampler import Img2ImgKSampler
from .nodes.load_image import Img2ImgLoadImage
from .nodes.loopback import Img2ImgLoopback
from .nodes.noise_at_strength import Img2ImgNoiseAtStrength
from .nodes.routes import register_routes
from .nodes.save_image import Img2ImgSaveImage
from .nodes.sweep import Img2ImgDenoiseSweep
from .nodes.tiled_model import Img2ImgTiledModel
from .nodes.vae import Img2ImgVAEDecode, Img2ImgVAEEncode

NODE_CLASS_MAPPINGS = {
    "Img2ImgLoadImage": Img2ImgLoadImage,
    "Img2ImgVAEEncode": Img2ImgVAEEncode,
    "Img2ImgNoiseAtStrength": Img2ImgNoiseAtStrength,
    "Img2ImgKSampler": Img2ImgKSampler,
    "Img2ImgVAEDecode": Img2ImgVAEDecode,
    "Img2ImgSaveImage": Img2ImgSaveImage,
    "Img2ImgDenoiseSweep": Img2ImgDenoiseSweep,
    "Img2ImgLoopback": Img2ImgLoopback,
    "Img2ImgStrengthSigmas": Img2ImgStrengthSigmas,
    "Img2ImgNoise": Img2ImgNoise,
    "Img2ImgBatchSeedSampler": Img2ImgBatchSeedSampler,
    "Img2ImgTiledModel": Img2ImgTiledModel,
    "Img2ImgCrop": Img2ImgCrop,
    "Img2ImgStitch": Img2ImgStitch,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "Img2ImgLoadImage": "Load Image (img2img)",
    "Img2ImgVAEEncode": "VAE Encode (img2img)",
    "Img2ImgNoiseAtStrength": "Noise at Strength (img2img)",
    "Img2ImgKSampler": "KSampler (img2img)",
    "Img2ImgVAEDecode": "VAE Decode (img2img)",
    "Img2ImgSaveImage": "Save Image (img2img)",
    "Img2ImgDenoiseSweep": "Denoise Sweep (img2img)",
    "Img2ImgLoopback": "Loopback (img2img)",
    "Img2ImgStrengthSigmas": "Strength Sigmas (img2img)",
    "Img2ImgNoise": "Noise (img2img)",
    "Img2ImgBatchSeedSampler": "Batch Seed Sampler (img2img)",
    "Img2ImgTiledModel": "Tiled Model (img2img)",
    "Img2ImgCrop": "Crop for Stitch (img2img)",
    "Img2ImgStitch": "Stitch (img2img)",
}

WEB_DIRECTORY = "./js"

register_routes()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
