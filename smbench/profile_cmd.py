"""`smbench profile`: the decode loop under pyinstrument, memray or scalene, each in its own process."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .console import console, err_console
from .profilers import PROFILERS, selected


@click.command()
@click.option("--with", "which", required=True, type=click.Choice([*PROFILERS, "all"]),
              help="The profiler to run, or all three one after another.")
@click.option("--workload", "-w", "workload_name", default=None, help="Workload name in profiles/ or a .toml path.")
@click.option("--flags", default="", help='The flag set to profile, e.g. "kv,pool" (default: naive).')
@click.option("--tokens", type=click.IntRange(1), default=None, help="New tokens (default: the workload's).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Runs directory (default profiles/runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the profile record as JSON on stdout.")
def profile(which, workload_name, flags, tokens, out, as_json):
    """Profile a workload's decode loop; artifacts and a record go to profiles/runs/<run-id>/."""
    from .profilers.render import print_profile
    from .profilers.session import profile_workload
    from .store import DEFAULT_ROOT, Store
    from .workloads import load_workload

    workload = load_workload(workload_name).with_(new_tokens=tokens)
    with err_console.status("profiling", spinner="dots") as status:
        record, path = profile_workload(
            workload, flags, selected(which), Store(out or DEFAULT_ROOT),
            progress=lambda name: status.update(f"profiling {workload.name} under {name}"))
    if as_json:
        click.echo(json.dumps(record, indent=1))
    else:
        print_profile(console, record, path)
    for failure in record["profile_errors"]:  # the others' results are kept and printed above
        err_console.print(f"error: {failure['error']}", markup=False, highlight=False, soft_wrap=True)
    if record["profile_errors"]:
        sys.exit(1)
