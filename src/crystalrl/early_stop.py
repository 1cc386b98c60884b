"""How a command stops when its config is wrong: a short message, and no empty run folder.

Hydra creates a run's folder (and writes its ``.hydra/`` record and log there) before the
command's code starts. A command that then stops on a missing dataset or checkpoint left
that folder behind, empty of results, and printed a long traceback whose last line was
the only useful one. Errors that are about the user's settings, not about the code, are
printed alone; a folder that holds nothing but Hydra's own files is removed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: What Hydra writes into every run folder; a folder with nothing else holds no results.
HYDRA_FILES = (".hydra",)
HYDRA_SUFFIXES = (".log",)
#: What :func:`crystalrl.training.fit` writes before training starts.
SETUP_FILES = ("config.yaml",)


def user_error_types() -> tuple[type[BaseException], ...]:
    """Errors whose message says all a user needs: the key, the value, what to do."""
    from crystalrl.checkpoint_registry import (
        ChecksumMismatchError,
        UnknownCheckpointError,
        UnreadableCheckpointError,
    )
    from crystalrl.checks import SettingError
    from crystalrl.data.parse import DatasetError
    from crystalrl.output_paths import OutputPathError
    from crystalrl.reference.datasets import ReferenceDatasetError
    from crystalrl.resume_check import ResumeSettingsError

    return (
        SettingError,
        DatasetError,
        UnknownCheckpointError,
        ChecksumMismatchError,
        UnreadableCheckpointError,
        ResumeSettingsError,
        OutputPathError,
        ReferenceDatasetError,
    )


def holds_no_results(folder: Path) -> bool:
    """Whether ``folder`` holds only what Hydra and the run's setup write."""
    if not folder.is_dir():
        return False
    for entry in folder.iterdir():
        if entry.name in HYDRA_FILES or entry.name in SETUP_FILES:
            continue
        if entry.is_file() and entry.name.endswith(HYDRA_SUFFIXES):
            continue
        return False
    return True


def remove_if_no_results(folder: str | os.PathLike) -> bool:
    """Remove ``folder`` when it holds no results; tell whether it did."""
    folder = Path(folder)
    if holds_no_results(folder):
        shutil.rmtree(folder, ignore_errors=True)
        return not folder.exists()
    return False


@contextmanager
def stops_cleanly(run_dir: str | os.PathLike | None) -> Iterator[None]:
    """Run a command's body; on an error, remove ``run_dir`` if it holds no results, and
    turn a user error into a one-message exit (status 1) instead of a traceback."""
    try:
        yield
    except Exception as exc:
        if run_dir is not None:
            remove_if_no_results(run_dir)
        cause = user_error(exc)
        if cause is not None and not os.environ.get("HYDRA_FULL_ERROR"):
            raise SystemExit(f"Error: {cause}") from exc
        raise


def user_error(exc: BaseException) -> BaseException | None:
    """``exc``, or the error it wraps (Hydra wraps what a target's constructor raises),
    when that is a user error; else ``None``."""
    types = user_error_types()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, types):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def reference_found(
    reference: str, data_dir: str | os.PathLike | None, run_dir: str | os.PathLike | None
) -> list[Path]:
    """The folders of ``reference``, or the one-message exit of :func:`stops_cleanly` when
    one is missing. Called before any model loads: the reference was otherwise looked for
    only once the VAE and the structures were loaded, and failed in a long traceback."""
    from crystalrl.reference.datasets import ReferenceDatasetError, resolve_reference_dirs

    with stops_cleanly(run_dir):
        try:
            return resolve_reference_dirs(reference, data_dir)
        except ReferenceDatasetError as exc:
            where = Path(data_dir or "data").absolute()
            setting = os.environ.get("CRYSTALRL_DATA_DIR", "unset")
            raise ReferenceDatasetError(
                f"{exc} (looked in {where}; CRYSTALRL_DATA_DIR is now {setting})"
            ) from exc
