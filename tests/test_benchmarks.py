"""The benchmark scripts' shared parts: benchmarks/harness.py's tables (reference share, speed-up over the best
peer) and result files, and benchmarks/time_book.py's step times and store summary."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest

from domaingap import paths


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, paths.BENCHMARKS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def time_book():
    return _module("time_book")


@pytest.fixture(scope="module")
def harness():
    return _module("harness")


def test_table_shares_and_speedups(harness, capsys):
    t = harness.Table("knn", "mnist", 100, 784, 2.0, "20-NN", reference="same-run float32 GEMM")
    t.add("ours", True, 1.0, [1.0, 1.1], 10.0)
    t.add("faiss", False, 1.5, [1.5], 12.0, max_abs_err=1e-4)
    t.add("sklearn", False, 4.0, [4.0], 50.0)
    t.skip("skdim", "not installed")
    table = t.finish()
    rows = {r["impl"]: r for r in table["rows"]}
    assert rows["ours"]["pct_of_reference"] == 50.0 and rows["ours"]["speedup_vs_best_peer"] == 1.5
    assert rows["faiss"]["time_vs_ours"] == 1.5 and rows["sklearn"]["time_vs_ours"] == 4.0
    assert rows["skdim"]["skipped"] == "not installed" and "median_s" not in rows["skdim"]
    assert table["reference_s"] == 2.0 and "skipped: not installed" in capsys.readouterr().out


def test_result_file_is_complete_and_atomic(harness, tmp_path):
    import torch

    t = harness.Table("fgsm", "noise", 8, 784, 0.5, "FGSM", reference="1 same-run forward+backward pass")
    t.add("ours", True, 0.25, [0.25], 1.0)
    meta = harness.machine_meta("attacks", torch.device("cpu"), ["--quick"])
    out = harness.write_result("attacks", torch.device("cpu"), meta, [t.finish()], out=tmp_path / "r.json")
    record = json.loads(out.read_text())
    assert set(record) == {"meta", "tables", "cases"} and list(record["tables"]) == ["fgsm/noise"]
    assert record["cases"][0]["pct_of_reference"] == 50.0 and record["meta"]["argv"] == ["--quick"]
    assert len(record["meta"]["load_average_1_5_15_end"]) == 3 and not list(tmp_path.glob("*.tmp"))


def test_steps_start_at_their_headers_and_last_until_the_next(time_book, tmp_path):
    script = ("import time\n"
              "print('== domaingap book (ci): data check', flush=True); time.sleep(0.3)\n"
              "print('some output', flush=True)\n"
              "print('== domaingap book (ci): runs', flush=True); time.sleep(0.6)\n"
              "raise SystemExit(3)\n")
    status, wall, steps = time_book.time_steps([sys.executable, "-c", script], dict(os.environ), tmp_path / "log")
    assert status == 3 and [s["step"] for s in steps] == ["data check", "runs"]
    assert 0.25 < steps[0]["wall_s"] < steps[1]["wall_s"] and steps[1]["wall_s"] > 0.55
    assert sum(s["wall_s"] for s in steps) == pytest.approx(wall - steps[0]["start_s"], abs=1e-9)
    assert "some output" in (tmp_path / "log").read_text()


def test_store_summary_sums_compute_per_kind(time_book, tmp_path):
    for kind, key, secs in (("p1_train", "a", 1.5), ("p1_train", "b", 2.5), ("p3_finetune", "c", None)):
        (tmp_path / kind / key).mkdir(parents=True)
        computed = None if secs is None else {"seconds": secs}
        (tmp_path / kind / key / "record.json").write_text(json.dumps({"kind": kind, "computed": computed}))
    assert time_book._store_summary(tmp_path) == {"p1_train": {"runs": 2, "compute_s": 4.0},
                                                  "p3_finetune": {"runs": 1, "compute_s": 0.0}}


def test_refuses_a_store_that_is_not_empty(time_book, tmp_path):
    (tmp_path / "artefacts" / "p1_train").mkdir(parents=True)
    with pytest.raises(SystemExit, match="not empty"):
        time_book.main(["--root", str(tmp_path)])
