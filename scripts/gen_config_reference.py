"""Generate docs/reference/config.md from the pydantic models: the spec and every built-in step's config.

The page is generated, never edited by hand; ``tests/test_docs.py`` fails when it
is out of date. Run ``.venv/bin/python scripts/gen_config_reference.py`` after
changing a config model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

OUT = Path(__file__).resolve().parents[1] / "docs" / "reference" / "config.md"


def _type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[-1]}`"
    if "anyOf" in schema:
        parts = [_type(s, defs) for s in schema["anyOf"]]
        return " \\| ".join(dict.fromkeys(parts))
    if "oneOf" in schema:
        return " \\| ".join(dict.fromkeys(_type(s, defs) for s in schema["oneOf"]))
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}), defs)}"
    if kind == "object":
        extra = schema.get("additionalProperties")
        return f"mapping of {_type(extra, defs)}" if isinstance(extra, dict) and extra else "mapping"
    return f"{kind}" if kind else "any"


def _default(name: str, schema: dict[str, Any], required: set[str]) -> str:
    if name in required:
        return "*required*"
    if "default" in schema:
        return f"`{json.dumps(schema['default'])}`"
    return "—"


def _table(schema: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        desc = " ".join(str(prop.get("description", "")).split()).replace("|", "\\|")
        rows.append(f"| `{name}` | {_type(prop, defs)} | {_default(name, prop, required)} | {desc} |")
    return rows


def section(title: str, model: type[BaseModel], level: int = 2) -> list[str]:
    schema = model.model_json_schema(by_alias=True)
    defs = schema.get("$defs", {})
    doc = " ".join((model.__doc__ or "").split())
    lines = [f"{'#' * level} {title}", "", doc, "", *_table(schema, defs), ""]
    for name, sub in sorted(defs.items()):
        if "properties" not in sub:
            continue
        sub_doc = " ".join(str(sub.get("description", "")).split())
        lines += [f"{'#' * (level + 1)} `{name}`", "", sub_doc, "", *_table(sub, defs), ""]
    return lines


def render() -> str:
    from mlsteps.registry import BUILTIN_STEPS, get_step
    from mlsteps.spec import PipelineModel

    lines = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models by `scripts/gen_config_reference.py`; do not edit by hand",
        "(`tests/test_docs.py` checks it is current). Every model rejects unknown keys. The step pages",
        "explain what each field does; this page lists them all in one place.",
        "",
        *section("The pipeline spec (`pipeline.yaml`)", PipelineModel),
    ]
    for name in BUILTIN_STEPS:
        step = get_step(name)
        lines += section(f"`{name}` step config", step.config_model)
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        return 0 if OUT.exists() and OUT.read_text() == text else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
