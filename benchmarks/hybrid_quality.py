"""Hybrid search quality on the quick start's corpus: recall@10 of the vector leg, the text leg and their fusion
on a small set of labelled natural-language questions, and the text leg's old query form (every term required,
``websearch_to_tsquery``) beside the new one (any significant term, ranked).

The corpus is the quick start's (the standard library's docstrings, about 4,100, embedded by the packaged
all-MiniLM-L6-v2). Each question below was written by hand with the docstrings that answer it (their ids, checked
to exist); a question's recall@10 is the share of those found in the first 10 hits. A text leg that matches
nothing is counted too ("empty"): that is how the old form failed. The labels are ours, 30 questions: read the
figures as a comparison of the legs on the same questions, not as an absolute quality measure.

``python -m benchmarks.hybrid_quality``
"""

from __future__ import annotations

import json
import statistics
from typing import Any

import vectorpg
from benchmarks.common import RESULTS, figure, save, table
from vectorpg.cli.quickstart import stdlib_corpus

K = 10
QUESTIONS: list[tuple[str, set[str]]] = [
    (
        "how do I parse command line arguments in my script",
        {"argparse", "argparse.ArgumentParser", "getopt", "getopt.getopt", "optparse"},
    ),
    ("compute a cryptographic hash digest of a file", {"hashlib", "hashlib.file_digest"}),
    ("read rows from a comma separated values file", {"csv"}),
    ("run a function concurrently in another thread", {"threading.Thread", "threading"}),
    ("join two parts of a file system path", {"posixpath.join", "pathlib.PurePath.joinpath"}),
    ("turn a python object into a json string", {"json.dumps", "json"}),
    ("parse a json document into python objects", {"json.loads", "json"}),
    ("copy a file to another location", {"shutil.copy", "shutil.copyfile", "shutil.copy2"}),
    ("create a temporary directory that is removed afterwards", {"tempfile.mkdtemp", "tempfile.TemporaryDirectory"}),
    ("run an external program and capture its output", {"subprocess.run", "subprocess.check_output"}),
    ("pick a random integer between two numbers", {"random.Random.randint"}),
    ("compress bytes with gzip", {"gzip.compress", "gzip", "zlib"}),
    ("convert a string to a datetime using a format", {"datetime.datetime.strptime", "time.strptime"}),
    ("find all files whose names match a wildcard pattern", {"glob.glob", "fnmatch.fnmatch"}),
    ("encode binary data as base64 text", {"base64.b64encode", "base64"}),
    ("generate a random unique identifier", {"uuid.uuid4", "uuid"}),
    ("replace every match of a regular expression in a string", {"re.sub"}),
    ("count how many times each element occurs", {"collections.Counter"}),
    ("a double ended queue with fast appends and pops", {"collections.deque"}),
    ("all possible orderings of the items in a list", {"itertools.permutations"}),
    ("greatest common divisor of two integers", {"math.gcd"}),
    ("average and median of a list of numbers", {"statistics.mean", "statistics.median"}),
    ("install a handler that runs when a signal arrives", {"signal.signal"}),
    ("pause the program for a number of seconds", {"time.sleep"}),
    ("make a deep copy of a nested object", {"copy.deepcopy"}),
    ("remove common leading whitespace from text", {"textwrap.dedent"}),
    ("exact decimal arithmetic for money", {"decimal.Decimal"}),
    ("cache the results of an expensive function", {"functools.lru_cache"}),
    ("split a shell command line into words", {"shlex.split"}),
    ("guess the type of a file from its name", {"mimetypes.guess_type"}),
]


def _recall(found: list[str], relevant: set[str]) -> float:
    return len(set(found[:K]) & relevant) / min(K, len(relevant))


def run() -> dict[str, Any]:
    corpus = stdlib_corpus()
    ids = {d.id for d in corpus}
    missing = sorted(i for _, rel in QUESTIONS for i in rel if i not in ids)
    if missing:
        raise RuntimeError(f"labels name docstrings this Python does not have: {missing}")
    db = vectorpg.connect()
    db.drop_collection("hybrid_quality")
    docs = db.collection("hybrid_quality")
    docs.add([d.text for d in corpus], ids=[d.id for d in corpus], metadata=[d.metadata for d in corpus])
    docs.create_text_index()
    rows: list[dict[str, Any]] = []
    with db.psycopg_connection() as raw:
        for question, relevant in QUESTIONS:
            vector = [h.id for h in docs.search(question, K)]
            hybrid_hits = docs.hybrid_search(question, K)
            hybrid = [h.id for h in hybrid_hits]
            text_new = [
                r[0]
                for r in raw.execute(
                    "SELECT id FROM vectorpg.documents_hybrid_quality, vectorpg.text_query('english', %s) q "
                    "WHERE to_tsvector('english', coalesce(content, '')) @@ q "
                    "ORDER BY ts_rank_cd(to_tsvector('english', coalesce(content, '')), q) DESC, id LIMIT 10",
                    [question],
                ).fetchall()
            ]
            text_old = [
                r[0]
                for r in raw.execute(
                    "SELECT id FROM vectorpg.documents_hybrid_quality, websearch_to_tsquery('english', %s) q "
                    "WHERE to_tsvector('english', coalesce(content, '')) @@ q "
                    "ORDER BY ts_rank_cd(to_tsvector('english', coalesce(content, '')), q) DESC, id LIMIT 10",
                    [question],
                ).fetchall()
            ]
            rows.append(
                {
                    "question": question,
                    "vector": _recall(vector, relevant),
                    "text (any term)": _recall(text_new, relevant),
                    "text (every term)": _recall(text_old, relevant),
                    "hybrid": _recall(hybrid, relevant),
                    "empty_new": not text_new,
                    "empty_old": not text_old,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    db.drop_collection("hybrid_quality")
    db.close()
    return {"corpus": len(corpus), "questions": rows}


LEGS = ["vector", "text (any term)", "text (every term)", "hybrid"]


def write(result: dict[str, Any]) -> str:
    rows = result["questions"]
    means = {leg: statistics.mean(r[leg] for r in rows) for leg in LEGS}
    lines = [
        "# Hybrid search quality: labelled questions on the quick start's corpus",
        "",
        f"`python -m benchmarks.hybrid_quality`: {result['corpus']:,} standard-library docstrings, {len(rows)} "
        f"hand-labelled natural-language questions, recall@{K} (the share of a question's answers in its first "
        f"{K} hits), mean over the questions.",
        "",
        table(
            ["leg", f"recall@{K}", "questions with no text match"],
            [
                ["vector (all-MiniLM-L6-v2, exact)", f"{means['vector']:.3f}", ""],
                [
                    "text, any significant term (vectorpg.text_query)",
                    f"{means['text (any term)']:.3f}",
                    sum(r["empty_new"] for r in rows),
                ],
                [
                    "text, every term (websearch_to_tsquery, before)",
                    f"{means['text (every term)']:.3f}",
                    sum(r["empty_old"] for r in rows),
                ],
                ["hybrid (RRF of vector + text, any term)", f"{means['hybrid']:.3f}", ""],
            ],
        ),
        "",
        "Per question:",
        "",
        table(["question", *LEGS], [[r["question"], *(f"{r[leg]:.2f}" for leg in LEGS)] for r in rows]),
    ]
    fig, ax = figure(7, 3.5)
    ax.barh(LEGS[::-1], [means[leg] for leg in LEGS[::-1]])
    ax.set_xlabel(f"mean recall@{K}")
    ax.set_xlim(0, 1)
    lines += ["", f"![recall]({save(fig, 'hybrid_quality.png')})", ""]
    report = "\n".join(lines)
    (RESULTS / "hybrid_quality.md").write_text(report)
    (RESULTS / "hybrid_quality.json").write_text(json.dumps(result, indent=1))
    return report


def main() -> None:
    print(write(run()))


if __name__ == "__main__":
    main()
