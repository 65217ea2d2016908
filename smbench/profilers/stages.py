"""Which engine stage a source line belongs to, read from the engine's own source.

The engine marks stage edges with `probe.stage_end("<stage>", layer)`; everything
since the previous edge belongs to that stage (engine/probe.py). So a line inside a
function belongs to the first edge at or after it in the same function. Step edges
(`probe.step_begin` / `probe.step_end`) are edges too, but belong to no stage: the
harness counts nothing between a step's end and the next step's beginning.

A stack (innermost frame first) is attributed by its deepest engine frame whose
function has an edge at or after the frame's line: `_qkv` has no edges, so its
allocations fall through to the `attn.qkv` edge in its caller `_block`.
"""
from __future__ import annotations

import ast
import bisect
import os
from dataclasses import dataclass, field
from pathlib import Path

import engine

ENGINE_DIR = Path(engine.__file__).resolve().parent
ENGINE_FILES = ("model.py", "generate.py")  # the modules that call the probe
STEP_EDGES = ("step_begin", "step_end")
UNATTRIBUTED = "(outside stages)"  # in the decode loop's code, but between a step's end and the next
NO_STAGE_FRAME = "(no stage frame)"  # no model.py/generate.py frame on the stack (e.g. a stack
                                     # truncated at a numba kernel, or code outside the loop)


@dataclass
class FunctionEdges:
    name: str
    first: int
    last: int
    lines: list[int] = field(default_factory=list)  # sorted edge lines
    stages: list[str | None] = field(default_factory=list)  # None for a step edge

    def stage_at(self, line: int) -> tuple[bool, str | None]:
        """(found, stage): the first edge at or after `line`, if any."""
        i = bisect.bisect_left(self.lines, line)
        return (True, self.stages[i]) if i < len(self.lines) else (False, None)


def _edge(node: ast.AST) -> tuple[bool, str | None]:
    """Whether `node` is a probe edge call, and its stage (None for step edges)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False, None
    attr = node.func.attr
    if attr == "stage_end" and node.args and isinstance(node.args[0], ast.Constant):
        return True, str(node.args[0].value)
    return attr in STEP_EDGES, None


def _functions(tree: ast.AST) -> list[FunctionEdges]:
    out = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        own = FunctionEdges(fn.name, fn.lineno, fn.end_lineno or fn.lineno)
        edges = sorted((node.lineno, stage) for node in ast.walk(fn)
                       for is_edge, stage in [_edge(node)] if is_edge)
        own.lines = [line for line, _ in edges]
        own.stages = [stage for _, stage in edges]
        out.append(own)
    return out


class StageMap:
    """Edges of every function in the engine files, and stack attribution over them."""

    def __init__(self, files: dict[str, str], engine_dir: Path = ENGINE_DIR):
        # files: absolute path -> source text
        self._by_file = {os.path.realpath(path): _functions(ast.parse(src)) for path, src in files.items()}
        self._engine = os.path.realpath(engine_dir) + os.sep
        self._real: dict[str, str] = {}

    @classmethod
    def from_engine(cls, engine_dir: Path = ENGINE_DIR) -> "StageMap":
        files = {str(engine_dir / name): (engine_dir / name).read_text() for name in ENGINE_FILES}
        return cls(files, engine_dir)

    def in_engine(self, filename: str) -> bool:
        return self._realpath(filename).startswith(self._engine)

    def _realpath(self, filename: str) -> str:
        real = self._real.get(filename)
        if real is None:
            real = self._real[filename] = os.path.realpath(filename)
        return real

    def function_at(self, filename: str, line: int) -> FunctionEdges | None:
        """The innermost function of an engine file containing `line`."""
        funcs = self._by_file.get(self._realpath(filename))
        inside = [f for f in funcs or () if f.first <= line <= f.last]
        return max(inside, key=lambda f: f.first, default=None)

    def stage_of(self, stack) -> str:
        """Stage of a stack of (function, filename, line), innermost first."""
        seen = False
        for _, filename, line in stack:
            fn = self.function_at(filename, line)
            if fn is None:
                continue
            seen = True
            found, stage = fn.stage_at(line)
            if found:
                return stage or UNATTRIBUTED
        return UNATTRIBUTED if seen else NO_STAGE_FRAME

    def edges(self) -> dict[str, list[str]]:
        """Function name -> stages it closes, for display and tests."""
        return {f.name: [s for s in f.stages if s] for funcs in self._by_file.values() for f in funcs
                if any(f.stages)}
