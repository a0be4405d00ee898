"""ruff over the Python of the Snakefile and rules/*.smk.

Ruff cannot parse Snakemake's rule syntax, so every file is compiled by Snakemake's own parser into the
Python that Snakemake runs, and the compiled files are joined in include order (one namespace, as Snakemake
executes them). Ruff's pyflakes, bugbear, pyupgrade and simplify rules check the result; findings are
reported at the line of the .smk file they come from. Layout rules (E, W, I) do not apply to generated code.
The names Snakemake provides are declared as builtins, only those the workflow uses (a typo in any other
name is an undefined name).
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake import parser
from snakemake.sourcecache import infer_source_file

from conftest import REPO

# Snakemake's globals that the rules use; `shell` and `script` are what the shell:/script: directives compile to
SNAKEMAKE_NAMES = ("config", "workflow", "rules", "expand", "directory", "temp", "unpack", "report", "shell", "script")
RULES = ("F", "B", "UP", "SIM")
# SIM118 is wrong for Snakemake's Namedlist (input, wildcards): `name in input` tests the values, not the names
IGNORE = ("SIM118",)


def compiled_workflow(root: Path = REPO, path: Path | None = None, lines=None, origin=None):
    """The compiled Python of ``root``'s Snakefile with each included file's code spliced in after its include,
    and per line of it the (file relative to ``root``, line) of the source it comes from."""
    path = path or root / "Snakefile"
    lines, origin = ([], []) if lines is None else (lines, origin)
    linemap: dict[int, int] = {}
    # what parse() needs of a workflow: a source cache that opens the file (parse closes it)
    opener = SimpleNamespace(open=lambda source: open(source.get_path_or_uri(secret_free=True)))  # noqa: SIM115
    code, _ = parser.parse(infer_source_file(str(path)), SimpleNamespace(sourcecache=opener), linemap)
    includes = {node.end_lineno: node.value.args[0].value for node in ast.parse(code).body
                if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and ast.unparse(node.value.func) == "workflow.include"}
    for number, line in enumerate(code.split("\n"), 1):
        lines.append(line)
        origin.append((str(path.relative_to(root)), linemap.get(number, number)))
        if number in includes:  # include paths are relative to the including file
            compiled_workflow(root, (path.parent / includes[number]).resolve(), lines, origin)
    return "\n".join(lines), origin


def ruff(code: str) -> list[dict]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"
    result = subprocess.run(
        [exe, "check", "--isolated", "--target-version", "py311", "--select", ",".join(RULES), "--ignore",
         ",".join(IGNORE), "--config", f"builtins = {json.dumps(list(SNAKEMAKE_NAMES))}", "--output-format", "json",
         "--stdin-filename", "workflow.py", "-"], input=code, capture_output=True, text=True, check=False)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def test_snakefile_and_rules_pass_ruff():
    code, origin = compiled_workflow()
    assert {file for file, _ in origin} >= {"Snakefile", "rules/common.smk", "rules/data.smk", "rules/report.smk"}
    findings = [f"{origin[f['location']['row'] - 1][0]}:{origin[f['location']['row'] - 1][1]}: {f['code']} "
                f"{f['message']}" for f in ruff(code)]
    assert not findings, "\n".join(findings)


def test_the_check_finds_an_undefined_name_and_maps_it_to_its_line(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "Snakefile").write_text('configfile: "c.yaml"\n\n\ninclude: "rules/a.smk"\n')
    (tmp_path / "rules" / "a.smk").write_text('rule a:\n    output:\n        "x",\n    params:\n        p=confg["k"],\n'
                                              '    shell:\n        "touch {output}"\n')
    code, origin = compiled_workflow(tmp_path.resolve())
    (finding,) = ruff(code)
    assert finding["code"] == "F821" and "confg" in finding["message"]
    assert origin[finding["location"]["row"] - 1] == ("rules/a.smk", 5)
