"""The ``monitor`` step on data larger than the memory it is given (issues #9 and #11).

The real ``mlsteps monitor`` CLI runs in a child process inside a memory-limited
cgroup (v1 ``memory.limit_in_bytes`` plus ``memory.memsw.limit_in_bytes`` so swap
cannot help, or v2 ``memory.max`` with ``memory.swap.max = 0``) of ``LIMIT_MIB``. The
reference and current parquet files hold ``ROWS`` rows of ten columns (six float64,
one int64, three strings). As a pandas DataFrame that is at least 8 bytes per cell
(``ROWS * 10 * 8`` bytes: 610 MiB, 2.4 times the limit; 1.8 GiB counting every string
object; the decoded arrow table is 682 MiB, and ``pd.read_parquet`` peaks at 1.6 GB
RSS without a limit), while the files are small on disk (49 MB each: low-cardinality
values, dictionary encoded) and written in 1M-row row groups by a ``ParquetWriter``
so this process stays small too.

The monitor must finish (exit 0) with the right verdict: ``x0`` is shifted by 5 in
the current file; every other column (``prediction`` and the ``label`` target
included) holds the same values as the reference, rotated, so their KS and
chi-squared statistics are exactly 0. The control reads the same current file with
``pd.read_parquet`` under the same limit and must be killed by the kernel's OOM
killer (or raise ``MemoryError``): the data really is larger than the memory given.

Measured on the 2-CPU development machine (cgroup v1, the cgroup's
``memory.max_usage_in_bytes``, page cache included): the CLI peaks at 104-106 MiB
on tiny data (10k rows, exact mode), at 182-186 MiB on these files (binned mode,
two passes over each), 201 MiB on 10.5M rows and 191 MiB on 21M rows: flat, the
interpreter and libraries, a row group's buffers and the reservoir samples.
``LIMIT_MIB`` leaves about 70 MiB of headroom. The module takes about 35 s (8 s
writing the files, 24 s the monitor, 2 s the control).

This test found three monitor bugs, fixed with it: reading a parquet file with one
``iter_batches`` kept pyarrow allocations of every row group read so far (peak 236
MiB on 10.5M rows, 300 MiB on 21M rows); the ``label`` and ``prediction`` columns were
kept whole (as Python objects) even without a model, although performance metrics
are only computed with one (OOM-killed at 320 MiB, 1.7 GiB peak without a limit);
and a data column named ``prediction`` was not read at all (``KeyError``).

Without a writable cgroup memory controller (not root, no delegation) the test
fails and says so: it is the only proof of the streaming claim, so it is not
skipped silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

MIB = 1 << 20
LIMIT_MIB = 256
ROWS = 8_000_000
CHUNK = 1_000_000
COLUMNS = [*(f"x{i}" for i in range(6)), "k", "city", "prediction", "label"]
FEATURES = [c for c in COLUMNS if c not in ("prediction", "label")]
V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")


def _controller(limit: int) -> tuple[Path, dict[str, str]]:
    """The memory hierarchy's root and the files that set a limit, the first one required."""
    if (V1 / "memory.limit_in_bytes").exists():
        # memsw (memory + swap) must not be below the memory limit: written second.
        return V1, {"memory.limit_in_bytes": str(limit), "memory.memsw.limit_in_bytes": str(limit)}
    controllers = V2 / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        return V2, {"memory.max": str(limit), "memory.swap.max": "0"}
    pytest.fail(
        f"this test needs a cgroup memory controller to limit the monitor's memory: none at {V1} "
        f"(cgroup v1) or in {controllers} (cgroup v2)",
        pytrace=False,
    )


@contextlib.contextmanager
def memory_cgroup(name: str, limit: int) -> Iterator[Path]:
    """A fresh memory cgroup limited to ``limit`` bytes, swap included; removed afterwards.

    Fails the test with the reason when it cannot be created (not root, no delegation).
    """
    root, files = _controller(limit)
    path = root / name
    try:
        path.mkdir(exist_ok=True)
        first = next(iter(files))
        if not (path / first).exists():
            raise OSError(f"{path / first} does not exist (memory controller not enabled for {root}?)")
        for file, value in files.items():
            if (path / file).exists():
                (path / file).write_text(value)
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.rmdir()
        pytest.fail(
            f"this test needs a writable cgroup memory controller to limit the monitor's memory "
            f"(run it as root, or delegate a cgroup): cannot set up {path}: {exc}",
            pytrace=False,
        )
    try:
        yield path
    finally:
        path.rmdir()


def peak_bytes(cgroup: Path) -> int | None:
    """The cgroup's peak memory use, when the kernel reports it."""
    for name in ("memory.max_usage_in_bytes", "memory.peak"):
        if (cgroup / name).exists():
            return int((cgroup / name).read_text())
    return None


def run_limited(cgroup: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``args`` with the child in ``cgroup`` from its first instruction (before exec)."""
    procs = str(cgroup / "cgroup.procs")

    def enter() -> None:
        with open(procs, "w") as fh:
            fh.write(str(os.getpid()))

    return subprocess.run(
        args, cwd=cwd, preexec_fn=enter, capture_output=True, text=True, timeout=300, check=False
    )


def write_data(directory: Path) -> tuple[Path, Path]:
    """Reference and current files, chunk by chunk: ``x0`` shifted by 5, every other column rotated."""
    rng = np.random.default_rng(7)
    cities = pa.array(["Biscoe", "Dream", "Torgersen", "Anvers"])
    labels = pa.array(["Adelie", "Chinstrap", "Gentoo"])
    ref_path, cur_path = directory / "reference.parquet", directory / "current.parquet"
    writers: dict[Path, pq.ParquetWriter] = {}
    try:
        for start in range(0, ROWS, CHUNK):
            n = min(CHUNK, ROWS - start)
            columns: dict[str, Any] = {f"x{i}": rng.integers(0, 50, n).astype(np.float64) for i in range(6)}
            columns["k"] = rng.integers(0, 100, n)
            for name, values in (("city", cities), ("prediction", labels), ("label", labels)):
                columns[name] = values.take(pa.array(rng.integers(0, len(values), n)))  # plain strings
            ref = pa.table(columns)
            shift = 12_345
            cur = pa.concat_tables([ref.slice(shift), ref.slice(0, shift)]).combine_chunks()
            cur = cur.set_column(0, "x0", pc.add(cur.column("x0"), 5.0))
            for path, table in ((ref_path, ref), (cur_path, cur)):
                if path not in writers:
                    writers[path] = pq.ParquetWriter(path, table.schema)
                writers[path].write_table(table, row_group_size=CHUNK)
    finally:
        for writer in writers.values():
            writer.close()
    return ref_path, cur_path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_data(tmp_path_factory.mktemp("larger_than_memory"))


def test_data_is_larger_than_the_limit_in_memory_and_small_on_disk(data: tuple[Path, Path]) -> None:
    for path in data:
        meta = pq.ParquetFile(path).metadata
        assert meta.num_rows == ROWS and meta.num_row_groups == -(-ROWS // CHUNK)
        # A DataFrame holds at least 8 bytes per cell (float64, int64, object pointers).
        assert meta.num_rows * meta.num_columns * 8 >= 2 * LIMIT_MIB * MIB
        assert path.stat().st_size < LIMIT_MIB * MIB / 2


def test_monitor_streams_data_larger_than_its_memory_limit(tmp_path: Path, data: tuple[Path, Path]) -> None:
    ref_path, cur_path = data
    spec = tmp_path / "monitor.yaml"
    spec.write_text(
        textwrap.dedent(
            f"""\
            name: larger_than_memory
            defaults:
              artifact_root: {tmp_path / "art"}
            steps:
              monitor:
                config:
                  reference: {ref_path}
                  current: {cur_path}
                  prediction_column: prediction
                  target: label
                  drift_share: 0.1
                  log_to_mlflow: false
            """
        )
    )
    cli = [sys.executable, "-c", "from mlsteps.cli import main; main()"]
    with memory_cgroup(f"mlsteps-ltm-{os.getpid()}-monitor", LIMIT_MIB * MIB) as cgroup:
        proc = run_limited(cgroup, [*cli, "monitor", str(spec), "--json"], tmp_path)
        peak = peak_bytes(cgroup)
    assert proc.returncode == 0, (
        f"monitor exited {proc.returncode} under {LIMIT_MIB} MiB (peak {peak and peak // MIB} MiB):\n"
        f"{proc.stderr[-3000:]}"
    )
    out = json.loads(proc.stdout)
    assert out["verdict"] == "drift"
    report = json.loads(Path(out["report"]["uri"]).read_text())
    columns = report["columns"]
    assert sorted(columns) == sorted(COLUMNS)
    assert [n for n, c in columns.items() if c["drifted"]] == ["x0"]
    assert all(c["skipped"] is None for c in columns.values())
    assert {n: c["role"] for n, c in columns.items() if c["role"] != "feature"} == {
        "prediction": "prediction",
        "label": "target",
    }
    assert report["dataset"]["drifted_features"] == ["x0"]
    assert report["prediction"] == {"column": "prediction", "drifted": False}
    assert report["reference"]["rows"] == report["current"]["rows"] == ROWS
    assert not report["reference"]["exact"] and not report["current"]["exact"]
    assert {columns[n]["method"] for n in FEATURES if columns[n]["type"] == "numerical"} == {"binned"}


def test_control_pandas_cannot_load_the_current_file_under_the_same_limit(
    tmp_path: Path, data: tuple[Path, Path]
) -> None:
    """Loading the current file whole, as a non-streaming monitor would, does not fit."""
    code = f"import pandas as pd; df = pd.read_parquet({str(data[1])!r}); print(len(df))"
    with memory_cgroup(f"mlsteps-ltm-{os.getpid()}-control", LIMIT_MIB * MIB) as cgroup:
        proc = run_limited(cgroup, [sys.executable, "-c", code], tmp_path)
    killed = proc.returncode == -signal.SIGKILL
    assert killed or (proc.returncode != 0 and "MemoryError" in proc.stderr), (
        f"pd.read_parquet exited {proc.returncode} under {LIMIT_MIB} MiB, expected an OOM kill:\n"
        f"{proc.stdout[-500:]}{proc.stderr[-2000:]}"
    )
