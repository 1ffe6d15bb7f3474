"""`make demo`: build a small sample corpus, annotate it on a local Ray instance, say where the output is.

The corpus mixes synthesized audio whose content is known (TTS speech, a MIDI piece rendered through the
FluidR3 General MIDI soundfont, noise bursts and clicks) with real recordings shipped by Debian and by the
pyannote.audio wheel, plus two bad files that must land in the quarantine table.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")


def _tts(text: str, voice: str = "en-us") -> np.ndarray:
    import soxr

    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
        x, sr = sf.read(wav, dtype="float32")
    return (0.5 * soxr.resample(x, sr, SR) / (np.abs(x).max() + 1e-9)).astype(np.float32)


def _render_midi(path: Path) -> None:
    """A 24 s piece at 96 BPM in G major: piano chords, a melody and a drum kit, rendered by fluidsynth."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=96)
    beat = 60 / 96
    piano = pretty_midi.Instrument(program=0)
    for bar, root in enumerate([55, 62, 64, 60] * 2):  # G D Em C
        third = 4 if root in (55, 62, 60) else 3
        for p in (root, root + third, root + 7):
            piano.notes.append(pretty_midi.Note(80, p, bar * 4 * beat, (bar + 1) * 4 * beat - 0.05))
    melody = pretty_midi.Instrument(program=73)  # flute
    for i, p in enumerate([79, 78, 76, 74, 76, 78, 79, 81] * 4):
        melody.notes.append(pretty_midi.Note(90, p, i * beat, (i + 1) * beat - 0.02))
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    for i in range(32):
        drums.notes.append(pretty_midi.Note(100, 36 if i % 2 == 0 else 38, i * beat, i * beat + 0.1))
        drums.notes.append(pretty_midi.Note(70, 42, i * beat + beat / 2, i * beat + beat / 2 + 0.05))
    pm.instruments += [piano, melody, drums]
    with tempfile.TemporaryDirectory() as d:
        mid = Path(d) / "piece.mid"
        pm.write(str(mid))
        subprocess.run(["fluidsynth", "-ni", "-g", "0.6", "-r", "44100", "-F", str(path), str(SOUNDFONT), str(mid)],
                       check=True, capture_output=True)


def build_corpus(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    gap = lambda s: np.zeros(int(s * SR), np.float32)  # noqa: E731
    talk = [_tts("Welcome to the event preserving annotation demo."), gap(0.4),
            _tts("Each file is cut at pauses and at changes of sound, never inside a word.", "en-gb"), gap(1.5),
            _tts("This last sentence stands on its own.")]
    sf.write(d / "talk.wav", np.concatenate(talk), SR)
    if SOUNDFONT.exists():
        _render_midi(d / "piece_96bpm_g_major.wav")
    rng = np.random.default_rng(0)
    t = np.arange(int(0.06 * SR)) / SR
    hit = (np.sin(2 * np.pi * 200 * t) * np.exp(-t * 60)).astype(np.float32)
    sfx = [gap(0.5), (0.3 * rng.standard_normal(SR)).astype(np.float32), gap(1.2)]
    clicks = np.zeros(4 * SR, np.float32)
    for k in range(8):
        clicks[int(k * 0.5 * SR) : int(k * 0.5 * SR) + len(hit)] += hit
    sf.write(d / "sounds.flac", np.concatenate(sfx + [clicks, gap(0.5)]), SR)
    for real in [Path("/usr/share/sounds/freedesktop/stereo/complete.oga"),
                 Path("/usr/share/sounds/freedesktop/stereo/phone-incoming-call.oga")]:
        if real.exists():
            shutil.copy(real, d / real.name)
    try:
        import pyannote.audio

        sample = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"
        if sample.exists():
            shutil.copy(sample, d / "pyannote_two_speakers.wav")
    except ImportError:
        pass
    (d / "broken.mp3").write_bytes(b"ID3 this is not really an mp3 " * 40)
    sf.write(d / "silence.wav", np.zeros(2 * SR, np.float32), SR)
    return d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--output", default="demo_out")
    args = ap.parse_args(argv)
    out = Path(args.output)
    if (out / "shards").exists():
        shutil.rmtree(out / "shards"), shutil.rmtree(out / "manifest", ignore_errors=True)
        shutil.rmtree(out / "quarantine", ignore_errors=True)
    corpus = build_corpus(out / "corpus")
    print(f"sample corpus: {corpus} ({len(list(corpus.iterdir()))} files)")
    from jobs.cli import main as cli

    rc = cli(["annotate", str(corpus), "--output", str(out / "annotated")])
    if rc == 0:
        show_captions(out / "annotated")
    return rc


def show_captions(annotated: Path, n: int = 5) -> None:
    """Print a few unified captions from the manifest."""
    import pyarrow.parquet as pq

    rows = pq.read_table(annotated / "manifest", columns=["source_uri", "start_s", "caption", "caption_source"])
    print(f"captions ({min(n, rows.num_rows)} of {rows.num_rows}):")
    for r in rows.to_pylist()[:n]:
        print(f"  {Path(r['source_uri']).name} @ {r['start_s']:.1f} s [{r['caption_source']}]: {r['caption']}")


if __name__ == "__main__":
    sys.exit(main())
