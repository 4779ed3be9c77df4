"""The shared rules about a model's program (llm3d/program.py): which block of an answer is the
program, whether a program imports bpy_lib, how an error is told to the model; and that every
part that applies them (add-on, environment, reward, sandbox) gives the same answer."""

from __future__ import annotations

import pytest

from llm3d.program import (
    PROGRAM_FILENAME,
    describe_error,
    extract_code,
    format_checks,
    imports_bpy_lib,
)

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


# Answers where the old add-on rule (the first fenced block, else the whole text) and the
# environment's rule disagreed; every part must now take the same program from each.
ANSWERS = [
    "Example:\n" + fence("box()\n") + "The program:\n" + fence(PROGRAM),
    fence("from bpy_lib import *\nbox()\n") + "Fixed:\n" + fence(PROGRAM),
    fence(PROGRAM) + "Run it with:\n" + fence("llm3d run chair.py", "bash"),
    "I cannot see the image clearly, sorry.",
    "<think>" + fence(PROGRAM) + "</think>",
    "Here:\n" + PROGRAM,
    fence(PROGRAM, marks="~~~"),
]


@pytest.mark.parametrize("answer", ANSWERS)
def test_addon_environment_and_eval_take_the_same_program(answer: str) -> None:
    """The add-on (addon/client.py), the verifiers parser (environment, eval runner) and the
    trainers all extract through llm3d.program: a model trained through the environment gets
    the same program built in Blender by the add-on."""
    from addon.client import extract_code as addon_extract
    from environments.blender_3d.parser import Blender3DParser

    expected = extract_code(answer).code
    assert addon_extract(answer) == expected
    assert Blender3DParser().parse_answer(answer) == expected
    if "Example:" in answer or "Fixed:" in answer or "Run it" in answer:
        assert expected == PROGRAM


IMPORT_CASES = [
    ("from bpy_lib import *\n", True),
    ("from bpy_lib import box, export_scene\n", True),
    ("import bpy_lib\n", True),
    ("from bpy_lib.export import scene_arrays\n", True),
    ("  from bpy_lib import box", True),  # does not parse (indent): read line by line
    ("from bpy_lib import *\nbox(\n", True),  # truncated: still imports it
    ("# from bpy_lib import *\nbox()\n", False),
    ("s = 'from bpy_lib import *'\n", False),
    ("from .bpy_lib import box\n", False),
    ("import bpy\nfrom bpy_library import x\n", False),
    ("x = 1\n", False),
]


@pytest.mark.parametrize(("code", "expected"), IMPORT_CASES)
def test_imports_bpy_lib_is_one_rule_for_gate_format_and_extraction(
    code: str, expected: bool
) -> None:
    """The sandbox's gate (empty vs not), the reward's format check and the extraction's
    choice of block all ask the same question, and so never disagree."""
    from worker.sandbox.policy import check_policy

    assert imports_bpy_lib(code) is expected
    assert format_checks(code).imports_bpy_lib is expected
    assert check_policy(code, ("bpy_lib", "math")).imports_bpy_lib is expected
    # a program block followed by a snippet: the program wins exactly when it imports bpy_lib
    picked = extract_code(fence(code.rstrip("\n") + "\n") + fence("box()\n")).code
    assert (picked == code.strip("\n").rstrip() + "\n") is expected


def _raise_in_program(source: str) -> BaseException:
    try:
        exec(compile(source, PROGRAM_FILENAME, "exec"), {})
    except BaseException as exc:
        return exc
    raise AssertionError("the program did not fail")


def test_describe_error_names_type_message_and_the_programs_line() -> None:
    exc = _raise_in_program("x = 1\ny = 2\nraise ValueError('box(size): must be positive')\n")
    assert describe_error(exc) == "ValueError: box(size): must be positive (line 3)"
    syntax = _raise_in_program("x = 1\nbox(\n")
    assert describe_error(syntax).startswith("SyntaxError: ")
    assert describe_error(syntax).endswith("(line 2)")
    assert describe_error(MemoryError(), memory_mb=2048) == (
        "MemoryError: the program ran out of memory (each program may use 2048 MiB)"
    )


def test_describe_error_is_one_bounded_line_even_for_hostile_messages() -> None:
    class HostileError(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert describe_error(HostileError()) == "HostileError: <unprintable message>"
    long = describe_error(ValueError("word\n" * 500))
    assert "\n" not in long and len(long) <= len("ValueError: ") + 400


def test_the_farm_and_the_addon_describe_errors_with_the_same_rule() -> None:
    """Both places that run programs report a failure through llm3d.program.describe_error."""
    import ast
    import inspect

    import addon.runner as addon_runner
    from worker.execution import blender_child

    for module in (blender_child, addon_runner):
        tree = ast.parse(inspect.getsource(module))
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert not defined & {"describe_error", "describe_exception"}, module.__name__
        assert module.describe_error is describe_error
