"""Progress bars for long work (ingest, re-embedding, backfills): tqdm's when it is installed (the
``vectorpg[ingest]`` extra has it), else none; the work is the same either way."""

from __future__ import annotations

from typing import Any


class _Silent:
    """What a bar does without tqdm: counts, shows nothing."""

    def __init__(self, total: int | None = None, **_options: Any) -> None:
        self.total = total
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **_values: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(*, total: int | None, desc: str, unit: str, disable: bool = False) -> Any:
    """A tqdm bar (``update``, ``set_postfix``, ``close``, ``n``), or a silent one without tqdm."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _Silent(total)
    return tqdm(total=total, desc=desc, unit=unit, disable=disable)
