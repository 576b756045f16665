"""`launchdeck.libs.prompts`: strict sandboxed rendering of a template's steps, the bounds it
keeps, and JSON Schema checks of schemas and outputs."""

from __future__ import annotations

import json

import pytest

from launchdeck.contracts import api
from launchdeck.libs import prompts
from launchdeck.libs.prompts import RenderError, Step, check_schema, check_syntax, validate_output

OUTLINE = Step(
    "outline",
    "Outline a page for {{ business }} in {{ city }}.",
    "json",
    {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "sections": {"type": "array", "items": {"type": "string"}},
            "words": {"type": "integer", "minimum": 300},
        },
        "required": ["title", "sections"],
    },
)
PAGE = Step(
    "page",
    "Write {{ steps.outline.output.title }} ({{ steps.outline.output.words }} words):\n"
    "{% for s in steps.outline.output.sections %}\n- {{ s }}\n{% endfor %}",
)


def error_of(prompt: str, variables: dict[str, object] | None = None) -> prompts.PromptError:
    with pytest.raises(RenderError) as caught:
        prompts.render_prompt("s", prompt, variables or {})
    return caught.value.error


def test_variables_render_and_an_undefined_one_is_an_error_with_its_line() -> None:
    """StrictUndefined: a missing variable is an error naming it and its line, never ''."""
    assert prompts.render_prompt("s", "Hi {{ who }}!", {"who": "Ada"}) == "Hi Ada!"
    error = error_of("line one\nline two {{ city }}", {"who": "Ada"})
    assert (error.step, error.line) == ("s", 2)
    assert error.message == "'city' is undefined"
    assert str(error) == "step 's', line 2: 'city' is undefined"


def test_a_variable_value_is_data_not_a_template() -> None:
    assert prompts.render_prompt("s", "{{ v }}", {"v": "{{ 7 * 7 }}"}) == "{{ 7 * 7 }}"


def test_earlier_outputs_in_a_dry_run_are_placeholders_of_the_schema_shape() -> None:
    """Step 2 sees step 1's output as `steps.outline.output`: for json, a value of its shape."""
    rendered = prompts.render_steps([OUTLINE, PAGE], {"business": "Joe's", "city": "Lyon"})
    assert [r.name for r in rendered] == ["outline", "page"]
    assert rendered[0].prompt == "Outline a page for Joe's in Lyon."
    assert rendered[1].prompt == "Write <outline>.title (300 words):\n- <outline>.sections[0]\n"
    text = prompts.render_steps([Step("a", "A"), Step("b", "[{{ steps.a.output }}]")], {})
    assert text[1].prompt == "[<output of step a>]"


def test_earlier_outputs_given_are_used() -> None:
    """The generator passes the real outputs of earlier steps."""
    outline = {"title": "Plumbing", "sections": ["Leaks", "Boilers"], "words": 500}
    rendered = prompts.render_steps(
        [OUTLINE, PAGE], {"business": "B", "city": "C"}, {"outline": outline}
    )
    assert rendered[1].prompt == "Write Plumbing (500 words):\n- Leaks\n- Boilers\n"


def test_a_later_step_is_not_visible_and_steps_is_reserved() -> None:
    with pytest.raises(RenderError) as caught:
        prompts.render_steps([Step("a", "{{ steps.b.output }}"), Step("b", "B")], {})
    assert caught.value.error.step == "a"
    assert "has no attribute 'b'" in caught.value.error.message
    with pytest.raises(RenderError, match="reserved"):
        prompts.render_steps([Step("a", "A")], {"steps": 1})


@pytest.mark.parametrize(
    "prompt",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ f.__globals__ }}",
        "{{ f.__code__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ ().__class__.__base__.__subclasses__() }}",
    ],
)
def test_sandbox_escapes_are_errors_not_data(prompt: str) -> None:
    error = error_of(prompt, {"f": test_sandbox_escapes_are_errors_not_data})
    assert error.message.startswith(("not allowed", "'")), error
    assert error.line == 1


def test_syntax_errors_name_the_line() -> None:
    [error] = check_syntax("page", "ok\n{% if x %}\nno end")
    assert error.step == "page"
    assert error.line == 3
    assert error.message.startswith("syntax error:")
    [error] = check_syntax("page", "a\nb {{ x }\n")
    assert error.line == 2
    assert check_syntax("page", "{% for x in xs %}{{ x }}{% endfor %}") == []


def test_hostile_text_is_a_syntax_error_not_a_crash() -> None:
    """Nesting past Python's compiler limits is reported like any syntax error."""
    assert check_syntax("s", "{{ " + "(" * 2000 + "1" + ")" * 2000 + " }}")
    [error] = check_syntax("s", "{% for a in b %}" * 30 + "x" + "{% endfor %}" * 30)
    assert "nested" in error.message


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", "loops"),
        ("{% for i in range(100000) %}{% endfor %}", "range()"),
        ("{{ 'x' * 100000000 }}", "repetition"),
        ("{{ [0] * 100000000 }}", "repetition"),
        ("{{ 2 ** 100000 }}", "power"),
        ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(1) }}", "recursion"),
    ],
)
def test_cpu_and_memory_bounds(prompt: str, message: str) -> None:
    assert message in error_of(prompt).message


def test_output_and_template_sizes_are_bounded() -> None:
    big = "{% for i in range(1000) %}" + "y" * 1000 + "{% endfor %}"
    assert "renders to more than" in error_of(big).message
    [error] = check_syntax("s", "x" * (prompts.MAX_PROMPT_CHARS + 1))
    assert "longer than" in error.message


def test_a_failing_expression_is_an_error_with_its_line() -> None:
    error = error_of("a\n\n{{ 1 + 'x' }}")
    assert error.line == 3
    assert "TypeError" in error.message


def test_the_api_bounds_are_the_library_bounds() -> None:
    assert api.PROMPT_MAX_CHARS == prompts.MAX_PROMPT_CHARS
    assert api.STEP_NAME_PATTERN == prompts.STEP_NAME_PATTERN


def test_check_schema() -> None:
    assert check_schema(OUTLINE.schema) == []
    assert check_schema({"type": "objekt"})
    [error] = check_schema({"properties": {"a": {"minimum": "three"}}})
    assert error.startswith("properties/a/minimum:")
    assert check_schema([1]) == ["must be a JSON object"]


def test_validate_output_names_each_problem() -> None:
    assert OUTLINE.schema is not None
    assert validate_output(OUTLINE.schema, {"title": "T", "sections": ["a"]}) == []
    errors = validate_output(OUTLINE.schema, {"title": 3, "sections": ["a", 2], "words": 10})
    assert errors == [
        "$.sections[1]: 2 is not of type 'string'",
        "$.title: 3 is not of type 'string'",
        "$.words: 10 is less than the minimum of 300",
    ]
    assert validate_output(OUTLINE.schema, {"sections": []}) == [
        "$: 'title' is a required property"
    ]


def test_parse_json_output_reads_a_fenced_block() -> None:
    assert prompts.parse_json_output('{"a": 1}') == {"a": 1}
    assert prompts.parse_json_output('Here:\n```json\n{"a": [1]}\n```\n') == {"a": [1]}
    with pytest.raises(json.JSONDecodeError):
        prompts.parse_json_output("no json here")
