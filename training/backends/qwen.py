"""Loading a Qwen2.5-VL processor without a video processor (and without torchvision).

transformers 5.x builds ``Qwen2_5_VLProcessor`` from an image processor, a tokenizer and a
video processor, and checks each argument's class; the video processor's classes need
torchvision, which we never install (its registry build breaks the Qwen2.5-VL imports
beside the CPU torch). Our prompts carry images only, so the processor is built with
``video_processor=None`` and the PIL image processor.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__all__ = ["load_processor"]


def _processor_class() -> type[Any]:
    base: Any = importlib.import_module("transformers").Qwen2_5_VLProcessor

    class ImageOnlyQwen2_5_VLProcessor(base):  # type: ignore[misc]  # noqa: N801
        """``Qwen2_5_VLProcessor`` that accepts ``video_processor=None``."""

        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument is None and "video" in argument_name:
                return type(None)
            check: Any = super().check_argument_for_proper_class
            return check(argument_name, argument)

    return ImageOnlyQwen2_5_VLProcessor


def load_processor(path: str | Path, **image_kwargs: Any) -> Any:
    """The image-only Qwen2.5-VL processor of a checkpoint folder or hub id.

    Args:
        path: a folder written by ``save_pretrained`` (or a hub id already in the cache).
        **image_kwargs: overrides of the image processor (``min_pixels``, ``max_pixels``).

    Returns:
        A processor: ``processor(text=..., images=..., return_tensors="pt")`` and
        ``processor.apply_chat_template(messages, ...)`` work as with the stock one.
    """
    transformers: Any = importlib.import_module("transformers")
    pil: Any = importlib.import_module("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    image_processor = pil.Qwen2VLImageProcessorPil.from_pretrained(str(path), **image_kwargs)
    cls = _processor_class()
    return cls(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=None,
        chat_template=tokenizer.chat_template,
    )
