"""The CLI's error contract, as the hostile-input tests check it: one line on stderr, no traceback."""

from __future__ import annotations


def one_line_error(capsys, *needles: str) -> str:
    """The single ``yt-bias ...: error: ...`` line captured on stderr; asserts it names every needle."""
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("yt-bias")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
