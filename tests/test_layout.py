"""The package layout: layers that import only downwards, no import circle, files a newcomer can read."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# lowest first; a module may import its own layer and the layers below it
LAYERS = (
    ("core", ("igtv", "igtv.io", "igtv.config", "igtv.geometry", "igtv.checkpoint", "igtv.parallel", "igtv.device")),
    ("dicom", ("igtv.dicom",)),
    ("evaluation", ("igtv.evaluation",)),
    ("data", ("igtv.data",)),
    ("phantom", ("igtv.phantom",)),
    ("models", ("igtv.models",)),
    ("training", ("igtv.training",)),
    ("inference", ("igtv.inference",)),
    ("experiments", ("igtv.experiments",)),
    ("cli", ("igtv.cli", "igtv.train")),
)
# files allowed over MAX_LINES, each with its reason
MAX_LINES = 400
LONG_FILES = {
    "igtv/cli.py": "one argument parser per subcommand, flat and in the order of `igtv --help`",
    "igtv/phantom/anatomy.py": "labels() paints the whole trunk in one pass, in anatomical order, next to the "
    "geometry (diaphragm, rib cage, lungs, mediastinum) it paints with",
    "igtv/dicom/suv.py": "the QIBA SUV rules, one small function each, in the order the module docstring lists",
    "igtv/experiments/benchmark.py": "each section of `igtv bench` (scan, models, predict, prepare, phantom) is one "
    "function",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, index = "", -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best) and (p != "igtv" or module == p):
                best, index = p, i
    assert index >= 0, f"{module} belongs to no layer of tests/test_layout.py"
    return index


def imports_of(path: Path) -> set[str]:
    """Every igtv module a file imports, at the top or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("igtv") and node.level == 0:
            out.add(node.module)
            for alias in node.names:  # `from igtv.models import scan` imports a submodule
                if (SRC / node.module.replace(".", "/") / f"{alias.name}.py").exists() or (
                    SRC / node.module.replace(".", "/") / alias.name / "__init__.py"
                ).exists():
                    out.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("igtv")}
    return out


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in SRC.rglob("*.py")}


def test_every_module_sits_in_a_layer_and_imports_only_downwards():
    up = []
    for mod, deps in graph().items():
        for dep in deps:
            if layer_of(dep) > layer_of(mod):
                up.append(f"{mod} ({LAYERS[layer_of(mod)][0]}) -> {dep} ({LAYERS[layer_of(dep)][0]})")
    assert up == [], "imports running up a layer:\n" + "\n".join(sorted(up))


def test_no_import_circle():
    g = graph()
    known = set(g)

    def resolve(dep: str) -> str:  # `from igtv.models.scan import x` is the package igtv.models.scan
        return dep if dep in known else dep.rsplit(".", 1)[0]

    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(resolve(d) for d in g.get(m, ())):
            if d == m or d not in g:
                continue
            # a package's __init__ importing its own submodules, and a submodule importing its package's __init__
            # for the package's public names, are not circles between concerns
            if state.get(d) == 1 and not (d.startswith(m + ".") or m.startswith(d + ".")):
                cycles.append(stack[stack.index(d) :] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert cycles == [], "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_files_stay_readable():
    long = {}
    for p in SRC.rglob("*.py"):
        n = len(p.read_text().splitlines())
        rel = str(p.relative_to(SRC))
        if n > MAX_LINES and rel not in LONG_FILES:
            long[rel] = n
    assert long == {}, f"files over {MAX_LINES} lines without a stated reason in LONG_FILES: {long}"


def test_the_layer_test_can_fail(tmp_path):
    """The checks above see a violation when there is one (an inference module imported by data)."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from igtv.inference.predict import predict_dicom\n")
    assert "igtv.inference.predict" in imports_of(bad)
    assert layer_of("igtv.inference.predict") > layer_of("igtv.data.prepare")


# --- static checks of the whole source: one atomic writer, no code execution from data ------------------------------
WRITE_CALLS = (
    "write_text(",
    "write_bytes(",
    "savefig(",
    "save_as(",
    "dcmwrite(",
    "WriteImage(",
    "torch.save(",
    ".save(",
)
WRITE_ALLOWED = {
    "igtv/io.py": "the atomic writer itself",
    "igtv/training/trainer.py": "TensorBoard's SummaryWriter appends its event file as training runs",
    "igtv/experiments/benchmark.py": "the measured child process reports its peak memory to a temporary file",
}


def test_every_write_goes_through_the_atomic_helper():
    """Files are written to a temporary path from ``igtv.io.atomic_path`` (named ``tmp``) or into an in-memory
    buffer, then renamed: a grep for writes that take any other target finds none."""
    bad = []
    for p in SRC.rglob("*.py"):
        rel = str(p.relative_to(SRC))
        if rel in WRITE_ALLOWED:
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if any(c in code for c in WRITE_CALLS) and not any(ok in code for ok in ("tmp", "buf", "Image.fromarray")):
                bad.append(f"{rel}:{i}: {line.strip()}")
    assert bad == [], "writes outside igtv.io.atomic_path:\n" + "\n".join(bad)


def test_no_code_runs_from_data():
    """No eval/exec, no pickle.load, yaml only through safe_load, torch.load only with weights_only=True."""
    bad = []
    for p in SRC.rglob("*.py"):
        for i, line in enumerate(p.read_text().splitlines(), 1):
            code = line.split("#")[0]
            risky = (
                "eval(" in code.replace(".eval(", "")
                or "exec(" in code
                or "pickle.load" in code
                or ("yaml.load(" in code)
                or ("torch.load(" in code and "weights_only=True" not in code)
            )
            if risky:
                bad.append(f"{p.relative_to(SRC)}:{i}: {line.strip()}")
    assert bad == [], "\n".join(bad)
