"""Refresh some adapters' figures in an existing report (``python -m bench --update FILE``).

A full run takes the better part of an hour; after changing one adapter, only its figures need
measuring again. This puts the new ones in place of the old — the adapter's own table, its rows
of the growth and walk tables, its call-outs — and says under the report's title which adapters
were refreshed, by which command, when, at which commit and under what load. Everything else in
the report stays as the full run wrote it.
"""

from __future__ import annotations

import re

from . import scaling


def _blocks(text: str) -> list[str]:
    """The report split before every ``## `` or ``### `` heading."""
    return re.split(r"(?m)^(?=#{2,3} )", text)


def _rows(table: str, name: str) -> list[str]:
    return [line for line in table.splitlines() if line.startswith(f"| {name} |")]


def _replace_rows(block: str, header: str, name: str, rows: list[str]) -> str:
    """In the table of ``block`` whose first line is ``header``, put ``rows`` where ``name``'s were
    (at the end when it had none)."""
    lines = block.split("\n")
    try:
        start = lines.index(header)
    except ValueError:
        return block
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    table = lines[start:end]
    kept = [line for line in table if not line.startswith(f"| {name} |")]
    at = next((i for i, line in enumerate(table) if line.startswith(f"| {name} |")), len(table))
    at -= sum(1 for line in table[:at] if line.startswith(f"| {name} |"))
    return "\n".join(lines[:start] + kept[:at] + rows + kept[at:] + lines[end:])


def _replace_flags(block: str, name: str, flags: list[str]) -> str:
    lines = [line for line in block.split("\n") if not line.startswith(f"- {name}: ")]
    bullets = [f"- {flag}" for flag in flags]
    if not bullets:
        if not any(line.startswith("- ") for line in lines):
            bullets = ["- nothing."]
    else:
        lines = [line for line in lines if line != "- nothing."]
    last = max((i for i, line in enumerate(lines) if line.startswith("- ")), default=None)
    if last is None:
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join([*lines, "", *bullets, "", ""])
    return "\n".join(lines[: last + 1] + bullets + lines[last + 1 :])


def merge(
    old: str,
    adapter_tables: dict[str, str],
    growth_rows: list[tuple[str, scaling.Growth]],
    walk_rows: list[tuple[str, scaling.Walk, float]],
    note: str,
    sections: dict[str, str] | None = None,
) -> str:
    """``old`` with the adapters' figures replaced by the new ones and ``note`` under the title.

    :param adapter_tables: adapter -> its whole ``### …`` subsection as a fresh run writes it.
    :param sections: whole ``## …`` sections measured again (the expiry events under load): each
        replaces the old one of the same heading, or is added at the end.
    """
    whole = {text.split("\n", 1)[0]: text for text in (sections or {}).values()}
    blocks = _blocks(old)
    growth_header = scaling.growth_table([]).splitlines()[0]
    walk_header = scaling.walk_table([]).splitlines()[0]
    titles = {table.splitlines()[0]: table for table in adapter_tables.values()}
    out: list[str] = []
    for block in blocks:
        heading = block.split("\n", 1)[0]
        if heading in titles:
            block = titles.pop(heading).rstrip("\n") + "\n\n"
        elif heading in whole:
            block = whole.pop(heading).rstrip("\n") + "\n\n"
        elif heading == "## How cost grows with a scope":
            for name, growth in growth_rows:
                rows = _rows(scaling.growth_table([(name, growth)]), name)
                block = _replace_rows(block, growth_header, name, rows)
                flags = scaling.flags([(name, growth)], [w for w in walk_rows if w[0] == name])
                block = _replace_flags(block, name, flags)
            for name, walk, fill_s in walk_rows:
                rows = _rows(scaling.walk_table([(name, walk, fill_s)]), name)
                block = _replace_rows(block, walk_header, name, rows)
        out.append(block)
    if whole and out:
        out[-1] = out[-1].rstrip("\n") + "\n\n"
    out += [text.rstrip("\n") + "\n" for text in whole.values()]
    text = "".join(out)
    if titles:
        raise ValueError(f"the report has no section {', '.join(titles)} to refresh")
    head, _, rest = text.partition("\n\n")
    rest_lines = rest.split("\n")
    # the title's paragraph, then one "Refreshed" line per refreshed set of adapters (newest kept)
    subject = note.split(" figures ", 1)[0]
    rest_lines = [line for line in rest_lines if not line.startswith(subject + " figures ")]
    paragraph_end = rest_lines.index("") if "" in rest_lines else len(rest_lines)
    rest_lines[paragraph_end:paragraph_end] = ["", note]
    return re.sub(r"\n{3,}", "\n\n", head + "\n\n" + "\n".join(rest_lines))
