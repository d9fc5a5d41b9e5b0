"""Reading terraform/ without Terraform: python-hcl2 parses every file, this module turns the result
into plain values (quotes stripped, parser metadata dropped, blocks merged across files) and resolves
``${var.x}`` / ``${local.x}`` references to their literal values where they are literals.

Works with python-hcl2 4.x (plain strings) and 8.x (quoted strings, ``__is_block__`` markers)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TF_DIR = REPO / "terraform"
_META = {"__is_block__", "__comments__", "__start_line__", "__end_line__"}
_REF = re.compile(r"\$\{((?:var|local)\.[A-Za-z0-9_.-]+)\}")


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1].replace('\\"', '"')
    return text


def normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {_unquote(k): normalise(v) for k, v in value.items() if k not in _META}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, str):
        return _unquote(value)
    return value


def parse_file(path: Path) -> dict[str, Any]:
    import hcl2

    with open(path) as f:
        return normalise(hcl2.load(f))


class TerraformConfig:
    """All ``terraform/*.tf`` files merged: resources, data sources, locals, variables, outputs."""

    def __init__(self, directory: Path = TF_DIR) -> None:
        self.resources: dict[str, dict[str, dict]] = {}
        self.data: dict[str, dict[str, dict]] = {}
        self.locals: dict[str, Any] = {}
        self.variables: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}
        self.files = sorted(directory.glob("*.tf"))
        for path in self.files:
            doc = parse_file(path)
            for kind, target in (("resource", self.resources), ("data", self.data)):
                for block in doc.get(kind, []):
                    for rtype, named in block.items():
                        for name, body in named.items():
                            target.setdefault(rtype, {})[name] = body
            for block in doc.get("locals", []):
                self.locals.update(block)
            for block in doc.get("variable", []):
                self.variables.update(block)
            for block in doc.get("output", []):
                self.outputs.update(block)

    def default(self, name: str) -> Any:
        return self.variables[name].get("default")

    def lookup(self, ref: str) -> Any:
        """``var.x`` (its default) or ``local.a.b`` (its value); KeyError when unknown."""
        head, *path = ref.split(".")
        if head == "var":
            value = self.default(path[0])
            path = path[1:]
        else:
            value = self.locals
        for part in path:
            value = value[part]
        return value

    def resolve(self, value: Any, depth: int = 10) -> Any:
        """Substitute literal var/local references inside strings, recursively."""
        if isinstance(value, dict):
            return {k: self.resolve(v, depth) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, depth) for v in value]
        if not isinstance(value, str) or depth == 0:
            return value

        def sub(match: re.Match) -> str:
            try:
                found = self.lookup(match[1])
            except (KeyError, TypeError):
                return match[0]
            return str(found) if isinstance(found, str | int | float) else match[0]

        new = _REF.sub(sub, value)
        return self.resolve(new, depth - 1) if new != value else new

    def policy_statements(self, doc_name: str) -> list[dict[str, Any]]:
        """Statements of ``data.aws_iam_policy_document.<doc_name>``, with its source documents'."""
        doc = self.data["aws_iam_policy_document"][doc_name]
        statements: list[dict[str, Any]] = []
        for src in doc.get("source_policy_documents", []):
            match = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.([A-Za-z0-9_]+)\.json\}", src)
            assert match, f"{doc_name}: source document {src!r} is not a policy document of this module"
            statements += self.policy_statements(match[1])
        for st in doc.get("statement", []):
            statements.append(self.resolve(st))
        return statements


def terraform_binary() -> str | None:
    return shutil.which("terraform") or shutil.which("tofu")
