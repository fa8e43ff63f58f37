"""A Dagster logger that turns step events into the CLI's progress bar.

The bar belongs to the CLI (`start`/`close`); Dagster may build the logger more than
once per run, and every copy reports into the same bar.
"""
import logging
import sys

import dagster as dg
from tqdm import tqdm

_bar: list[tqdm] = []


def start(total: int, desc: str = "medlake run") -> None:
    close()
    _bar.append(tqdm(total=total, unit="step", desc=desc))


def close() -> None:
    while _bar:
        _bar.pop().close()


def _say(bar: tqdm, line: str) -> None:
    # stderr, beside the bar: the CLI sends stdout (dbt's chatter) to a log file.
    bar.write(line, file=sys.stderr)


class _StepProgress(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)  # step events are logged at DEBUG

    def emit(self, record: logging.LogRecord) -> None:
        if not _bar:
            return
        bar = _bar[-1]
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        step = meta.get("step_key") or ""
        if event is None:
            if record.levelno >= logging.WARNING:
                _say(bar, f"  ! {step}: {meta.get('orig_message', record.getMessage())}")
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            bar.set_postfix_str(step)
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            bar.update(1)
            if kind == "STEP_FAILURE":
                _say(bar, f"  ✗ {step} failed: "
                          f"{event.event_specific_data.error.message.strip()}")
        elif kind == "ASSET_CHECK_EVALUATION":
            data = event.event_specific_data
            _say(bar, f"  {'✓' if data.passed else '✗'} check "
                      f"{data.asset_key.to_user_string()}:{data.check_name}")


@dg.logger(description="Progress bar for `medlake run`.")
def progress_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    log = logging.Logger("medlake.progress", level=logging.DEBUG)
    log.addHandler(_StepProgress())
    return log
