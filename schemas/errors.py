"""The one declared set of quarantine error classes, and the exception that carries one.

A quarantine record's `error` is always a member of `ErrorClass`; its `message` names the problem in words
(and, for an unexpected exception, the exception's type). Stages raise `QuarantineError` for an outcome they
recognise; the stage base class (`stages/base.py`) turns anything else into `StageFailed` (or one of the
classes `classify` knows), so no free-form error string reaches the table.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorClass(StrEnum):
    # listing: the input tree or URI list
    SKIPPED_EXTENSION = "SkippedExtension"  # not an audio extension this job reads
    BROKEN_SYMLINK = "BrokenSymlink"  # a symlink loop or a dangling symlink
    SYMLINK_OUTSIDE_INPUT = "SymlinkOutsideInput"  # a symlink that leads out of the input tree
    SYMLINKED_DIRECTORY = "SymlinkedDirectory"  # a symlink to a directory (not followed)
    NOT_FOUND = "NotFound"
    # probing: the file as bytes
    UNREADABLE = "Unreadable"  # no permission to read it
    EMPTY_FILE = "EmptyFile"
    TOO_LARGE = "TooLarge"  # over ingest.max_file_bytes
    NOT_AUDIO = "NotAudio"  # no decoder recognises it
    DUPLICATE_CONTENT = "DuplicateContent"  # the same bytes as another source of the job
    # decoding and segmenting: the file as audio
    DECODE_ERROR = "DecodeError"  # a decoder failed part-way
    NON_FINITE_SAMPLES = "NonFiniteSamples"  # NaN / Inf only
    TOO_SHORT = "TooShort"  # under ingest.min_source_s
    ALL_SILENCE = "AllSilence"  # nothing audible
    # a stage's own failure on one row
    OUT_OF_MEMORY = "OutOfMemory"
    STAGE_FAILED = "StageFailed"  # an annotator, merger or other stage code raised on this row


class QuarantineError(Exception):
    """A row that cannot go on, with its class and a message that names the problem.

    `stage` overrides the raising stage's name in the record (the segmenter reports decode failures as
    stage `decode`)."""

    def __init__(self, error: ErrorClass | str, message: str, stage: str | None = None):
        super().__init__(message)
        self.error = ErrorClass(error)  # ValueError for a class outside the declared set
        self.message = message
        self.stage = stage


def classify(exc: BaseException) -> tuple[ErrorClass, str]:
    """The declared class and the message of any exception raised while a stage handled a row."""
    if isinstance(exc, QuarantineError):
        return exc.error, exc.message
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError):
        return ErrorClass.OUT_OF_MEMORY, text
    if isinstance(exc, PermissionError):
        return ErrorClass.UNREADABLE, f"permission denied: {text}"
    return ErrorClass.STAGE_FAILED, text
