"""Tests for benchmarks/bench.py's measurements that are not timings: peak memory and the chart.

(Timings are never asserted: they belong to `make bench`, run alone.)
"""

import os
import sys

import numpy as np
import pytest

BENCHMARKS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "benchmarks")
sys.path.insert(0, os.path.abspath(BENCHMARKS))
import bench  # noqa: E402
import peers  # noqa: E402

linux_proc = pytest.mark.skipif(peers.reset_peak() is None, reason="needs Linux's /proc/self/clear_refs")


@linux_proc
def test_peak_memory_counts_an_allocation_above_the_baseline():
    """A 64 MiB array, touched and freed: the peak is 64 MiB over the baseline (a few MiB of slack)."""
    baseline = peers.reset_peak()
    block = np.ones(64 * 2**20 // 8)
    del block
    assert 63 <= peers.peak_mib(baseline) < 72
    baseline = peers.reset_peak()  # the high-water mark starts again from the current size
    assert peers.peak_mib(baseline) < 8


@linux_proc
def test_import_peak_is_the_importing_processs_own():
    """W5's peak: what a fresh process holds after the import (torch: hundreds of MiB; json:
    a bare interpreter), not the memory of the process that started it."""
    json_peak, torch_peak = bench.import_peak("json"), bench.import_peak("torch")
    assert 1 < json_peak < 40 and torch_peak > json_peak + 100


@linux_proc
def test_peak_of_a_system_runs_in_a_fresh_process():
    """One untimed run of the lean loop in its own process: its model, optimizer and batches,
    and the Dynamo modules torch.optim imports on its first step (~80 MiB)."""
    peak = bench.measure_peak("W1 MLP bs128", "lean", threads=1, quick=True, malloc_defaults=False)
    assert peak is not None and 1 < peak < 1024


def test_chart_has_a_bar_per_row(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"workload": w, "system": s, "ratio_to_lean": r}
            for w in ("W1 MLP bs32", "W2 convnet bs128")
            for s, r in (("lamina", 1.02), ("lamina-jit", 0.6), ("lean", 1.0))]
    path = tmp_path / "chart.png"
    assert bench.write_chart(rows, str(path), "test")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height = matplotlib.image.imread(str(path)).shape[0]
    rows_only = tmp_path / "fewer.png"
    bench.write_chart(rows[:2], str(rows_only), "test")
    assert height > matplotlib.image.imread(str(rows_only)).shape[0]  # taller with more bars


def test_chart_is_skipped_without_matplotlib(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert not bench.write_chart([{"workload": "W1", "system": "lean", "ratio_to_lean": 1.0}],
                                 str(tmp_path / "x.png"), "test")
    assert "matplotlib is not installed" in capsys.readouterr().out
    assert not (tmp_path / "x.png").exists()
