"""Mutation testing of the core modules: plant one small bug at a time, see if a test notices.

For each module this script lists its mutants (a comparison flipped or moved by one, an
arithmetic or boolean operator swapped, a number changed, ``min``/``max`` swapped, a ``not``
dropped, a returned value replaced by None, a call statement deleted), then, in a copy of the
tree under a temporary folder, writes each mutant in turn and runs only the tests that concern
that module (``-x -q -p no:cacheprovider``, with a time limit per mutant). A mutant is *killed*
when the tests fail (or time out); the module's score is killed / mutants. Survivors are
printed with their place; the ones already judged (equivalent, or not worth a test) are listed
in ``tools/mutation_survivors.txt`` with the reason, and marked as such.

    nice -n 10 python tools/mutate.py                 # every core module
    nice -n 10 python tools/mutate.py _retry _progress # some of them
    python tools/mutate.py --list _retry               # the mutants, nothing run

Docstrings, annotations, assertions, strings and logging calls are left alone: changing them
says nothing about the tests. Our own mutator rather than mutmut or cosmic-ray: both install
(mutmut 3.8, cosmic-ray 8.7), but mutmut 3 runs the tests from its own rewritten copy of the
package (``mutants/``, every function behind a trampoline), whose first run (collecting which
tests cover what) failed here, and cosmic-ray wants a session database and a configuration per
module; a page of ``ast`` does what we need, with the test selection per module in one table.
Each mutant runs in a fork of this script, its imports warm: a second or so per mutant.
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: The fleet's tests that run in-process against the module's Valkey server (seconds); the
#: ones that start worker processes (tens of seconds each) are left to the suite.
FLEET_TESTS = [
    "tests/test_fleet_limiter.py",
    *(
        f"tests/test_redis_limiter.py::test_{name}"
        for name in (
            "a_refused_key_stops_every_member",
            "credits_the_server_did_not_charge_come_back",
            "the_budget_fails_closed_while_redis_is_away",
            "keys_hold_a_hash_of_the_api_key_never_the_key",
            "429s_inside_a_hold_announce_nothing",
            "news_of_a_hold_wakes_only_sleepers_whose_start_is_inside_it",
            "a_killed_redis_falls_back_to_a_local_rate_and_comes_back",
            "concurrency_is_capped_fleet_wide_and_a_dead_members_slot_expires",
            "a_member_that_never_hears_of_a_hold_finds_it_at_its_start",
            "a_frozen_redis_never_hangs_a_request",
            "a_hold_off_found_by_one_member_holds_every_member",
            "each_request_is_one_reservation_and_one_settlement",
            "the_script_paces_as_the_in_process_controller",
        )
    ),
]

#: The result cache's tests: its modules', and the exchange's (which serves hits).
CACHE_TESTS = ["tests/test_cache_rules.py", "tests/test_cache.py"]

#: Module (path under rembg_async/) -> the pytest arguments choosing the tests that concern it,
#: fastest first (-x stops at the first failure, so a killed mutant costs the time of the tests
#: before the one that fails). Files not in the tree are left out (so an older tree can run).
MODULES: dict[str, list[str]] = {
    "_retry.py": [
        "tests/test_retry_policy.py",
        "tests/test_client_rate_limit.py::test_a_daily_limit_still_stops_at_once",
        "tests/test_client_rate_limit.py::test_max_retries_zero_gives_up_on_5xx_but_waits_out_429s",
        "tests/test_client_rate_limit.py::test_the_429_allowance_is_bounded_in_time",
        "tests/test_observability.py::test_retries_and_give_ups_are_logged",
    ],
    "_limits/_control.py": ["tests/test_rate_controller.py", "tests/test_rate_limiting.py"],
    "_progress.py": ["tests/test_progress_tracker.py", "tests/test_client_progress.py"],
    "_limits/_adaptive.py": [
        "tests/test_adaptive_limiter.py",
        "tests/test_rate_limiting.py",
        "tests/test_client_limits.py",
    ],
    "_limits/_headers.py": [
        "tests/test_rate_headers.py",
        "tests/test_rate_limiting.py::test_rate_limit_headers_are_read",
        "tests/test_rate_limiting.py::test_any_header_value_is_read_without_error",
    ],
    "_exceptions.py": [
        "tests/test_error_mapping.py",
        "tests/test_retry_policy.py",
        "tests/test_bad_responses.py",
        "tests/test_client_errors.py",
        "-k",
        "not timeout",
    ],
    "_upload.py": [
        "tests/test_upload_guard.py",
        "tests/test_upload_body.py",
        "tests/test_client_progress.py::test_upload_total_is_the_body_on_the_wire",
        "tests/test_hostile_network.py::test_file_that_shrinks_while_sent_fails_at_once",
        "tests/test_hostile_network.py::test_upload_the_server_stops_reading_times_out_and_aborts",
        "tests/test_hostile_network.py::test_upload_stall_on_a_user_session_uses_its_read_timeout",
        "tests/test_hostile_network.py::test_slow_steady_reader_is_not_cut",
        "tests/test_hostile_network.py::test_a_deadline_during_a_stalled_upload_leaves_no_socket",
        "tests/test_hostile_network.py::test_a_cancelled_stalled_upload_leaves_no_socket",
        "tests/test_hostile_network.py::test_an_early_refusal_of_a_stalled_upload_leaves_no_socket",
        "tests/test_hostile_network.py::test_a_refusal_read_whole_keeps_its_connection_for_the_next_call",
    ],
    "_download.py": [
        "tests/test_download_rules.py",
        "tests/test_stream_output.py",
        "tests/test_bad_responses.py",
        "tests/test_client_progress.py",
        "tests/test_cancellation.py::test_cancel_during_download",
        "tests/test_hostile_network.py::test_error_body_in_pieces_keeps_its_message_and_scope",
        "tests/test_hostile_network.py::test_usage_json_in_pieces_is_read_whole",
    ],
    "_batch/_items.py": [
        "tests/test_batch_rules.py",
        "tests/test_batch.py",
        "-k",
        "not five_hundred",
    ],
    "_fleet/_limiter.py": FLEET_TESTS,
    "_fleet/_events.py": FLEET_TESTS,
    "_fleet/_script.py": FLEET_TESTS,
    "_outputs/_provenance.py": [
        "tests/test_outputs_rules.py",
        "tests/test_output_folders.py",
        "tests/test_batch_resume.py",
        "tests/test_batch.py",
        "-k",
        "not five_hundred",
    ],
    "_outputs/_local.py": [
        "tests/test_outputs_rules.py",
        "tests/test_output_folders.py",
        "tests/test_batch_resume.py",
        "tests/test_batch.py",
        "tests/test_object_storage.py::test_local_inputs_to_a_remote_folder_and_back",
        "-k",
        "not five_hundred",
    ],
    "_outputs/_remote.py": [
        "tests/test_outputs_rules.py",
        "tests/test_output_folders.py",
        "tests/test_object_storage.py",
        "-k",
        "not the_cli",
    ],
    "_exchange.py": [
        "tests/test_exchange_rules.py",
        "tests/test_error_mapping.py",
        "tests/test_observability.py",
        "tests/test_bad_responses.py",
        "tests/test_client_lifecycle.py",
        "tests/test_client_results.py",
        "tests/test_stream_output.py",
        "tests/test_sync_client.py::test_async_client_on_a_second_loop_says_what_to_do",
        "tests/test_object_storage.py::test_memory_urls_work_through_a_blocking_filesystem",
        "tests/test_stream_inputs.py::test_stream_is_resent_whole_after_503",
        "tests/test_client_usage.py::test_usage_needs_a_key",
        "tests/test_client_errors.py",
        *CACHE_TESTS,  # the exchange serves hits and stores answers
        "tests/test_batch_resume.py::test_budget_is_never_passed",  # a batch's credit admitted
    ],
    "_cache/_frame.py": CACHE_TESTS,
    "_cache/_seam.py": CACHE_TESTS,
    "_cache/_backends.py": CACHE_TESTS,
    "_outputs/_folders.py": [
        "tests/test_output_claims.py",
        "tests/test_outputs_rules.py",
        "tests/test_output_folders.py",
        "tests/test_batch_resume.py",
    ],
}

#: What the copy of the tree needs for the tests to run.
COPIED = ["rembg_async", "tests", "pyproject.toml", "pytest_rembg_async.py", "examples", "docs"]

SWAPS: dict[type[ast.AST], list[type[Any]]] = {
    # comparisons: moved by one (the boundary), and negated
    ast.Lt: [ast.LtE, ast.GtE],
    ast.LtE: [ast.Lt, ast.Gt],
    ast.Gt: [ast.GtE, ast.LtE],
    ast.GtE: [ast.Gt, ast.Lt],
    ast.Eq: [ast.NotEq],
    ast.NotEq: [ast.Eq],
    ast.Is: [ast.IsNot],
    ast.IsNot: [ast.Is],
    ast.In: [ast.NotIn],
    ast.NotIn: [ast.In],
    # arithmetic and logic
    ast.Add: [ast.Sub],
    ast.Sub: [ast.Add],
    ast.Mult: [ast.Div],
    ast.Div: [ast.Mult],
    ast.FloorDiv: [ast.Div],
    ast.Pow: [ast.Mult],
    ast.Mod: [ast.FloorDiv],
    ast.And: [ast.Or],
    ast.Or: [ast.And],
}


@dataclass(frozen=True)
class Mutant:
    """One planted bug: where, what it was, what it becomes, and the whole mutated source."""

    number: int
    line: int
    function: str
    before: str
    after: str
    source: str

    @property
    def key(self) -> str:
        """What names the mutant in tools/mutation_survivors.txt (stable across line moves)."""
        return f"{self.function} | {self.before} -> {self.after}"


def _changed_number(value: complex) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return 1.0 if value == 0 else value * 2
    return None


def _alternatives(node: ast.AST) -> Iterator[ast.AST]:
    """Every mutated copy of ``node`` (the node alone; its children are visited apart)."""
    if isinstance(node, ast.Compare):
        for index, op in enumerate(node.ops):
            for other in SWAPS.get(type(op), []):
                mutated: Any = copy.deepcopy(node)
                mutated.ops[index] = other()
                yield mutated
    elif isinstance(node, (ast.BinOp, ast.AugAssign)):
        left = node.left if isinstance(node, ast.BinOp) else None
        if isinstance(left, ast.Constant) and isinstance(left.value, str):
            return  # "%s" % x: formatting, not arithmetic
        for other in SWAPS.get(type(node.op), []):
            changed: Any = copy.deepcopy(node)
            changed.op = other()
            yield changed
    elif isinstance(node, ast.BoolOp):
        for other in SWAPS[type(node.op)]:
            yield ast.BoolOp(op=other(), values=copy.deepcopy(node.values))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        yield copy.deepcopy(node.operand)
    elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        number: Any = _changed_number(node.value)
        if number is not None:
            yield ast.Constant(value=number)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id in ("min", "max"):
            swapped: Any = copy.deepcopy(node)
            swapped.func = ast.Name(id="max" if node.func.id == "min" else "min")
            yield swapped
    elif isinstance(node, ast.Return) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            yield ast.Return(value=ast.Constant(value=None))
    elif isinstance(node, ast.Expr) and isinstance(node.value, (ast.Call, ast.Await)):
        yield ast.Pass()


#: Keyword arguments that declare a class's shape to attrs; every caller passes keywords.
_DECLARATIONS = frozenset({"kw_only", "init", "repr", "eq", "order", "hash", "slots"})


def _skipped(node: ast.AST) -> bool:
    """Subtrees whose mutation says nothing about the tests."""
    if isinstance(node, (ast.Assert, ast.JoinedStr, ast.Import, ast.ImportFrom)):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return True  # a docstring
    if isinstance(node, ast.keyword) and node.arg in _DECLARATIONS:
        return True  # how attrs builds a class (`kw_only=True`, `init=False`), not behaviour
    if isinstance(node, ast.Expr):
        node = node.value  # a statement that is a logging call
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            return func.value.id == "logger"  # what is logged is not behaviour under test
    if isinstance(node, ast.If) and isinstance(node.test, ast.Name):
        return node.test.id == "TYPE_CHECKING"
    return False


def _walk(node: ast.AST, function: str) -> Iterator[tuple[ast.AST, str]]:
    """(node, enclosing function or class) for every node worth mutating, in source order."""
    if _skipped(node):
        return
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        function = f"{function}.{node.name}" if function else node.name
    yield node, function
    for name, value in ast.iter_fields(node):
        if name in ("annotation", "returns", "type_comment"):
            continue
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, ast.AST):
                yield from _walk(child, function)


def _offset(lines: list[str], line: int, column: int) -> int:
    """The character offset in the whole text of ``line`` (1-based) at UTF-8 ``column``."""
    before = sum(len(text) for text in lines[: line - 1])
    return before + len(lines[line - 1].encode()[:column].decode())


def mutants(path: Path) -> list[Mutant]:
    """Every mutant of the module at ``path``, each one bug, duplicates dropped."""
    source = path.read_text()
    lines = source.splitlines(keepends=True)
    tree = ast.parse(source)
    found: list[Mutant] = []
    seen: set[str] = set()
    for node, function in _walk(tree, ""):
        if not isinstance(node, (ast.expr, ast.stmt)) or node.end_lineno is None:
            continue
        start = _offset(lines, node.lineno, node.col_offset)
        end = _offset(lines, node.end_lineno, node.end_col_offset or 0)
        before = source[start:end]
        for mutated in _alternatives(node):
            text = ast.unparse(mutated)
            if isinstance(node, ast.expr):
                text = f"({text})"
            changed = source[:start] + text + source[end:]
            try:
                ast.parse(changed)
            except SyntaxError:
                continue
            if changed in seen:
                continue
            seen.add(changed)
            short = " ".join(before.split())
            found.append(
                Mutant(len(found) + 1, node.lineno, function or "<module>", short, text, changed)
            )
    return found


def accepted() -> dict[str, str]:
    """The survivors judged already: ``module | function | before -> after`` -> why."""
    known: dict[str, str] = {}
    listed = ROOT / "tools" / "mutation_survivors.txt"
    for raw in listed.read_text().splitlines() if listed.exists() else []:
        if raw.strip() and not raw.startswith("#"):
            key, _, why = raw.rpartition(" | ")
            known[key.strip()] = why.strip()
    return known


#: Plugins none of the core's tests use: not loading them saves a second per mutant.
UNUSED_PLUGINS = ["schemathesis", "xdist", "xdist.looponfail", "anyio", "platformdirs"]
#: A warmed plugin cannot have its asserts rewritten: pytest warns, and warnings are errors.
PYTEST_ARGS = [
    "-x",
    "-q",
    # The configuration's addopts ask xdist for --dist, and xdist is left out below.
    "-o",
    "addopts=--strict-markers --strict-config",
    "-p",
    "no:cacheprovider",
    "-W",
    "ignore::pytest.PytestAssertRewriteWarning",
]
for _plugin in UNUSED_PLUGINS:
    PYTEST_ARGS += ["-p", f"no:{_plugin}"]
#: What every run imports, imported once here so that a forked run starts warm (hypothesis
#: alone takes seconds on a loaded machine). Nothing of rembg_async: the child imports the
#: copy, mutant included.
WARM = [
    "aiohttp",
    "aiohttp.web",
    "attrs",
    "aiofiles",
    "PIL.Image",
    "pytest",
    "hypothesis",
    "hypothesis.strategies",
    "_hypothesis_pytestplugin",
    "pytest_asyncio",
    "pytest_timeout",
]


def _run_tests(tree: Path, tests: list[str], timeout: float) -> tuple[bool, float]:
    """Whether the tests pass in ``tree``, and how long they took (a time-out is a failure).

    The run is a fork of this process (its imports warm), in a process group of its own so
    that a time-out ends it with whatever it started."""
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: run pytest on the copy, quietly, and exit with its status
        code = 1
        try:
            os.setpgid(0, 0)
            os.chdir(tree)
            sys.path.insert(0, str(tree))
            sys.dont_write_bytecode = True
            os.environ["PYTHONPATH"] = str(tree)
            if not os.environ.get("MUTATE_SHOW"):  # MUTATE_SHOW=1: see pytest's output
                quiet = os.open(os.devnull, os.O_WRONLY)
                os.dup2(quiet, 1)
                os.dup2(quiet, 2)
            import pytest

            code = int(pytest.main([*PYTEST_ARGS, *tests]))
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0, time.monotonic() - started
        if time.monotonic() - started > timeout:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return False, time.monotonic() - started
        time.sleep(0.02)


def run_module(module: str, tree: Path, timeout: float | None, only: set[int]) -> float:
    """Score one module in ``tree`` (a copy), printing its survivors; returns the score."""
    tests = [
        test
        for test in MODULES[module]
        if ".py" not in test or (tree / test.partition("::")[0]).exists()
    ]
    target = tree / "rembg_async" / module
    original = target.read_text()
    passed, took = _run_tests(tree, tests, timeout=600)
    if not passed:
        print(f"{module}: the tests fail on the unmutated code; skipped", flush=True)
        return 0.0
    limit = timeout or max(10.0, 3 * took)
    print(f"{module}: tests pass in {took:.1f} s; a mutant's limit {limit:.0f} s", flush=True)
    known = accepted()
    found = [m for m in mutants(target) if not only or m.number in only]
    survivors: list[Mutant] = []
    try:
        for done, mutant in enumerate(found, 1):
            target.write_text(mutant.source)
            survived, _ = _run_tests(tree, tests, timeout=limit)
            if survived:
                survivors.append(mutant)
            if done % 20 == 0:
                print(f"  {done}/{len(found)} run, {len(survivors)} survived", flush=True)
    finally:
        target.write_text(original)
    killed = len(found) - len(survivors)
    score = killed / len(found) if found else 1.0
    print(f"{module}: {killed}/{len(found)} killed, score {score:.2f}", flush=True)
    for mutant in survivors:
        key = f"{module} | {mutant.key}"
        why = known.get(key)
        mark = f"  [accepted: {why}]" if why else "  [NEW]"
        print(f"  #{mutant.number} line {mutant.line}: {key}{mark}", flush=True)
    return score


def main() -> int:
    """Parse the arguments and run (or list) the mutants of the chosen modules."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="e.g. _retry or _limits/_control (all)")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--only", type=int, action="append", default=[], help="mutant number")
    parser.add_argument("--timeout", type=float, help="seconds per mutant (3 × the tests')")
    parser.add_argument("--min-score", type=float, default=0.9, help="exit 1 below this")
    args = parser.parse_args()
    chosen = [m for m in MODULES if not args.modules or m.removesuffix(".py") in args.modules]
    if args.list:
        for module in chosen:
            for mutant in mutants(ROOT / "rembg_async" / module):
                print(f"{module} #{mutant.number} line {mutant.line}: {mutant.key}")
        return 0
    for name in WARM:
        importlib.import_module(name)
    scores: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="rembg-mutate-") as folder:
        tree = Path(folder)
        for name in COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif source.exists():
                shutil.copy2(source, tree / name)
        for module in chosen:
            scores[module] = run_module(module, tree, args.timeout, set(args.only))
    print("\nmodule                  score")
    for module, score in scores.items():
        print(f"{module:<24}{score:.2f}")
    return 0 if all(score >= args.min_score for score in scores.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
