"""A tiny, randomly initialised Qwen2.5-VL (model, tokenizer, processor) built offline.

Tests, the benchmark and ``llm3d sft --tiny`` / ``llm3d rl --tiny`` use it to run the real
code paths of the ``local`` backend on a CPU in seconds: the same classes as
Qwen2.5-VL-7B-Instruct (``Qwen2_5_VLForConditionalGeneration``, ``Qwen2_5_VLProcessor``
with the PIL Qwen2-VL image processor, Qwen's special tokens and chat template), with a
2-layer text model, a 2-block vision tower (~0.3 M parameters) and a byte-level BPE
tokenizer trained on the spot on ``bpy_lib`` programs. :func:`build_tiny_model` saves all of
it with ``save_pretrained`` so the backend loads it exactly as it loads a hub checkpoint.

Facts (transformers 5.x): ``mrope_section`` must sum to ``head_dim / 2``; the processor
takes ``video_processor=None``; never install torchvision (it breaks these imports beside
the CPU torch), the PIL image processor is used instead.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "CHAT_TEMPLATE",
    "MODEL_SIZES",
    "SPECIAL_TOKENS",
    "build_tiny_model",
    "ensure_random_model",
    "tiny_corpus",
]

logger = logging.getLogger(__name__)

#: Qwen2-VL's special tokens, in Qwen's order (ids follow the BPE vocabulary).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

#: Qwen2-VL's chat template (images as ``<|vision_start|><|image_pad|><|vision_end|>``).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_corpus() -> list[str]:
    """Text the tokenizer is trained on: the bpy_lib examples, its reference, chat words."""
    import bpy_lib.examples as examples
    from bpy_lib.refdoc import reference

    texts = [p.read_text(encoding="utf-8") for p in examples.paths()]
    texts.append(reference())
    texts.append(
        "system user assistant Write a bpy_lib program that builds the object in the images. "
        "You are a helpful assistant."
    )
    return texts


def _train_tokenizer(texts: Iterable[str], vocab_size: int, out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    transformers: Any = importlib.import_module("transformers")

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)


def build_tiny_model(
    out_dir: str | Path,
    *,
    seed: int = 0,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    layers: int = 2,
    vision_depth: int = 2,
    vision_hidden_size: int = 32,
    image_min_pixels: int = 56 * 56,
    image_max_pixels: int = 112 * 112,
    model_vocab_size: int | None = None,
) -> Path:
    """Build and save a tiny Qwen2.5-VL checkpoint (weights, tokenizer, processor).

    Args:
        out_dir: the folder to write (``from_pretrained`` loads it).
        seed: torch seed of the random initialisation (same seed, same weights).
        vocab_size: BPE vocabulary size, special tokens included.
        hidden_size: width of the text model (4 heads, 2 key/value heads).
        layers: text decoder layers.
        vision_depth: vision transformer blocks.
        vision_hidden_size: width of the vision transformer (2 heads).
        image_min_pixels: the image processor's lower bound on resized images.
        image_max_pixels: its upper bound (small images keep the vision tower cheap).
        model_vocab_size: rows of the embedding and the output layer when larger than the
            tokenizer (Qwen pads 151,665 tokens to 152,064): a wide vocabulary for
            measuring what sampling holds per token.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    import torch

    transformers: Any = importlib.import_module("transformers")
    pil: Any = importlib.import_module("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _train_tokenizer(tiny_corpus(), vocab_size, out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}

    heads = 4
    head_dim = hidden_size // heads
    half = head_dim // 2  # mrope_section must sum to head_dim / 2 (transformers 5.x)
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    config = transformers.Qwen2_5_VLConfig(
        text_config={
            "vocab_size": max(len(tokenizer), model_vocab_size or 0),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 8192,
            "max_window_layers": layers,
            "layer_types": ["full_attention"] * layers,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": mrope,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": vision_depth,
            "hidden_size": vision_hidden_size,
            "intermediate_size": 2 * vision_hidden_size,
            "num_heads": 2,
            "out_hidden_size": hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [vision_depth - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = transformers.Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.do_sample = True
    model.generation_config.top_k = None
    model.generation_config.top_p = None
    model.generation_config.temperature = 1.0
    model.save_pretrained(out)

    image_processor = pil.Qwen2VLImageProcessorPil(
        min_pixels=image_min_pixels,
        max_pixels=image_max_pixels,
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
    )
    # the tokenizer (with the chat template) and the image processor are saved side by side;
    # training.backends.qwen.load_processor() joins them (there is no video processor)
    image_processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    (out / "llm3d_tiny.json").write_text(
        json.dumps(
            {
                "seed": seed,
                "parameters": n_params,
                "vocab_size": len(tokenizer),
                "model_vocab_size": model.config.get_text_config().vocab_size,
            }
        ),
        encoding="utf-8",
    )
    logger.info("tiny Qwen2.5-VL (%d parameters) saved to %s", n_params, out)
    return out


#: The random checkpoints ``training.model_init`` builds: ``tiny`` (~0.3 M parameters, the
#: tests' smoke model) and ``small`` (a few million: 4 text layers of width 256, a 2-block
#: vision tower, each image at the processor's smallest size, 28 x 28 pixels = one merged
#: 2 x 2 patch = one image token), trained from scratch on a CPU.
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": {},
    "small": {
        "vocab_size": 2048,
        "hidden_size": 256,
        "layers": 4,
        "vision_depth": 2,
        "vision_hidden_size": 64,
        "image_min_pixels": 28 * 28,
        "image_max_pixels": 28 * 28,
    },
}


def ensure_random_model(out_dir: str | Path, size: str, *, seed: int = 0) -> Path:
    """The random checkpoint ``size`` (:data:`MODEL_SIZES`) at ``out_dir``, built once.

    A folder that already holds a checkpoint is kept as it is (same seed, same weights:
    delete it to rebuild).
    """
    out = Path(out_dir)
    if size not in MODEL_SIZES:
        raise ValueError(f"model size {size!r}: expected one of {sorted(MODEL_SIZES)}")
    if (out / "config.json").is_file():
        return out
    return build_tiny_model(out, seed=seed, **MODEL_SIZES[size])
