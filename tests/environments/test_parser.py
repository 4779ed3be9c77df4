"""The program extraction rules (environments/blender_3d/codeblocks.py) and the parser."""

from __future__ import annotations

import pytest

from environments.blender_3d.codeblocks import extract_code

PROGRAM = "from bpy_lib import *\n# part_1: seat\nbox(size=[1, 1, 0.1])\nexport_scene()\n"


def fence(code: str, tag: str = "python", marks: str = "```") -> str:
    return f"{marks}{tag}\n{code}{marks}\n"


def test_one_fenced_block_is_the_program() -> None:
    got = extract_code("Here is the chair:\n" + fence(PROGRAM) + "Done.")
    assert got.code == PROGRAM
    assert (got.source, got.blocks, got.truncated) == ("fenced", 1, False)


@pytest.mark.parametrize("tag", ["", "py", "Python", "python3"])
def test_python_tags_and_untagged_blocks_count(tag: str) -> None:
    assert extract_code(fence(PROGRAM, tag)).code == PROGRAM


def test_several_blocks_the_last_that_imports_bpy_lib_wins() -> None:
    draft = "from bpy_lib import *\nbox()\nexport_scene()\n"
    usage = "print(parts())\n"  # a trailing snippet without the import does not displace it
    text = fence(draft) + "Better:\n" + fence(PROGRAM) + "Check with:\n" + fence(usage)
    got = extract_code(text)
    assert got.code == PROGRAM
    assert got.blocks == 3


def test_several_blocks_without_import_the_last_python_block_wins() -> None:
    got = extract_code(fence("box()\n") + fence("sphere()\n"))
    assert got.code == "sphere()\n"


def test_blocks_in_other_languages_are_never_the_program() -> None:
    text = fence("pip install bpy_lib\n", "bash") + fence(PROGRAM)
    assert extract_code(text).code == PROGRAM
    assert extract_code(fence("just words\n", "text")).code == ""
    # not even through the bare-code fallback
    assert extract_code("Output:\n" + fence(PROGRAM, "text")).code == ""


def test_tilde_fences_and_longer_backtick_fences() -> None:
    assert extract_code(fence(PROGRAM, marks="~~~")).code == PROGRAM
    inner = PROGRAM + "# ```not a fence end```\n"
    assert extract_code(fence(inner, marks="````")).code == inner


def test_an_unclosed_fence_runs_to_the_end() -> None:
    got = extract_code("Sure!\n```python\n" + PROGRAM)
    assert got.code == PROGRAM
    assert got.truncated


def test_think_sections_are_ignored() -> None:
    text = "<think>\n" + fence("from bpy_lib import *\nsphere()\n") + "</think>\n" + fence(PROGRAM)
    assert extract_code(text).code == PROGRAM
    # an unterminated think section hides everything after it
    assert extract_code("<think>" + fence(PROGRAM)).code == ""


def test_bare_code_is_taken_whole_when_it_parses() -> None:
    got = extract_code(PROGRAM)
    assert (got.code, got.source) == (PROGRAM, "bare")


def test_bare_code_after_prose_starts_at_the_import() -> None:
    got = extract_code("The object is a chair. Program:\n" + PROGRAM)
    assert got.code == PROGRAM
    assert got.source == "bare"


@pytest.mark.parametrize(
    "text", [None, "", "   \n", "I cannot see the image.", "box()  # no import"]
)
def test_no_program_is_empty(text: str | None) -> None:
    got = extract_code(text)
    assert (got.code, got.source) == ("", "none")


def test_verifiers_parser_reads_the_last_assistant_message() -> None:
    from environments.blender_3d.parser import Blender3DParser

    parser = Blender3DParser()
    completion = [
        {"role": "assistant", "content": "draft:\n" + fence("from bpy_lib import *\nbox()\n")},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": [{"type": "text", "text": fence(PROGRAM)}]},
    ]
    assert parser.parse_answer(completion) == PROGRAM
    assert parser.parse_answer([{"role": "user", "content": "hi"}]) == ""
    assert parser.parse_answer(fence(PROGRAM)) == PROGRAM
    fmt = parser.get_format_reward_func()
    assert fmt(completion=completion) == pytest.approx(1.0)
    assert fmt(completion=[{"role": "assistant", "content": "box()"}]) == pytest.approx(0.0)
