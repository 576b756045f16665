"""Prompt templates: checking and rendering a template's steps, and checking JSON outputs.

One module for the control-api (syntax checks at creation, the dry run) and the generator
(rendering each item's prompts, validating `json` outputs), so a template that passes the API's
checks renders the same way when a job runs it. No HTTP, NATS or Postgres here.

A step's prompt is a Jinja2 template rendered by a `SandboxedEnvironment`:

- undefined variables are errors (`StrictUndefined`), reported with the step and the line;
- autoescape is off (prompts are text, not HTML); `trim_blocks` and `lstrip_blocks` are on, so
  a `{% for %}` line leaves no blank line or indentation of its own in the prompt;
- the item's variables are top-level names (`{{ city }}`); the outputs of earlier steps are
  `{{ steps.<name>.output }}` — the text of a `text` step, the parsed value of a `json` step
  (`{{ steps.outline.output.title }}`). `steps` is therefore reserved as a variable name.
- variable values are data, never templates: a value containing `{{` is printed as is.

The sandbox refuses access to Python internals (`''.__class__.__mro__` is an error, not data).
What is bounded, per step: the template's size (`MAX_PROMPT_CHARS`), the rendered prompt
(`MAX_RENDERED_CHARS`, checked as it is produced), the iterations of all `{% for %}` loops of
one render together (`MAX_LOOP_ITERATIONS`), `range()` (`MAX_RANGE`), the size of a `*`
repetition and of a `**` power, and recursion (Python's own limit, reported as an error).
Not bounded: the cost of a single filter call on a large value (`replace`, `format` with a huge
width) — one reason only admins may write templates (docs/api.md).
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import jsonschema
from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.environment import Template
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

OutputKind = Literal["text", "json"]

MAX_PROMPT_CHARS = 64 * 1024
MAX_RENDERED_CHARS = 256 * 1024
MAX_LOOP_ITERATIONS = 100_000
MAX_RANGE = 10_000
# `**` with a larger exponent (or a base past it) could take minutes for one number.
MAX_EXPONENT = 1_000
MAX_VALIDATION_ERRORS = 20
STEP_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
RESERVED_VARIABLES = frozenset({"steps"})

_LOOP_FILTER = "_launchdeck_bounded_loop"
_iterations: contextvars.ContextVar[list[int]] = contextvars.ContextVar("prompt_loop_budget")


@dataclass(frozen=True)
class Step:
    """One step of a template: its prompt, and what the model answers (`json`: a value valid
    against `schema`)."""

    name: str
    prompt: str
    output: OutputKind = "text"
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class PromptError:
    """What is wrong with a step's prompt: `line` of the prompt when known."""

    step: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"step {self.step!r}" + (f", line {self.line}" if self.line else "")
        return f"{where}: {self.message}"


class RenderError(Exception):
    def __init__(self, error: PromptError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class RenderedStep:
    name: str
    output: OutputKind
    prompt: str


class _LimitExceeded(SecurityError):
    pass


def _bounded_loop(iterable: Iterable[Any]) -> Iterator[Any]:
    """Every `{% for %}` iterates through this (inserted at parse time): one budget per render."""
    budget = _iterations.get(None)
    for item in iterable:
        if budget is not None:
            budget[0] -= 1
            if budget[0] < 0:
                raise _LimitExceeded(f"loops ran more than {MAX_LOOP_ITERATIONS} iterations")
        yield item


def _safe_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise _LimitExceeded(f"range() of more than {MAX_RANGE} items")
    return r


class PromptEnvironment(SandboxedEnvironment):
    """The sandbox, with `*` and `**` checked before they run and every loop counted."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        ints = isinstance(left, int) and isinstance(right, int)
        if operator == "**" and ints and (abs(right) > MAX_EXPONENT or abs(left) > 2**64):
            raise _LimitExceeded("a power too large to compute")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                repeated = isinstance(seq, (str, list, tuple)) and isinstance(times, int)
                if repeated and len(seq) * times > MAX_RENDERED_CHARS:
                    raise _LimitExceeded("a repetition longer than a prompt may be")
        return super().call_binop(context, operator, left, right)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Jinja's private parse hook (3.1): the one place to see every loop before compiling.
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None)
        return tree


def _environment() -> PromptEnvironment:
    env = PromptEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters[_LOOP_FILTER] = _bounded_loop
    env.globals["range"] = _safe_range
    return env


ENV = _environment()


def _filename(step: str) -> str:
    return f"<step {step}>"


def _line_of(exc: BaseException, filename: str) -> int | None:
    """The template line where `exc` was raised: Jinja rewrites tracebacks so that template
    frames carry the template's filename and line."""
    line = getattr(exc, "lineno", None)
    if isinstance(exc, TemplateSyntaxError) and line:
        return int(line)
    tb: TracebackType | None = exc.__traceback__
    found = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            found = tb.tb_lineno
        tb = tb.tb_next
    return found


def _message(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "recursion too deep"
    if isinstance(exc, TemplateSyntaxError):
        return f"syntax error: {exc.message}"
    if isinstance(exc, UndefinedError):
        return str(exc.message)  # "'city' is undefined"
    if isinstance(exc, SecurityError):
        return f"not allowed: {exc}"
    return f"{type(exc).__name__}: {exc}"


# A job renders the same few prompts for every item: compiled once per process (Template
# objects are immutable and safe to share between threads). A failure is not cached.
@functools.lru_cache(maxsize=256)
def _compile(step: str, prompt: str) -> Template:
    """Raises RenderError naming the step (and the line) for a template that does not compile."""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise RenderError(PromptError(step, f"longer than {MAX_PROMPT_CHARS} characters"))
    filename = _filename(step)
    try:
        code = ENV.compile(prompt, name=step, filename=filename)
        return ENV.template_class.from_code(ENV, code, ENV.make_globals(None), None)
    # Hostile text can fail Jinja's parser or Python's own compiler in ways beyond
    # TemplateSyntaxError (nesting limits): all of it is the author's error to read.
    except Exception as exc:
        raise RenderError(PromptError(step, _message(exc), _line_of(exc, filename))) from None


def check_syntax(step: str, prompt: str) -> list[PromptError]:
    """The syntax errors of a prompt (at most one: Jinja stops at the first), with its line."""
    try:
        _compile(step, prompt)
    except RenderError as exc:
        return [exc.error]
    return []


def render_prompt(step: str, prompt: str, context: Mapping[str, Any]) -> str:
    """Render one prompt with `context`, within the bounds above; RenderError otherwise."""
    template = _compile(step, prompt)
    filename = _filename(step)
    token = _iterations.set([MAX_LOOP_ITERATIONS])
    parts: list[str] = []
    size = 0
    try:
        for chunk in template.generate(dict(context)):
            size += len(chunk)
            if size > MAX_RENDERED_CHARS:
                raise RenderError(
                    PromptError(step, f"the prompt renders to more than {MAX_RENDERED_CHARS} chars")
                )
            parts.append(chunk)
    except RenderError:
        raise
    # A template may raise anything its expressions can (TypeError for `1 + 'a'`, …): the
    # author's error to read, never the caller's crash.
    except Exception as exc:
        raise RenderError(PromptError(step, _message(exc), _line_of(exc, filename))) from None
    finally:
        _iterations.reset(token)
    return "".join(parts)


def placeholder(step: Step) -> Any:
    """What a dry run passes on as an earlier step's output: for `json`, a value of the
    schema's shape; for `text`, a marker naming the step."""
    if step.output == "json" and step.schema is not None:
        return _example(step.schema, f"<{step.name}>", depth=0)
    return f"<output of step {step.name}>"


def _example(schema: Any, label: str, *, depth: int) -> Any:
    if not isinstance(schema, Mapping) or depth > 20:
        return label
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _example(options[0], label, depth=depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    properties = schema.get("properties")
    if kind == "object" or (kind is None and isinstance(properties, Mapping)):
        if not isinstance(properties, Mapping):
            return {}
        return {
            str(name): _example(sub, f"{label}.{name}", depth=depth + 1)
            for name, sub in properties.items()
        }
    if kind == "array":
        return [_example(schema.get("items"), f"{label}[0]", depth=depth + 1)]
    if kind in ("integer", "number"):
        minimum = schema.get("minimum")
        return minimum if isinstance(minimum, (int, float)) and not isinstance(minimum, bool) else 0
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return label


def render_steps(
    steps: Sequence[Step],
    variables: Mapping[str, Any],
    outputs: Mapping[str, Any] | None = None,
) -> list[RenderedStep]:
    """Render every step in order. Step k sees `variables` and `steps.<name>.output` of the
    steps before it: from `outputs` when given (the generator, once it has them), else a
    placeholder (the dry run). RenderError for the first step that fails."""
    reserved = sorted(RESERVED_VARIABLES & set(variables))
    if reserved and steps:
        raise RenderError(
            PromptError(steps[0].name, f"{reserved[0]!r} is reserved, not a variable")
        )
    earlier: dict[str, dict[str, Any]] = {}
    rendered: list[RenderedStep] = []
    for step in steps:
        context = {**variables, "steps": {k: dict(v) for k, v in earlier.items()}}
        prompt = render_prompt(step.name, step.prompt, context)
        rendered.append(RenderedStep(step.name, step.output, prompt))
        if outputs is not None and step.name in outputs:
            earlier[step.name] = {"output": outputs[step.name]}
        else:
            earlier[step.name] = {"output": placeholder(step)}
    return rendered


# --- JSON Schema -------------------------------------------------------------------------------

_Validator = jsonschema.Draft202012Validator


def check_schema(schema: Any) -> list[str]:
    """Why `schema` is not a valid JSON Schema (Draft 2020-12), or nothing."""
    if not isinstance(schema, Mapping):
        return ["must be a JSON object"]
    try:
        _Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return [f"{where or '(root)'}: {exc.message}"]
    except RecursionError:
        return ["nested too deeply"]
    return []


def validate_output(schema: Mapping[str, Any], value: Any) -> list[str]:
    """Why `value` does not fit `schema` (readable, one line each, at most
    `MAX_VALIDATION_ERRORS`), or nothing. `schema` must have passed `check_schema`."""
    validator = _Validator(schema, format_checker=_Validator.FORMAT_CHECKER)
    errors: list[str] = []
    try:
        found = sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    except RecursionError:
        return ["nested too deeply to validate"]
    for error in found[:MAX_VALIDATION_ERRORS]:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        errors.append(f"${path}: {error.message}")
    return errors


def parse_json_output(text: str) -> Any:
    """A `json` step's answer as a value: the text itself, or the first fenced ```json block
    (models often wrap it). Raises ValueError when neither is JSON."""
    try:
        return json.loads(text)
    except ValueError:
        match = _FENCED.search(text)
        if match is None:
            raise
        return json.loads(match["body"])


_FENCED = re.compile(r"```(?:json)?\s*\n(?P<body>.*?)\n\s*```", re.DOTALL)
