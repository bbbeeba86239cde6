"""The benchmark suite in one run: ``python -m benchmarks run [--quick] [--only NAME,...]`` (or ``vectorpg bench``).

Starts its own embedded PostgreSQL (data in ``benchmarks/.cache/pg``), runs every comparison in a fresh
database, and writes ``benchmarks/RESULTS.md`` (tables, goals met or missed with the measured ratios, the
machine, PostgreSQL, pgvector and library versions) with PNG plots in ``benchmarks/results/``. ``--quick``
uses small synthetic data (a smoke run of a few minutes); the full run uses Fashion-MNIST, the Python docs
and 10k / 100k / 1M clustered vectors. The LangChain peer is installed into its own virtualenv on first use.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import common, datasets
from benchmarks.common import Context, Section

ROOT = Path(__file__).resolve().parent
SUITE = ("ingest", "query", "filtered", "ann", "concurrency", "growth")
#: the number each comparison has in RESULTS.md
SUITE_BY_NUMBER = {"1": "ingest", "2": "query", "3": "filtered", "4": "ann", "5": "growth", "6": "concurrency"}


def _datasets(quick: bool) -> tuple[list[datasets.Dataset], list[str]]:
    """The real datasets available here (plus synthetic), and notes on the missing ones."""
    notes = []
    if quick:
        return [datasets.clustered(5_000, queries=100)], notes
    found = []
    for name, load in (("python-docs-minilm-384", datasets.python_docs), ("fashion-mnist-784", datasets.fashion_mnist)):
        data = load()
        if data is None:
            notes.append(f"{name} is not available here ({datasets.MISSING[name]}); its rows are missing")
        else:
            found.append(data)
    return found or [datasets.clustered(50_000)], notes


def run(quick: bool, only: list[str], out: Path | None = None) -> dict[str, Any]:
    from vectorpg.db.server import embedded_server

    started = time.perf_counter()
    server = embedded_server(ROOT / ".cache" / "pg")
    from sqlalchemy.engine import make_url

    url = make_url(server.url).set(drivername="postgresql").render_as_string(hide_password=False)
    ctx = Context(quick=quick, server_url=url)
    if out is not None:  # everything this run writes goes there (the test suite's smoke run: a temp dir)
        common.RESULTS = out
    elif quick:  # the smoke run keeps its plots apart from the committed full results
        common.RESULTS = common.RESULTS / "quick"
    real, notes = _datasets(quick)
    # with --only, the other comparisons keep the results of the previous run (suite.json), re-rendered
    kept = _previous(only) if only and not quick else {}
    done: dict[str, Section] = {}
    summary: dict[str, Any] = {}
    for name in SUITE:
        if only and name not in only:
            continue
        print(f"== {name}", flush=True)
        tick = time.perf_counter()
        done[name] = _module(name).run(ctx, real)
        print(f"   {time.perf_counter() - tick:.0f} s", flush=True)
        sections = [done.get(n) or kept[n] for n in SUITE if n in done or n in kept]
        summary = _summary(ctx, quick, only, started, notes, sections)
        write(summary, sections, quick, out)  # after every comparison: a long run leaves what it measured
    return summary


def _module(name: str) -> Any:
    return __import__(f"benchmarks.{_MODULES[name]}", fromlist=["run", "render"])


def _previous(only: list[str]) -> dict[str, Section]:
    """The sections of the last full run that ``--only`` does not re-run, rendered again from their data."""
    path = common.RESULTS / "suite.json"
    if not path.exists():
        return {}
    kept = {}
    for entry in json.loads(path.read_text())["sections"]:
        name = SUITE_BY_NUMBER.get(entry["title"].split(".")[0])
        if name and name not in only:
            kept[name] = _module(name).render(entry["data"])
    return kept


def _summary(
    ctx: Context, quick: bool, only: list[str], started: float, notes: list[str], sections: list[Section]
) -> dict[str, Any]:
    return {
        "command": "python -m benchmarks run"
        + (" --quick" if quick else "")
        + (f" --only {','.join(only)}" if only else ""),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": time.perf_counter() - started,
        "machine": common.machine(),
        "versions": common.versions(ctx.server_url),
        "notes": notes,
        "sections": [{"title": s.title, "data": s.data, "goals": [g.__dict__ for g in s.goals]} for s in sections],
    }


_MODULES = {
    "ingest": "compare_ingest",
    "query": "compare_query",
    "filtered": "compare_filtered",
    "ann": "ann_curve",
    "growth": "growth",
    "concurrency": "concurrency",
}


def write(summary: dict[str, Any], sections: list[Section], quick: bool, out: Path | None = None) -> None:
    sections = sorted(sections, key=lambda section: int(section.title.split(".")[0]))
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    target = out / "RESULTS.md" if out is not None else ROOT / ("RESULTS-quick.md" if quick else "RESULTS.md")
    m = summary["machine"]
    lines = [
        "# vectorpg benchmark results",
        "",
        f"`{summary['command']}` on {summary['date']}, {summary['seconds'] / 60:.0f} min. Machine: {m['cpu']}, "
        f"{m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in summary["versions"].items()) + ".",
        "",
        "Every ratio is vectorpg ÷ the other, measured on the same server in the same run. Recall is always "
        "against exact search over the same rows."
        + (
            " Sections named by `--only` were measured again; the others come from the previous full run."
            if "--only" in summary["command"]
            else ""
        ),
        "",
    ]
    lines += [f"> {note}" for note in summary["notes"]]
    plots = "." if out is not None else "results/quick" if quick else "results"
    lines += ["", "## Goals", "", common.table(
        ["goal", "target", "measured", "met", "why missed"],
        [[g.name, g.target, g.measured, "met" if g.met else "**missed**", g.why] for s in sections for g in s.goals],
    )]  # fmt: skip
    for section in sections:
        lines += ["", f"## {section.title}", "", section.markdown, ""]
        lines += [f"![{section.title}]({plots}/{plot})" for plot in section.plots]
    target.write_text("\n".join(lines) + "\n")
    (common.RESULTS / "suite.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"wrote {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    runner = sub.add_parser("run", help="run the suite and write benchmarks/RESULTS.md")
    runner.add_argument("--quick", action="store_true", help="small synthetic data: a smoke run of a few minutes")
    runner.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SUITE)}")
    runner.add_argument("--out", type=Path, help="write RESULTS.md, the plots and suite.json here instead")
    sub.add_parser("render", help="write RESULTS.md and the plots again from results/suite.json (no measuring)")
    args = parser.parse_args(argv)
    if args.command == "render":
        summary = json.loads((common.RESULTS / "suite.json").read_text())
        sections = list(_previous([]).values())
        summary["sections"] = [
            {"title": s.title, "data": s.data, "goals": [g.__dict__ for g in s.goals]} for s in sections
        ]
        write(summary, sections, quick=False)
        return 0
    only = [name for name in args.only.split(",") if name]
    unknown = set(only) - set(SUITE)
    if unknown:
        parser.error(f"unknown comparisons: {', '.join(sorted(unknown))}")
    run(args.quick, only, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
