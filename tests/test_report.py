"""`smbench report`: markdown figures parsed back against the record, HTML validity and
escaping, and the HTML rendered by a real headless browser (Debian's chromium)."""
from __future__ import annotations

import copy
import html.parser
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import html5lib
import pytest
from click.testing import CliRunner

from smbench.cli import main
from smbench.kernels import run_kernels
from smbench.report import write_report
from smbench.report import data as rdata
from smbench.store import Store

ARTIFACTS = Path(__file__).parent / "artifacts"
HOSTILE = "<script>alert(1)</script>"
SECTIONS = ("Executive summary", "Key metrics vs targets", "Hot paths", "Allocation breakdown",
            "Kernels vs machine limits", "Roofline floor", "Before / after", "Profiler highlights and artifacts",
            "Run conditions")
TINY = """
[workload]
name = "tiny"
description = "report test: seed shape, 8-token prompt, 6 new tokens"
model = "seed"
prompt_tokens = 8
new_tokens = 6
warmup = 0
repeats = 2
seed = 0
flag_sets = ["none", "kv", "pool,kv,fused"]

[targets]
tokens_per_s = ">= 10000"
alloc_bytes_per_token = "<= 1024"
gc_per_100_tokens = "<= 1"
"""


# ---- fixtures: one real run (via `smbench run --report`) and a quick kernels record ----
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    store_dir, out = root / "runs", root / "out"
    toml = root / "tiny.toml"
    toml.write_text(TINY)
    store = Store(store_dir)
    kern = run_kernels(quick=True)
    store.save(kern)
    result = CliRunner().invoke(main, ["run", "-w", str(toml), "--out", str(store_dir),
                                       "--report", str(out / "tiny")])
    assert result.exit_code == 0, result.output
    run_id = store.history(workload="tiny")[0].run_id
    return {"root": root, "store": store, "record": store.load(run_id), "kernels": kern, "out": out,
            "md": (out / "tiny.md").read_text(), "html": (out / "tiny.html").read_text()}


# ---- markdown parsing helpers -------------------------------------------------------------
def sections(md: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", md, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def tables(text: str) -> list[list[dict]]:
    """Every markdown table in `text` as a list of {column: cell} rows."""
    out, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if len(block) >= 2:
            header = [c.strip() for c in block[0].strip().strip("|").split("|")]
            rows = [[c.strip() for c in re.split(r"(?<!\\)\|", b.strip()[1:-1])] for b in block[2:]]
            out.append([dict(zip(header, r)) for r in rows])
        block = []
    return out


def number(cell: str) -> float:
    m = re.search(r"[-+]?[\d,]*\.?\d+", cell)
    assert m, cell
    return float(m.group(0).replace(",", ""))


def size_bytes(cell: str) -> float:
    value, unit = re.match(r"([\d.,]+) (GB|MB|KB|B)", cell).groups()
    return float(value.replace(",", "")) * {"GB": 1 << 30, "MB": 1 << 20, "KB": 1 << 10, "B": 1}[unit]


def duration_us(cell: str) -> float:
    value, unit = re.match(r"([\d.,]+) (s|ms|µs)", cell).groups()
    return float(value.replace(",", "")) * {"s": 1e6, "ms": 1e3, "µs": 1.0}[unit]


def duration_close(cell: str, truth_us: float) -> bool:
    """Within half a unit of the last shown digit (µs: 1 decimal; ms and s: 2 decimals)."""
    unit = cell.split()[-1]
    half = {"µs": 0.05, "ms": 5.0, "s": 5000.0}[unit]
    return abs(duration_us(cell) - truth_us) <= half * 1.0001


def close(cell_value: float, truth: float, decimals: int) -> bool:
    return abs(cell_value - truth) <= 0.5 * 10 ** -decimals + 1e-12


def sig_close(cell_value: float, truth: float, digits: int = 4) -> bool:
    if truth == 0:
        return cell_value == 0
    return abs(cell_value - truth) <= 0.5 * 10 ** (math.floor(math.log10(abs(truth))) - digits + 1) * 1.0001


def by_flags(record: dict) -> dict[str, dict]:
    return {r["flags"]: r for r in record["results"]}


# ---- markdown against the record ----------------------------------------------------------
def test_markdown_has_every_section_in_order(env):
    heads = re.findall(r"^## (.+)$", env["md"], flags=re.M)
    assert [h for h in heads if h in SECTIONS] == list(SECTIONS)
    assert env["md"].startswith(f"# smbench report — workload tiny — run {env['record']['run_id']}")


def test_summary_sentence_matches_the_record(env):
    rec, text = env["record"], sections(env["md"])["Executive summary"]
    m = re.search(r"The bottleneck is (\S+): ([\d.]+)% of naive decode time \(([\d.]+) ms per token", text)
    assert m, text
    stage, share, ms = m.group(1), float(m.group(2)), float(m.group(3))
    naive = by_flags(rec)["none"]
    decode = [s for s in naive["stages"] if s["phase"] == "decode"]
    totals: dict[str, float] = {}
    for s in decode:
        totals[s["stage"]] = totals.get(s["stage"], 0.0) + s["total_ms"]
    top = max(totals, key=totals.get)
    assert stage == top
    assert close(share, 100 * totals[top] / sum(totals.values()), 1)
    steps = next(s["calls"] for s in decode if s["stage"] == "sample")
    assert steps == rec["workload"]["new_tokens"] - 1
    assert close(ms, totals[top] / steps, 4)
    best = max(rec["results"], key=lambda r: r["metrics"]["tokens_per_s"]["median"])
    m2 = re.search(r'the fastest flag set, "([^"]+)" \(([\d.]+)x naive tokens/s\)', text)
    assert m2 and m2.group(1) == best["flags"]
    assert close(float(m2.group(2)), best["vs_naive"]["speedup"], 2)


def test_key_metrics_and_targets_match_the_record(env):
    rec = env["record"]
    rows = {r["metric"]: r for r in tables(sections(env["md"])["Key metrics vs targets"])[0]}
    naive = by_flags(rec)["none"]["metrics"]
    tps = rows["tokens/s"]
    assert sig_close(number(tps["naive"]), naive["tokens_per_s"]["median"])
    best = max(rec["results"], key=lambda r: r["metrics"]["tokens_per_s"]["median"])
    assert sig_close(number(tps["best"]), best["metrics"]["tokens_per_s"]["median"])
    assert tps["best flag set"] == best["flags"]
    assert tps["target"] == ">= 10,000"
    assert sig_close(number(tps["gap"]), best["metrics"]["tokens_per_s"]["median"] - 10000)
    assert tps["met"] == ("yes" if best["metrics"]["tokens_per_s"]["median"] >= 10000 else "no")
    mb = rows["MB allocated per token"]
    assert sig_close(number(mb["naive"]), naive["alloc_bytes_per_token"] / 2 ** 20)
    least = min(r["metrics"]["alloc_bytes_per_token"] for r in rec["results"])
    assert sig_close(number(mb["best"]), least / 2 ** 20)
    assert mb["met"] == ("yes" if least <= 1024 else "no")
    calls = rows["allocations per session"]
    assert number(calls["naive"]) == naive["alloc_calls_per_session"]
    gc = rows["GC collections per 100 tokens"]
    assert sig_close(number(gc["naive"]), naive["gc_per_100_tokens"])
    ms = rows["ms per token (decode step, median)"]
    assert sig_close(number(ms["naive"]), naive["ms_per_token"]["median"])
    assert ms["target"] == "no target"


def test_flag_set_table_matches_the_record(env):
    rec = env["record"]
    rows = tables(sections(env["md"])["Key metrics vs targets"])[1]
    assert [r["flags"] for r in rows] == [r["flags"] for r in rec["results"]]
    for row in rows:
        m = by_flags(rec)[row["flags"]]["metrics"]
        assert close(number(row["tokens/s (median)"]), m["tokens_per_s"]["median"], 1)
        assert close(number(row["ms/token (median)"]), m["ms_per_token"]["median"], 4)
        assert close(number(row["MB/token"]), m["alloc_bytes_per_token"] / 2 ** 20, 6)
        assert number(row["allocations/session"]) == m["alloc_calls_per_session"]
        assert row["same tokens"] == "yes"


def test_hot_paths_match_the_stage_rows(env):
    rec = env["record"]
    text = sections(env["md"])["Hot paths"]
    naive_table = tables(text)[0]
    decode = [s for s in by_flags(rec)["none"]["stages"] if s["phase"] == "decode"]
    total = sum(s["total_ms"] for s in decode)
    assert {r["stage"] for r in naive_table} == {s["stage"] for s in decode}
    for row in naive_table:
        mine = [s for s in decode if s["stage"] == row["stage"]]
        t = sum(s["total_ms"] for s in mine)
        assert close(number(row["share of time"]), 100 * t / total, 1)
        assert number(row["calls"]) == sum(s["calls"] for s in mine)
        assert close(number(row["total ms"]), t, 3)
        assert duration_close(row["min"], min(s["min_us"] for s in mine))
        assert duration_close(row["max"], max(s["max_us"] for s in mine))
        assert close(number(row["allocated MB"]), sum(s["alloc_bytes"] for s in mine) / 2 ** 20, 3)
    shares = [number(r["share of time"]) for r in naive_table]
    assert shares == sorted(shares, reverse=True)
    assert "### fastest flag set" in text


def test_allocation_tree_sums_the_stage_rows(env):
    rec = env["record"]
    text = sections(env["md"])["Allocation breakdown"]
    tops = re.findall(r"^- (\S+): ([\d.]+ [KMG]?B) in ([\d,]+) allocations", text, flags=re.M)
    assert [t[0] for t in tops] == [r["flags"] for r in rec["results"]]
    for flags, size, count in tops:
        stages = by_flags(rec)[flags]["stages"]
        assert size_bytes(size) == pytest.approx(sum(s["alloc_bytes"] for s in stages), rel=5e-3, abs=1)
        assert number(count) == sum(s["alloc_calls"] for s in stages)
    assert re.search(r"^  - \S+: .* allocations\n    - layer 0: ", text, flags=re.M)  # stage -> layer


def test_kernel_table_and_roofline_come_from_the_kernels_record(env):
    kern = env["kernels"]
    sec = sections(env["md"])
    text = sec["Kernels vs machine limits"]
    assert kern["run_id"] in text and "newest" in text  # found in the store, not given
    assert f"{kern['limits']['bandwidth_gb_s']:,.1f} GB/s" in text
    assert f"{kern['limits']['sgemm_gflops']:,.1f} GFLOPS" in text
    rows = tables(text)[0]
    assert len(rows) == len(kern["kernels"])
    for row, k in zip(rows, kern["kernels"]):
        assert (row["kernel"], row["variant"]) == (k["kernel"], k["variant"])
        assert duration_close(row["median"], k["time_us"])
        assert close(number(row["% of limit"]), 100 * k["fraction_of_limit"], 1)
        assert row["rating"] == k["rating"]
    roof = tables(sec["Roofline floor"])[0]
    for row in roof:
        r = by_flags(env["record"])[row["flags"]]
        weights = number(row["weights read per token (MB)"])
        assert weights < r["metrics"]["model_mb"]  # position rows a step does not read are left out
        floor = weights * 2 ** 20 / (kern["limits"]["bandwidth_gb_s"] * 1e9) * 1e3
        assert number(row["floor ms/token"]) == pytest.approx(floor, abs=1e-4)
        ratio = r["metrics"]["ms_per_token"]["median"] / floor  # weights shown rounded: relative check
        assert number(row["x floor"]) == pytest.approx(ratio, rel=2e-3, abs=0.01)


def test_before_after_lists_the_missing_flag_sets(env):
    text = sections(env["md"])["Before / after"]
    rows = tables(text)[0]
    assert rows[0]["change"] == "before: naive"
    assert any(r["change"] == "kv alone" for r in rows)
    assert any(r["change"] == "exact flags together" and r["flags"] == "pool,kv,fused" for r in rows)
    m = re.search(r"this run is missing (\d+): (.+?)\. Run", text)
    assert m and int(m.group(1)) == 13
    assert "pool,kv,fused,fastgelu" in m.group(2) and "smbench run -w tiny --ablation" in text


def _ablation_copy(record: dict) -> tuple[dict, dict[str, float]]:
    """All 16 flag sets with synthetic tokens/s: each flag multiplies speed by a known factor."""
    gains = {"pool": 1.5, "kv": 10.0, "fused": 2.0, "fastgelu": 1.1}
    rec = copy.deepcopy(record)
    template = rec["results"][0]
    rec["results"] = []
    for flags in rdata.all_sets(list(gains)):
        r = copy.deepcopy(template)
        r["flags"] = flags
        speed = 100.0 * math.prod(g for f, g in gains.items() if f in flags.split(","))
        r["metrics"]["tokens_per_s"].update(median=speed, min=speed * 0.9, max=speed * 1.1,
                                            samples=[speed * 0.9, speed, speed * 1.1])
        r["vs_naive"]["speedup"] = speed / 100.0
        rec["results"].append(r)
    rec["run_id"] += "-ablation"
    return rec, gains


def test_marginal_gains_from_a_full_ablation(env, tmp_path):
    rec, gains = _ablation_copy(env["record"])
    store = Store(tmp_path / "runs")
    path = store.save(rec)
    md_path, html_path = write_report([str(path)], store, tmp_path / "abl")
    text = sections(md_path.read_text())["Before / after"]
    marg = {r["flag"]: r for r in tables(text)[1]}
    assert set(marg) == set(gains)
    for flag, gain in gains.items():
        assert number(marg[flag]["geometric mean gain"]) == pytest.approx(gain, abs=0.005)
        assert number(marg[flag]["with all other flags on"]) == pytest.approx(gain, abs=0.005)
        assert number(marg[flag]["pairs"]) == 8
    assert "missing" not in text
    assert 'id="chart-ablation"' in html_path.read_text()


def test_profile_records_and_artifacts_are_rendered(env, tmp_path):
    store = Store(tmp_path / "runs")
    store.save(env["record"])
    prof = copy.deepcopy(env["record"])
    prof.update(kind="profile", run_id=prof["run_id"] + "-prof", results=[], flag_sets=["none"],
                profiles=[{"profiler": "pyinstrument", "version": "5.1.3",
                           "artifacts": {"html": "pyinstrument.html"},
                           "data": {"duration_s": 0.25, "samples": 171,
                                    "by_stage": [{"stage": "mlp.fc", "self_s": 0.08, "share": 0.36}]}}],
                profile_errors=[])
    store.save(prof)
    (store.run_dir(prof["run_id"]) / "pyinstrument.html").write_text("<html></html>")
    md_path, _ = write_report([env["record"]["run_id"]], store, tmp_path / "out" / "p")
    text = sections(md_path.read_text())["Profiler highlights and artifacts"]
    assert "pyinstrument 5.1.3" in text and "samples: 171" in text and "| mlp.fc | 0.08 | 0.36 |" in text
    link = re.search(r"\[html: pyinstrument.html\]\(([^)]+)\)", text).group(1)
    assert (tmp_path / "out" / link).resolve() == (store.run_dir(prof["run_id"]) / "pyinstrument.html").resolve()


def test_without_kernels_or_profiles_the_report_says_how_to_make_them(env, tmp_path):
    store = Store(tmp_path / "runs")
    path = store.save(env["record"])
    md_path, _ = write_report([str(path)], store, tmp_path / "bare")
    sec = sections(md_path.read_text())
    assert "`smbench kernels`" in sec["Kernels vs machine limits"]
    assert "`smbench kernels`" in sec["Roofline floor"]
    assert "`smbench profile --with all -w tiny`" in sec["Profiler highlights and artifacts"]


def test_report_command_needs_a_run_record(env):
    kern_path = env["store"].resolve(env["kernels"]["run_id"])
    result = CliRunner().invoke(main, ["report", str(kern_path), "-o", str(env["root"] / "x")])
    assert result.exit_code == 2 and "is a run record" in result.output


# ---- HTML: validity, self-containment, escaping ----------------------------------------------
def strict_parse(text: str):
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(text)


class Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.urls = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "xlink:href", "action") and v]


def test_html_is_strictly_valid_and_self_contained(env):
    doc = strict_parse(env["html"])  # raises on any parse error
    assert doc.find("body") is not None
    refs = Refs()
    refs.feed(env["html"])
    assert "script" not in refs.tags and "link" not in refs.tags and "img" not in refs.tags
    assert all(u.startswith("#") or not re.match(r"[a-z]+://", u) for u in refs.urls), refs.urls
    assert refs.tags.count("svg") == 3  # ms/token vs position, stages, speedup by flag set
    ids = re.findall(r'\sid="([^"]+)"', env["html"])
    assert len(ids) == len(set(ids))  # chart ids are prefixed per chart


def test_html_escapes_hostile_labels(env, tmp_path):
    rec = copy.deepcopy(env["record"])
    rec["run_id"] += "-hostile"
    rec["workload"]["name"] = HOSTILE
    rec["workload"]["description"] = HOSTILE + ' & "quotes" | pipes'
    rec["results"][1]["flags"] = HOSTILE
    store = Store(tmp_path / "runs")
    path = store.save(rec)
    md_path, html_path = write_report([str(path)], store, tmp_path / "hostile")
    page = html_path.read_text()
    assert HOSTILE not in page and "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    strict_parse(page)
    md = md_path.read_text()
    assert HOSTILE not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "\\| pipes" in md  # a pipe in a user string cannot split a table cell


# ---- a real browser ---------------------------------------------------------------------------
PROBE = """<pre id="probe"></pre><script>
addEventListener("load", () => {
  const charts = [...document.querySelectorAll("figure.chart svg")].map(s => {
    const b = s.getBoundingClientRect(); return {id: s.closest("figure").id, w: b.width, h: b.height}; });
  document.getElementById("probe").textContent = JSON.stringify(
    {charts, text: document.body.innerText.length, tables: document.querySelectorAll("table").length});
});
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(chromium() is None, reason="chromium not installed (.ci/run installs it)")
def test_html_renders_in_headless_chromium(env, tmp_path):
    page = env["out"] / "tiny.html"
    probed = tmp_path / "probed.html"  # the report has no script; the probe is added to a copy
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    done = run_chromium(tmp_path, "--window-size=1280,4000", "--virtual-time-budget=5000", "--dump-dom",
                        probed.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    probe = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.S).group(1)))
    assert {c["id"] for c in probe["charts"]} == {"chart-ms_per_token", "chart-stages", "chart-ablation"}
    for c in probe["charts"]:
        assert c["w"] > 300 and c["h"] > 150, c
    assert probe["tables"] >= 8 and probe["text"] > 2000
    for heading in SECTIONS:
        assert heading in dom
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    done = run_chromium(tmp_path, "--window-size=1280,4000", "--hide-scrollbars", f"--screenshot={shot}",
                        page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.stat().st_size > 20_000


def test_kernels_measured_on_a_busy_machine_carry_a_warning():
    def section(load):
        return rdata.KernelSection("k", "given", "", {"loadavg_1m_start": load, "loadavg_1m_end": 0.1, "cores": 2},
                                   [], True, False)

    assert section(0.2).busy_note is None
    assert "busy" in section(1.4).busy_note and "1.40" in section(1.4).busy_note
