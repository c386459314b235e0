"""The JSON Lines form: compact UTF-8 lines out, every bad line found with its number going in."""

from __future__ import annotations

import io
import json

import pytest
from transfer_data import SAMPLE_VALUES

from iii_state_core import Capabilities
from iii_state_core.operations import Limits
from iii_state_core.transfer import (
    Entry,
    InvalidLinesError,
    LineProblem,
    encode_line,
    parse_line,
    read_jsonl,
    validate_jsonl,
    write_jsonl,
)
from iii_state_core.transfer.jsonl import iter_jsonl


def test_lines_are_compact_utf8_with_non_ascii_kept() -> None:
    line = encode_line(Entry("Zoë", "🔑", {"a": [1, 2.5], "s": "中文\u2028"}))
    assert line == '{"scope":"Zoë","key":"🔑","value":{"a":[1,2.5],"s":"中文\u2028"}}\n'.encode()
    assert line.count(b"\n") == 1  # U+2028 stays inside the line: the line break is \n only


@pytest.mark.parametrize("value", SAMPLE_VALUES)
def test_every_sample_value_round_trips_exactly(value: object) -> None:
    stream = io.BytesIO()
    write_jsonl([Entry("s", "k", value), Entry("", "", value)], stream)
    stream.seek(0)
    back = list(read_jsonl(stream))
    assert [json.dumps(e.value) for e in back] == [json.dumps(value)] * 2
    assert [type(e.value) for e in back] == [type(value)] * 2  # 1.0 stays a float, [] a list


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"scope":"s","key":"k","value":1', "not valid JSON"),
        (b"[1,2]", 'expected a JSON object {"scope", "key", "value"}, got array'),
        (b'{"scope":"s","key":"k"}', 'missing field "value"'),
        (b'{"key":"k"}', 'missing field "scope", "value"'),
        (b'{"scope":"s","key":"k","value":1,"extra":2}', 'unknown field "extra"'),
        (b'{"scope":1,"key":"k","value":1}', '"scope" must be a string, got number'),
        (b'{"scope":"s","key":null,"value":1}', '"key" must be a string, got null'),
        (b'{"scope":"s","key":"k","value":NaN}', "NaN"),
        (b'{"scope":"s","key":"k","value":1e999}', "inf"),
        (b'{"scope":"s","key":"k","value":18446744073709551616}', "outside the supported range"),
        (b'{"scope":"\\ud800","key":"k","value":1}', "lone surrogate"),
        (b'{"scope":"s","key":"k","value":"\\udfff"}', "lone surrogate"),
        (b'{"scope":"s","key":"k","value":' + b"[" * 200 + b"]" * 200 + b"}", "nests deeper"),
        (b'{"scope":"s","key":"k","value":"\xff"}', "not UTF-8 text (byte 0xff at column 33)"),
    ],
)
def test_each_kind_of_bad_line_has_a_reason(line: bytes, reason: str) -> None:
    parsed = parse_line(line)
    assert isinstance(parsed, str), parsed
    assert reason in parsed


def test_the_target_limits_are_checked_per_line() -> None:
    limits = Limits(Capabilities(max_key_bytes=4, max_value_bytes=10), adapter_name="tiny")
    too_long = parse_line(b'{"scope":"s","key":"12345","value":1}', limits)
    assert "tiny adapter holds at most 4 bytes" in str(too_long)
    assert "exceeds the tiny adapter's limit of 10" in str(
        parse_line(b'{"scope":"s","key":"k","value":"0123456789"}', limits)
    )
    fits = parse_line(b'{"scope":"s","key":"1234","value":"01234567"}', limits)
    assert fits == Entry("s", "1234", "01234567")


def test_blank_lines_are_skipped_and_crlf_is_accepted() -> None:
    data = b'\n{"scope":"s","key":"a","value":1}\r\n   \n{"scope":"s","key":"b","value":2}'
    assert [item for _, item in iter_jsonl(io.BytesIO(data))] == [Entry("s", "a", 1), Entry("s", "b", 2)]
    assert [n for n, _ in iter_jsonl(io.BytesIO(data))] == [2, 4]


def test_validation_reports_every_bad_line_with_its_number() -> None:
    lines = [encode_line(Entry("s", f"k{i}", i)) for i in range(1, 101)]
    lines[36] = b'{"scope":"s","key":"k37","value":}\n'
    lines[79] = b'{"scope":"s","key":80}\n'
    result = validate_jsonl(io.BytesIO(b"".join(lines)))
    assert not result.ok
    assert (result.entries, result.invalid) == (98, 2)
    assert [p.line for p in result.problems] == [37, 80]
    assert "not valid JSON" in result.problems[0].reason
    assert 'missing field "value"' in result.problems[1].reason
    assert str(result.problems[0]).startswith("line 37: ")


def test_read_stops_at_the_first_bad_line_unless_skipping() -> None:
    data = b'{"scope":"s","key":"a","value":1}\nnope\n{"scope":"s","key":"b","value":2}\n'
    reader = read_jsonl(io.BytesIO(data))
    assert next(reader) == Entry("s", "a", 1)
    with pytest.raises(InvalidLinesError) as caught:
        next(reader)
    assert caught.value.problems == [LineProblem(2, caught.value.problems[0].reason)]
    assert list(read_jsonl(io.BytesIO(data), skip_invalid=True)) == [Entry("s", "a", 1), Entry("s", "b", 2)]


def test_an_overlong_line_is_reported_without_reading_it_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from iii_state_core.transfer import jsonl

    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 64)
    data = b'{"scope":"s","key":"a","value":1}\n' + b"x" * 500 + b'\n{"scope":"s","key":"b","value":2}\n'
    items = list(iter_jsonl(io.BytesIO(data)))
    assert items[0] == (1, Entry("s", "a", 1))
    number, problem = items[1]
    assert number == 2 and isinstance(problem, LineProblem) and "longer than 64" in problem.reason
    assert items[2] == (3, Entry("s", "b", 2))
