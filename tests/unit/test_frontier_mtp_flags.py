"""calibration/frontier_report.py: the InferenceMAX MTP launch scripts' flags reach the MTP
rows (and leave the non-MTP rows' flags as they were)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "calibration" / "frontier_report.py"


def _script():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("frontier_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(**over):
    row = {"hardware": "B200", "framework": "sglang", "precision": "FP8", "tp": "8",
           "ep": "1", "dp_attention": "false", "concurrency": "64", "isl": "1024",
           "osl": "1024", "speculative": "none"}
    row.update(over)
    return row


def test_sglang_mtp_rows_run_two_drafts_without_overlap() -> None:
    flags = _script().server_flags
    plain, mtp = flags(_row()), flags(_row(speculative="mtp"))
    # speculative-num-steps 2 / num-draft-tokens 3; SGLANG_ENABLE_SPEC_V2 not exported
    assert mtp["num_speculative_tokens"] == "2" and mtp["async_scheduling"] == "false"
    assert "num_speculative_tokens" not in plain and plain["async_scheduling"] == "true"
    same = ("num_speculative_tokens", "async_scheduling")
    assert {k: v for k, v in mtp.items() if k not in same} == {
        k: v for k, v in plain.items() if k not in same}


def test_trtllm_mtp_token_budget_and_batch_follow_the_script() -> None:
    flags = _script().server_flags
    # no DP: MTP 3, max_batch_size = CONC = 64,
    #   max_num_tokens = ceil((4 x 64 + 1024 + 64) / 64) x 64 = ceil(1344 / 64) x 64 = 1344
    row = _row(framework="trt", concurrency="64")
    mtp = flags(dict(row, speculative="mtp"))
    assert mtp["num_speculative_tokens"] == "3" and mtp["max_num_seqs"] == "64"
    assert mtp["max_num_batched_tokens"] == "1344" and mtp["gpu_memory_utilization"] == "0.8"
    # the non-MTP row keeps max(8192, ...) and no batch limit
    plain = flags(row)
    assert plain["max_num_batched_tokens"] == "8192" and "max_num_seqs" not in plain
    # attention DP over tp 4 at CONC 256: MTP 1, 64 per rank;
    #   per rank ceil((2 x 64 + 8192 + 64) / 64) x 64 = ceil(8384 / 64) x 64 = 8384, x 4 ranks
    dp = flags(_row(framework="trt", tp="4", ep="4", dp_attention="true", concurrency="256",
                    isl="8192", hardware="H200", speculative="mtp"))
    assert dp["num_speculative_tokens"] == "1" and dp["max_num_seqs"] == "256"
    assert dp["max_num_batched_tokens"] == str(4 * 8384)
    assert dp["gpu_memory_utilization"] == "0.75"
