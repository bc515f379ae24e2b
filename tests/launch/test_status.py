"""status's view of a failed or cancelled job's log."""
from collapse_hpc.launch.status import error_lines


def test_cancelled_job_with_progress_bars_shows_slurms_reason_and_readable_lines(tmp_path):
    # a job cancelled mid-epoch logs on through Slurm's kill wait; tqdm redraws with \r
    bar = "".join(f"\repoch {{e}}/40: {i * 6:3d}%|{'#' * i:<16}| {i}/16 [00:00<00:02, 6.5it/s, loss=4.4]"
                  for i in range(17))
    text = "08:06:06 collapse_hpc.lm: gen 0: 512 training blocks\n"
    text += "slurmstepd-vm: error: *** JOB 45 ON vm CANCELLED AT 2026-12-03T08:06:30 ***\n"
    text += "".join(bar.format(e=e) + f"\r{' ' * 70}\r08:06:{e:02d} collapse_hpc.lm: epoch {e}/40: train loss 4.4\n"
                    for e in range(1, 60))
    text += ("\repoch 60/40:   0%|          | 0/16 [00:00<?, ?it/s]"
             "\repoch 60/40:   6%|#  | 1/16srun: error: task 0: Killed\n")
    log = tmp_path / "45_0_log.err"
    log.write_text(text)
    assert log.stat().st_size > 16384
    lines = error_lines(str(log))
    assert lines[0] == "slurmstepd-vm: error: *** JOB 45 ON vm CANCELLED AT 2026-12-03T08:06:30 ***"
    assert lines[-1] == "epoch 60/40:   6%|#  | 1/16srun: error: task 0: Killed"
    assert lines[-2].endswith("collapse_hpc.lm: epoch 59/40: train loss 4.4") and len(lines) == 5
    assert not any("\r" in ln for ln in lines)


def test_last_lines_of_a_plain_traceback(tmp_path):
    log = tmp_path / "9_0_log.err"
    log.write_text("start\nTraceback (most recent call last):\n  File x\nValueError: boom\n\n")
    assert error_lines(str(log), n=2) == ["  File x", "ValueError: boom"]
