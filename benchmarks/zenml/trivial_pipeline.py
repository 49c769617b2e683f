"""Six trivial ZenML steps, each passing a tiny value on: the per-step overhead benchmark.

``python trivial_pipeline.py --steps 6`` runs source -> copy x4 -> total on the active stack
(the default one: local orchestrator, local artifact store); ``--steps 1`` runs the source alone.
Run by ``benchmarks/zenml_compare.py`` in ``.venvs/zenml`` with ``ZENML_CONFIG_PATH`` in a
temporary directory. The mlsteps side is the same chain of ``mlsteps.testing`` toy steps.
"""

from __future__ import annotations

import argparse

from zenml import pipeline, step


@step
def source(count: int) -> list[int]:
    return list(range(count))


@step
def copy(numbers: list[int], hop: int) -> list[int]:
    """``hop`` makes each copy a distinct step, so a cold run caches nothing within itself."""
    return list(numbers)


@step
def total(numbers: list[int], min_sum: int) -> int:
    result = sum(numbers)
    if result < min_sum:
        raise ValueError(f"sum {result} < {min_sum}")
    return result


def build(steps: int):  # type: ignore[no-untyped-def]
    """A pipeline of ``steps`` steps: source, ``steps - 2`` copies, total (or the source alone)."""

    def chain() -> None:
        numbers = source(count=10)
        if steps == 1:
            return
        for hop in range(steps - 2):
            numbers = copy(numbers, hop=hop)
        total(numbers, min_sum=40)

    return pipeline(name=f"trivial_{steps}", enable_cache=True)(chain)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=6, help="1, or >= 2")
    args = parser.parse_args()
    run = build(args.steps)()
    statuses = {name: str(s.status) for name, s in run.steps.items()}
    print("STEPS", len(statuses), "CACHED", sum("cached" in v for v in statuses.values()))


if __name__ == "__main__":
    main()
