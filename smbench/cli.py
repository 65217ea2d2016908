"""The `smbench` command line: run, compare, history (and more as they land)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn

from engine import EngineError, all_flag_sets

from .console import console, err_console, print_run
from .environment import measurement_environment
from .errors import UserError


class Cli(click.Group):
    """Turns user mistakes into one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (UserError, EngineError) as exc:
            _fail(str(exc), getattr(exc, "exit_code", 2))
        except click.UsageError as exc:  # bad option values: one line too, not click's usage block
            where = "smbench" if exc.ctx is None or exc.ctx.parent is None else f"smbench {exc.ctx.info_name}"
            _fail(f"{exc.format_message()} (see `{where} --help`)", 2)


def _fail(message: str, code: int) -> None:
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


@click.group(cls=Cli)
@click.version_option(package_name="smbench")
def main() -> None:
    """Profiling-first benchmarks for a NumPy GPT-2.

    run, compare and history measure and keep runs; profile drives pyinstrument, memray and
    scalene; kernels micro-benchmarks the ops; report writes markdown + HTML; gate guards CI;
    generate prints text from a model.
    """


def _flag_sets(workload, flags: str | None, flag_sets: str | None, ablation: bool) -> list[str]:
    if ablation:
        return [str(f) for f in all_flag_sets()]
    if flag_sets is not None:
        sets = [s.strip() for s in flag_sets.split(";") if s.strip()]
        if not sets:
            raise UserError(f"--flag-sets {flag_sets!r} names no flag set; write e.g. \"kv;kv,pool\"")
        return sets
    if flags is not None:
        return [flags]
    return list(workload.flag_sets)


def execute_run(workload, sets: list[str], quiet: bool = False) -> dict:
    """Run a workload with progress bars and return its record (not yet saved)."""
    from .metrics import build_results
    from .record import make_record
    from .runner import Runner, units_of_work

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    # Off when stderr is not a terminal: there a transient bar leaves only a stray blank line,
    # which would precede the one-line "error:" message of a failed run.
    # No auto-refresh: its background thread allocates Python objects during measured runs,
    # which shows up as GC collections; the bar redraws on each unit of work instead.
    with Progress(*columns, console=err_console, transient=True, auto_refresh=False,
                  disable=quiet or not err_console.is_terminal) as progress, \
            measurement_environment(workload.blas_threads) as conditions:
        task = progress.add_task(f"{workload.name}: loading model", total=None)
        progress.refresh()
        runner = Runner(workload, sets, progress=lambda label: progress.update(
            task, advance=1, description=label, refresh=True))
        progress.update(task, total=units_of_work(workload, len(runner.flag_sets)),
                        description=f"{workload.name}: starting", refresh=True)
        wr = runner.run()
        record = make_record(workload.to_record(), wr.prompt_ids, wr.flag_sets, build_results(wr), wr.elapsed_s)
    record["environment"] = conditions
    return record


@main.command()
@click.option("--workload", "-w", "workload_name", default=None, help="Workload name in profiles/ or a .toml path.")
@click.option("--flags", default=None, help='One flag set to compare against naive, e.g. "kv,pool".')
@click.option("--flag-sets", default=None, help='Several flag sets separated by ";", e.g. "kv;kv,pool".')
@click.option("--ablation", is_flag=True, help="Run all 16 combinations of pool, kv, fused, fastgelu.")
@click.option("--tokens", type=click.IntRange(1), default=None, help="New tokens per generation.")
@click.option("--repeats", type=click.IntRange(1), default=None, help="Timed repeats per flag set.")
@click.option("--warmup", type=click.IntRange(0), default=None, help="Warmup generations per flag set.")
@click.option("--blas-threads", type=click.IntRange(1), default=None,
              help="BLAS threads during the run (default: the workload's, usually 1).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs directory (default profiles/runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON on stdout.")
@click.option("--report", "report_to", is_flag=False, flag_value="", default=None, metavar="[PATH]",
              help="Also write a report (PATH.md + PATH.html; default reports/<run-id>).")
def run(workload_name, flags, flag_sets, ablation, tokens, repeats, warmup, blas_threads, out, as_json, report_to):
    """Run a workload: naive against flag sets, with per-stage time and allocations."""
    from .store import DEFAULT_ROOT, Store
    from .workloads import load_workload

    workload = load_workload(workload_name).with_(new_tokens=tokens, repeats=repeats, warmup=warmup,
                                                  blas_threads=blas_threads)
    record = execute_run(workload, _flag_sets(workload, flags, flag_sets, ablation), quiet=as_json)
    path = Store(out or DEFAULT_ROOT).save(record)
    if as_json:
        click.echo(json.dumps(record, indent=1))
    else:
        print_run(record, path)
    if report_to is not None:
        from .report import write_report

        written = write_report([str(path)], Store(out or DEFAULT_ROOT), report_to or f"reports/{record['run_id']}")
        (err_console if as_json else console).print("report: " + ", ".join(map(str, written)))


@main.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs directory (default profiles/runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(run_a, run_b, out, as_json):
    """Compare two runs (ids or record paths) metric by metric, with significance."""
    from .compare import compare_records, compare_table
    from .store import DEFAULT_ROOT, Store

    store = Store(out or DEFAULT_ROOT)
    a, b = store.load(run_a), store.load(run_b)
    rows = compare_records(a, b)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    else:
        console.print(compare_table(a, b, rows))


@main.command()
@click.option("--workload", "-w", default=None, help="Only runs of this workload.")
@click.option("--flags", default=None, help="Only runs that include this flag set.")
@click.option("--commit", default=None, help="Only runs at this git commit (prefix).")
@click.option("--limit", type=click.IntRange(1), default=50)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs directory (default profiles/runs).")
def history(workload, flags, commit, limit, out):
    """List stored runs, newest first."""
    from rich.table import Table

    from engine import OptFlags

    from .store import DEFAULT_ROOT, Store

    store = Store(out or DEFAULT_ROOT)
    canonical = str(OptFlags.parse(flags)) if flags else None
    rows = store.history(workload=workload, flags=canonical, commit=commit, limit=limit)
    for warning in store.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    table = Table(title=f"{len(rows)} runs in {store.root}", title_justify="left")
    for col in ("run id", "created", "kind", "workload", "flag sets", "commit", "best", "best tok/s",
                "naive tok/s"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.run_id, r.created or "-", r.kind or "-", r.workload or "-", r.flags,
                      (r.git_commit or "-")[:10], r.best_flags or "-",
                      f"{r.best_tokens_per_s:,.0f}" if r.best_tokens_per_s else "-",
                      f"{r.naive_tokens_per_s:,.0f}" if r.naive_tokens_per_s else "-")
    console.print(table)


from .profile_cmd import profile  # noqa: E402

main.add_command(profile)

from .gate import gate  # noqa: E402

main.add_command(gate)


@main.command()
@click.option("--model", default="seed", show_default=True, help="Model preset whose shapes the matmuls use.")
@click.option("--quick", is_flag=True, help="Tiny sizes and few repeats (seconds; for tests).")
@click.option("--only", default=None, help="Only kernels whose name contains this, e.g. gelu.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs directory (default profiles/runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the kernels record as JSON.")
def kernels(model, quick, only, out, as_json):
    """Micro-benchmark the engine's ops (naive, pooled, fused) against measured machine limits."""
    from engine import ConfigError

    from .kernels import count_kernels, kernels_table, run_kernels
    from .store import DEFAULT_ROOT, Store

    try:
        total = count_kernels(model, quick, only) + 1
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=as_json) as progress:
        task = progress.add_task("kernels", total=total)
        record = run_kernels(model, quick, only,
                             progress=lambda label: progress.update(task, advance=1, description=label))
    path = Store(out or DEFAULT_ROOT).save(record)
    if as_json:
        click.echo(json.dumps(record, indent=1))
    else:
        console.print(kernels_table(record))
        console.print(f"record: {path}")


@main.command()
@click.argument("runs", nargs=-1, required=True)
@click.option("-o", "--output", default=None, help="Output base path: writes PATH.md and PATH.html "
                                                   "(default reports/<first run id>).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs directory (default profiles/runs).")
def report(runs, output, out):
    """Write a markdown + HTML report from run records (plus kernels/profile records if given)."""
    from .report import write_report
    from .store import DEFAULT_ROOT, Store

    store = Store(out or DEFAULT_ROOT)
    if output is None:
        output = f"reports/{store.load(runs[0])['run_id']}"
    for path in write_report(list(runs), store, output):
        console.print(f"wrote {path}")


@main.command()
@click.option("--model", "-m", "model_ref", default="seed", show_default=True,
              help="A preset (seed, small, gpt2) or a checkpoint directory / .safetensors file.")
@click.option("--prompt", "-p", default="We are accounted", show_default=True, help="Prompt text.")
@click.option("--tokens", "-n", type=click.IntRange(0), default=100, show_default=True, help="New tokens.")
@click.option("--flags", default="kv,pool,fused", show_default=True, help='Optimization flags, or "none".')
@click.option("--temperature", type=click.FloatRange(0), default=0.0, show_default=True, help="0 = greedy.")
@click.option("--top-k", type=click.IntRange(1), default=None)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=None)
@click.option("--seed", type=int, default=0, show_default=True, help="Weights seed (presets) and sampling seed.")
def generate(model_ref, prompt, tokens, flags, temperature, top_k, top_p, seed):
    """Generate text with the engine and print it (prompt in bold)."""
    import time

    import engine

    model = engine.load(model_ref, flags=flags, seed=seed)
    ids = model.encode(prompt)
    t0 = time.perf_counter()
    new = model.generate(ids, tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    elapsed = time.perf_counter() - t0
    console.print(f"[bold]{escape(prompt)}[/bold]{escape(model.decode(new))}", highlight=False)
    err_console.print(f"{len(new)} tokens in {elapsed * 1000:.1f} ms ({len(new) / elapsed:,.0f} tokens/s) "
                      f"with flags {model.flags}", highlight=False)


if __name__ == "__main__":
    main()
