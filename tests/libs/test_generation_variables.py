"""`launchdeck.libs.generation.variables`: a job's matrix or rows as items, in a stable order,
within a bound, with errors that name the field, the line or the row."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from launchdeck.libs import prompts
from launchdeck.libs.generation import variables as v
from launchdeck.libs.generation.variables import VariablesError


def error_of(call: object, *args: object, **kwargs: object) -> VariablesError:
    assert callable(call)
    with pytest.raises(VariablesError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_matrix_is_the_cross_product_with_the_first_key_outermost() -> None:
    """The last key varies fastest, so item indexes are stable for one request."""
    result = v.expand_matrix(
        {"service": ["repair", "install"], "city": ["Austin", "Waco", "Dallas"]}
    )
    assert result.names == ("service", "city")
    assert result.items == [
        {"service": "repair", "city": "Austin"},
        {"service": "repair", "city": "Waco"},
        {"service": "repair", "city": "Dallas"},
        {"service": "install", "city": "Austin"},
        {"service": "install", "city": "Waco"},
        {"service": "install", "city": "Dallas"},
    ]


@given(st.lists(st.integers(1, 4), min_size=1, max_size=4))
def test_item_index_is_the_mixed_radix_number_of_its_value_positions(sizes: list[int]) -> None:
    """Item i holds, for each key, the value at digit k of i in base (len of later lists)."""
    matrix = {f"k{j}": list(range(size)) for j, size in enumerate(sizes)}
    items = v.expand_matrix(matrix).items
    assert len(items) == math.prod(sizes)
    for index, item in enumerate(items):
        rest = index
        for j in reversed(range(len(sizes))):
            rest, digit = divmod(rest, sizes[j])
            assert item[f"k{j}"] == digit


def test_matrix_values_are_scalars_and_an_empty_matrix_is_one_item() -> None:
    """Numbers and booleans keep their type; `{}` is one item without variables."""
    assert v.expand_matrix({"n": [1, 2.5, True]}).items == [{"n": 1}, {"n": 2.5}, {"n": True}]
    assert v.expand_matrix({}) == v.Expansion((), [{}])


@pytest.mark.parametrize(
    ("matrix", "field", "fragment"),
    [
        ([1, 2], "variables", "object of lists"),
        ({"city": "Austin"}, "variables.city", "non-empty list"),
        ({"city": []}, "variables.city", "non-empty list"),
        ({"city": ["a", {"x": 1}]}, "variables.city[1]", "string, number or boolean"),
        ({"city": ["a", None]}, "variables.city[1]", "string, number or boolean"),
        ({"n": [float("nan")]}, "variables.n[0]", "string, number or boolean"),
        ({"service area": ["a"]}, "variables.service area", "not a valid name"),
        ({"1st": ["a"]}, "variables.1st", "not a valid name"),
        ({"steps": ["a"]}, "variables.steps", "reserved"),
    ],
)
def test_a_bad_matrix_names_its_field(matrix: object, field: str, fragment: str) -> None:
    """Each refusal carries the path the API turns into a 422 field error."""
    error = error_of(v.expand_matrix, matrix)
    assert error.field == field
    assert fragment in error.message


def test_the_bound_is_checked_before_expanding_and_names_the_sizes() -> None:
    """1,000 x 1,000 x 1,000 is refused at once (a billion dicts would never be built)."""
    big = {"a": list(range(1000)), "b": list(range(1000)), "c": list(range(1000))}
    error = error_of(v.expand_matrix, big)
    assert error.field == "variables"
    assert error.message == (
        "1,000,000,000 items is more than the limit of 100,000 (a 1000 x b 1000 x c 1000)"
    )
    assert len(v.expand_matrix({"a": [1, 2], "b": [1, 2]}, max_items=4).items) == 4
    assert error_of(v.expand_matrix, {"a": [1, 2], "b": [1, 2, 3]}, max_items=5).field == (
        "variables"
    )


def test_reserved_names_match_the_prompt_renderer() -> None:
    """`steps` is where templates read earlier outputs, so no variable may take it."""
    assert v.RESERVED_NAMES == prompts.RESERVED_VARIABLES


def test_inline_rows_keep_their_order_and_collect_names_in_first_seen_order() -> None:
    """Rows may differ in keys; names are the union, for the export's columns."""
    result = v.expand_rows([{"name": "Bo's", "city": "Austin"}, {"name": "Al", "phone": "1"}])
    assert result.names == ("name", "city", "phone")
    assert result.items[1] == {"name": "Al", "phone": "1"}


def test_inline_rows_errors_name_the_row_index() -> None:
    """`rows[1]` is the second row (0-based, as a JSON path)."""
    assert error_of(v.expand_rows, [{"a": 1}, "x"]).field == "rows[1]"
    assert error_of(v.expand_rows, [{"a": 1}, {"steps": 1}]).field == "rows[1]"
    assert error_of(v.expand_rows, {"a": 1}).field == "rows"
    assert error_of(v.expand_rows, []).message == "no rows"
    assert "limit of 2" in error_of(v.expand_rows, [{}, {}, {}], max_items=2).message


def test_jsonl_is_read_from_chunks_cut_anywhere() -> None:
    """Chunk boundaries inside a line or a UTF-8 character change nothing; blank lines are
    skipped; CRLF and a BOM are accepted."""
    text = '\ufeff{"city": "Zürich", "n": 1}\r\n\n  \n{"city": "Köln"}\n{"city": "Åre"}'
    data = text.encode()
    for size in (1, 2, 3, 7, len(data)):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        result = v.read_jsonl(chunks)
        assert result.names == ("city", "n")
        assert result.items == [{"city": "Zürich", "n": 1}, {"city": "Köln"}, {"city": "Åre"}]
    assert v.read_jsonl(['{"a": 1}\n{"a"', ": 2}\n"]).items == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ('{"a": 1}\n\n{"a": 2,}\n', "rows[1]", "line 3: invalid JSON"),
        ('{"a": 1}\n[1, 2]\n', "rows[1]", "line 2: must be an object"),
        ('{"a": 1}\n{"bad name": 1}\n', "rows[1]", "line 2: 'bad name' is not a valid name"),
        ("\n\n", "rows", "no rows"),
    ],
)
def test_jsonl_errors_name_the_line(text: str, field: str, message: str) -> None:
    """Line numbers count blank lines; the field is the index of the item it would be."""
    error = error_of(v.read_jsonl, [text.encode()])
    assert error.field == field
    assert error.message.startswith(message)


def test_uploads_are_bounded_while_read() -> None:
    """The limit stops the read at the first row past it; an endless line is refused too."""

    def endless() -> object:
        while True:
            yield b'{"a": 1}\n'

    error = error_of(v.read_jsonl, endless(), max_items=10)
    assert (error.field, error.message) == ("rows", "line 11: more than the limit of 10 items")
    error = error_of(v.read_jsonl, (b"x" * 65536 for _ in range(20)))
    assert "longer than" in error.message
    assert "not UTF-8" in error_of(v.read_jsonl, [b'{"a": "\xff"}\n']).message


def test_csv_rows_are_strings_under_the_header() -> None:
    """Quoted cells may hold commas and newlines, even across chunk boundaries."""
    data = b'name,city\r\n"Smith, Jones",Austin\r\n\r\n"two\nlines",Waco\r\n'
    for size in (1, 5, len(data)):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        result = v.read_csv(chunks)
        assert result.names == ("name", "city")
        assert result.items == [
            {"name": "Smith, Jones", "city": "Austin"},
            {"name": "two\nlines", "city": "Waco"},
        ]


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("name,,city\na,b,c\n", "rows", "header, column 2: an empty name"),
        ("name,city,name\na,b,c\n", "rows", "header, column 3: 'name' appears twice"),
        ("name,steps\na,b\n", "rows", "header, column 2: 'steps' is reserved"),
        ("a,b\n1,2\n1,2,3\n", "rows[1]", "row 3 (line 3): 3 values, the header has 2"),
        ("a,b\n1,2\n\n1\n", "rows[1]", "row 4 (line 4): 1 values, the header has 2"),
        ("", "rows", "no header row"),
        ("a,b\n", "rows", "no rows"),
        ('a,b\n1,"2\n', "rows[0]", "line 2: unexpected end of data"),
    ],
)
def test_csv_errors_name_the_row(text: str, field: str, message: str) -> None:
    """Rows are numbered as a spreadsheet shows them (the header is row 1)."""
    error = error_of(v.read_csv, [text])
    assert error.field == field
    assert error.message.startswith(message), error.message


def test_a_job_has_a_matrix_or_rows_never_both_never_neither() -> None:
    """`expand_job` takes the request's two fields; uploads use `check_one_source`."""
    assert v.expand_job(variables={"a": [1]}).items == [{"a": 1}]
    assert v.expand_job(rows=[{"a": 1}]).items == [{"a": 1}]
    assert "not both" in error_of(v.expand_job, {"a": [1]}, [{"a": 1}]).message
    assert error_of(v.expand_job).field == "variables"
    with pytest.raises(VariablesError, match="not both"):
        v.check_one_source(variables_given=True, rows_given=True)
    v.check_one_source(variables_given=False, rows_given=True)
