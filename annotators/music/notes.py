"""Optional note transcription with Spotify's basic-pitch ICASSP 2022 model (the ONNX file it ships), run
directly with onnxruntime: no TensorFlow, and none of basic-pitch's own decoding (which needs `resampy`).
No Ray here.

The model takes 2 s windows at 22.05 kHz and gives note, onset and contour posteriors at ~86 frames/s over
88 piano keys. A note is a run of frames of one key with note posterior >= `frame_threshold`, at least
`min_note_s` long, whose peak note or onset posterior reaches `onset_threshold`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL_SR = 22050
FFT_HOP = 256
FPS = MODEL_SR / FFT_HOP  # frames are FFT_HOP samples apart (basic-pitch rounds this to 86 for trimming)
WINDOW = MODEL_SR * 2 - FFT_HOP  # 43844 samples per model input
OVERLAP_FRAMES = 30
OVERLAP = OVERLAP_FRAMES * FFT_HOP
LOWEST_MIDI = 21  # key 0 is A0


def default_model_path() -> Path:
    spec = importlib.util.find_spec("basic_pitch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("basic-pitch is not installed (pip install --no-deps basic-pitch==0.4.0)")
    return Path(next(iter(spec.submodule_search_locations))) / "saved_models" / "icassp_2022" / "nmp.onnx"


def basic_pitch_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("basic-pitch")
    except PackageNotFoundError:
        return ""


@dataclass
class Note:
    start_s: float
    end_s: float
    pitch: int  # MIDI
    amplitude: float


class NoteTranscriber:
    """basic-pitch posteriors and a simple note decoder; load once per actor."""

    def __init__(self, model_path: str | Path | None = None, num_threads: int = 1):
        from annotators.common.onnx import cpu_session

        path = Path(model_path) if model_path else default_model_path()
        self._session = cpu_session(path, num_threads)
        self._input = self._session.get_inputs()[0].name
        # output order as in basic_pitch.inference.Model.predict: note, onset (contour is unused)
        self._outputs = ["StatefulPartitionedCall:1", "StatefulPartitionedCall:2"]

    def posteriors(self, audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """(n,) mono audio -> note and onset posteriors, each (frames, 88)."""
        import soxr

        x = soxr.resample(np.asarray(audio, dtype=np.float32), sr, MODEL_SR).astype(np.float32)
        n_orig = x.size
        x = np.concatenate([np.zeros(OVERLAP // 2, np.float32), x])
        hop = WINDOW - OVERLAP
        notes, onsets = [], []
        for start in range(0, x.size, hop):
            w = x[start : start + WINDOW]
            if w.size < WINDOW:
                w = np.pad(w, (0, WINDOW - w.size))
            note, onset = self._session.run(self._outputs, {self._input: w[None, :, None]})
            half = OVERLAP_FRAMES // 2
            notes.append(note[0, half:-half])
            onsets.append(onset[0, half:-half])
        n_frames = int(np.floor(n_orig * (int(FPS) / MODEL_SR)))
        return np.concatenate(notes)[:n_frames], np.concatenate(onsets)[:n_frames]

    def transcribe(self, audio: np.ndarray, sr: int, *, frame_threshold: float = 0.3,
                   onset_threshold: float = 0.5, min_note_s: float = 0.1) -> list[Note]:
        note, onset = self.posteriors(audio, sr)
        min_len = max(1, int(round(min_note_s * FPS)))
        out: list[Note] = []
        for key in range(note.shape[1]):
            active = note[:, key] >= frame_threshold
            if not active.any():
                continue
            edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
            for a, b in zip(edges[::2], edges[1::2], strict=True):
                if b - a < min_len:
                    continue
                peak = max(float(note[a:b, key].max()), float(onset[max(0, a - 2) : b, key].max()))
                if peak >= onset_threshold:
                    out.append(Note(a / FPS, b / FPS, LOWEST_MIDI + key, float(note[a:b, key].mean())))
        out.sort(key=lambda n: (n.start_s, n.pitch))
        return _drop_octave_harmonics(out)


def _drop_octave_harmonics(notes: list[Note]) -> list[Note]:
    """Drop a note sounding at the 2nd-5th partial (+12, +19, +24, +28 semitones) of a stronger, overlapping
    note: strong partials of bowed, blown and struck tones are transcribed as notes of their own otherwise."""
    keep = []
    for n in notes:
        dur = n.end_s - n.start_s
        shadowed = any(
            m.pitch in (n.pitch - 12, n.pitch - 19, n.pitch - 24, n.pitch - 28) and m.amplitude >= n.amplitude
            and min(m.end_s, n.end_s) - max(m.start_s, n.start_s) >= 0.5 * dur
            for m in notes
        )
        if not shadowed:
            keep.append(n)
    return keep


def melody_range(notes: list[Note]) -> list[int] | None:
    """[lowest, highest] MIDI note of the transcription, None when nothing was transcribed."""
    if not notes:
        return None
    pitches = [n.pitch for n in notes]
    return [int(min(pitches)), int(max(pitches))]
