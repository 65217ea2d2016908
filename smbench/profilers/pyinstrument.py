"""pyinstrument collector: a statistical profile of the decode loop.

Artifacts: pyinstrument.html (its interactive view), pyinstrument.json (its JSON
renderer), pyinstrument.speedscope.json (open in speedscope.app) and
pyinstrument.pyisession (reload with `pyinstrument --load`).
"""
from __future__ import annotations

from dataclasses import asdict
from importlib.metadata import version

from .job import ProfileJob, prepare
from .stages import StageMap
from .summary import ProfileSummary, PyinstrumentSummary
from .transforms import time_by_stage, top_self_time
from .worker import artifact, serve

INTERVAL_S = 0.0001  # tiny decode loops last milliseconds; the default 1 ms would see a handful


def collect(job: ProfileJob) -> ProfileSummary:
    from pyinstrument import Profiler
    from pyinstrument.renderers import HTMLRenderer, JSONRenderer, SpeedscopeRenderer

    prep = prepare(job)
    profiler = Profiler(interval=INTERVAL_S)
    profiler.start()
    generated = prep.decode()
    session = profiler.stop()
    paths = {"html": artifact(job, ".html"), "json": artifact(job, ".json"),
             "speedscope": artifact(job, ".speedscope.json"), "session": artifact(job, ".pyisession")}
    paths["html"].write_text(HTMLRenderer().render(session))
    paths["json"].write_text(JSONRenderer().render(session))
    paths["speedscope"].write_text(SpeedscopeRenderer().render(session))
    session.save(str(paths["session"]))
    data = PyinstrumentSummary(session.duration, session.sample_count, INTERVAL_S,
                               top_self_time(session.frame_records),
                               time_by_stage(session.frame_records, StageMap.from_engine()))
    return ProfileSummary("pyinstrument", version("pyinstrument"), {k: p.name for k, p in paths.items()},
                          asdict(data), prep.prompt_ids, generated)


if __name__ == "__main__":
    serve(collect)
