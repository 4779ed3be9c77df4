"""The verifiers parser: the program in a completion (the rule in :mod:`llm3d.program`)."""

from __future__ import annotations

from typing import Any

import verifiers as vf

from llm3d.program import extract_code, format_score

__all__ = ["Blender3DParser"]


def _text(content: Any) -> str:
    """A message content as text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return "" if content is None else str(content)


class Blender3DParser(vf.Parser):  # type: ignore[misc]
    """Extracts the ``bpy_lib`` program: the last fenced block that imports ``bpy_lib``,
    else the last Python block, else bare code, else ``""`` (scored as ``empty``)."""

    def parse(self, text: str) -> str:
        """The program in ``text`` (``""`` when there is none)."""
        return extract_code(text).code

    def parse_answer(self, completion: Any) -> str:
        """The program in the last assistant message (``""`` when there is none)."""
        if isinstance(completion, str):
            return self.parse(completion)
        assistant = [m for m in completion if m.get("role") == "assistant"]
        if not assistant:
            return ""
        return self.parse(_text(assistant[-1].get("content")))

    def get_format_reward_func(self) -> Any:
        """Share of the three format checks of DESIGN §4 (:func:`llm3d.program.format_score`, which the reward uses too)."""

        def format_reward_func(completion: Any, **kwargs: Any) -> float:
            return float(format_score(self.parse_answer(completion)))

        return format_reward_func
