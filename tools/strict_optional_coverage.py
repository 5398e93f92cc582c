"""How many modules of src/henderson mypy checks with strict Optional (issue 15).

    python tools/strict_optional_coverage.py            # "strict Optional: N of M modules"
    python tools/strict_optional_coverage.py --list     # and the modules still without it

Reads ``[tool.mypy]`` of pyproject.toml: the global ``strict_optional`` and the
``[[tool.mypy.overrides]]`` that set it, the most specific pattern winning as in mypy
(a module named exactly beats a ``pkg.*`` pattern, a longer pattern a shorter one).

Session of 2026-12-05: house branch from d0ae029, 0 → 129 of 160 modules; house3 branch,
129 → 164 of 164 (the solver, multi-trait, fit-façade and single-step modules fixed, the
global ``strict_optional = false`` and its overrides removed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import tomllib  # Python >= 3.11, as in the development environment


def _matches(pattern: str, module: str) -> bool:
    if pattern.endswith(".*"):
        return module == pattern[:-2] or module.startswith(pattern[:-1])
    return module == pattern


def _specificity(pattern: str) -> tuple[int, int]:
    return (0 if pattern.endswith("*") else 1, pattern.count("."))


def strict_optional(module: str, config: dict) -> bool:
    """Whether mypy checks ``module`` with strict Optional under ``config`` ([tool.mypy])."""
    value, best = bool(config.get("strict_optional", True)), (-1, -1)
    for override in config.get("overrides", []):
        if "strict_optional" not in override:
            continue
        patterns = override["module"] if isinstance(override["module"], list) else [override["module"]]
        for pattern in patterns:
            if _matches(pattern, module) and _specificity(pattern) >= best:
                value, best = bool(override["strict_optional"]), _specificity(pattern)
    return value


def modules(root: Path) -> list[str]:
    """Dotted names of the modules (and packages) under ``root``'s parent's package tree."""
    out = []
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("src/henderson"))
    ap.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    ap.add_argument("--list", action="store_true", help="also list the modules without strict Optional")
    args = ap.parse_args(argv)
    config = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))["tool"]["mypy"]
    names = modules(args.root)
    off = [m for m in names if not strict_optional(m, config)]
    print(f"strict Optional: {len(names) - len(off)} of {len(names)} modules")
    if args.list:
        print("\n".join(off))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
