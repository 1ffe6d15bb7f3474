"""Test audio with exact ground truth: MIDI rendered with real sampled instruments, plus plain signals.

MIDI is written with `pretty_midi` and rendered by the `fluidsynth` CLI with the FluidR3 GM soundfont
(Debian `fluid-soundfont-gm`): drums on GM channel 10, chords, bass and melodies at a known tempo and key.
Clicks, tones and noise bursts are synthesised directly. Everything is float32 mono at 16 kHz.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf

SR = 16000
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")

PITCH_CLASSES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
# GM drum notes
KICK, SNARE, CLOSED_HAT, RIDE = 36, 38, 42, 51


def have_fluidsynth() -> bool:
    return shutil.which("fluidsynth") is not None and SOUNDFONT.exists()


def render(pm: pretty_midi.PrettyMIDI, sr: int = SR, tail_s: float = 0.0) -> np.ndarray:
    """Render a PrettyMIDI with fluidsynth (FluidR3 GM) to float32 mono, peak-normalised to 0.5."""
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "x.mid", Path(tmp) / "x.wav"
        pm.write(str(mid))
        subprocess.run(
            ["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(sr), "-F", str(wav), str(SOUNDFONT), str(mid)],
            check=True, capture_output=True,
        )
        audio, file_sr = sf.read(wav, dtype="float32", always_2d=True)
    assert file_sr == sr, file_sr
    audio = audio.mean(axis=1)
    n = int(round((pm.get_end_time() + tail_s) * sr))
    audio = audio[:n] if audio.shape[0] >= n else np.pad(audio, (0, n - audio.shape[0]))
    peak = float(np.abs(audio).max()) or 1.0
    return (0.5 * audio / peak).astype(np.float32)


# ------------------------------------------------------------------ rhythm
def click_track(bpm: float, duration_s: float, sr: int = SR, start_s: float = 0.0,
                accent_every: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Short decaying 1.5 kHz clicks on every beat. Returns (audio, beat_times)."""
    period = 60.0 / bpm
    beats = np.arange(start_s, duration_s - 0.05, period)
    audio = np.zeros(int(duration_s * sr), np.float32)
    t = np.arange(int(0.03 * sr)) / sr
    click = (np.sin(2 * np.pi * 1500 * t) * np.exp(-t / 0.006)).astype(np.float32)
    for i, b in enumerate(beats):
        s = int(round(b * sr))
        gain = 1.0 if (accent_every and i % accent_every == 0) else 0.6
        seg = audio[s : s + click.size]
        seg += gain * click[: seg.size]
    return audio * 0.5, beats


def drum_pattern(bpm: float, n_bars: int, meter: int = 4, program_kit: int = 0,
                 hats_per_beat: int = 2, lead_in_beats: int = 0) -> tuple[pretty_midi.PrettyMIDI, np.ndarray]:
    """A GM drum groove (channel 10). 4/4: kick on 1 and 3, snare on 2 and 4; 3/4: kick on 1, snare on 2, 3.

    Returns (midi, beat_times); the first `lead_in_beats` beats are silent (no drums) but still listed.
    """
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    drums = pretty_midi.Instrument(program=program_kit, is_drum=True, name="drums")
    period = 60.0 / bpm
    n_beats = lead_in_beats + n_bars * meter
    beats = np.arange(n_beats) * period
    for k in range(lead_in_beats, n_beats):
        t = beats[k]
        pos = (k - lead_in_beats) % meter
        if meter == 4:
            note = KICK if pos in (0, 2) else SNARE
            vel = 110 if pos == 0 else 95
        else:  # 3/4 waltz: strong kick on one, light snares after
            note, vel = (KICK, 115) if pos == 0 else (SNARE, 60)
        drums.notes.append(pretty_midi.Note(vel, note, t, t + 0.1))
        for h in range(hats_per_beat):
            th = t + h * period / hats_per_beat
            drums.notes.append(pretty_midi.Note(70 if h == 0 else 50, CLOSED_HAT, th, th + 0.05))
    pm.instruments.append(drums)
    return pm, beats


# ------------------------------------------------------------------ harmony
# (semitones above the tonic, chord quality) per bar
PROGRESSIONS = {
    "major": {
        "cadence": [(0, "maj"), (5, "maj"), (7, "maj"), (0, "maj"), (9, "min"), (5, "maj"), (7, "dom7"), (0, "maj")],
        "pop": [(0, "maj"), (7, "maj"), (9, "min"), (5, "maj")] * 2,  # I V vi IV
        "jazz": [(2, "min7"), (7, "dom7"), (0, "maj7"), (9, "min7"), (2, "min7"), (7, "dom7"), (0, "maj7"), (0, "maj7")],
    },
    "minor": {
        "cadence": [(0, "min"), (5, "min"), (7, "dom7"), (0, "min"), (8, "maj"), (3, "maj"), (7, "dom7"), (0, "min")],
        "aeolian": [(0, "min"), (10, "maj"), (8, "maj"), (10, "maj"), (0, "min"), (8, "maj"), (10, "maj"), (0, "min")],
        "jazz": [(2, "m7b5"), (7, "dom7"), (0, "min7"), (0, "min7"), (5, "min7"), (7, "dom7"), (0, "min"), (0, "min")],
    },
}
_CHORD_INTERVALS = {"maj": (0, 4, 7), "min": (0, 3, 7), "dom7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11),
                    "min7": (0, 3, 7, 10), "m7b5": (0, 3, 6, 10)}


def key_name(tonic_pc: int, mode: str) -> str:
    return f"{PITCH_CLASSES[tonic_pc]} {mode}"


def chord_progression(tonic_pc: int, mode: str, bpm: float = 96, beats_per_chord: int = 4,
                      program: int = 0, bass_program: int | None = 32, melody_program: int | None = None,
                      repeats: int = 1, drums: bool = False, seed: int = 0,
                      style: str = "cadence") -> pretty_midi.PrettyMIDI:
    """A chord progression in a known key: `style` names one of PROGRESSIONS[mode] (default: cadential
    I IV V I vi IV V7 I, or i iv V7 i VI III V7 i in minor).

    Block chords in `program` around middle C, a root bass line, and optionally a scale-wise melody
    drawn from the key's scale (harmonic minor's raised 7th only on V), and a 4/4 drum groove.
    """
    rng = np.random.default_rng(seed)
    prog = PROGRESSIONS[mode][style] * repeats
    scale = [0, 2, 4, 5, 7, 9, 11] if mode == "major" else [0, 2, 3, 5, 7, 8, 10]
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    chords = pretty_midi.Instrument(program=program, name="chords")
    bass = pretty_midi.Instrument(program=bass_program or 0, name="bass")
    mel = pretty_midi.Instrument(program=melody_program or 0, name="melody")
    period = 60.0 / bpm
    dur = beats_per_chord * period
    for i, (deg, quality) in enumerate(prog):
        t0 = i * dur
        root = 60 + ((tonic_pc + deg) % 12)
        if root > 66:
            root -= 12
        for iv in _CHORD_INTERVALS[quality]:
            chords.notes.append(pretty_midi.Note(80, root + iv, t0, t0 + dur * 0.95))
        if bass_program is not None:
            for b in range(beats_per_chord // 2):
                tb = t0 + b * 2 * period
                bass.notes.append(pretty_midi.Note(90, root - 24, tb, tb + 2 * period * 0.9))
        if melody_program is not None:
            chord_pcs = {(root + iv) % 12 for iv in _CHORD_INTERVALS[quality]}
            for b in range(beats_per_chord):
                tb = t0 + b * period
                if b % 2 == 0:  # chord tone on strong beats
                    pc = sorted(chord_pcs)[int(rng.integers(len(chord_pcs)))]
                else:
                    pc = (tonic_pc + scale[int(rng.integers(7))]) % 12
                mel.notes.append(pretty_midi.Note(85, 72 + ((pc - 0) % 12), tb, tb + period * 0.9))
    pm.instruments.append(chords)
    if bass_program is not None:
        pm.instruments.append(bass)
    if melody_program is not None:
        pm.instruments.append(mel)
    if drums:
        n_bars = int(np.ceil(len(prog) * beats_per_chord / 4))
        dpm, _ = drum_pattern(bpm, n_bars)
        pm.instruments.append(dpm.instruments[0])
    return pm


def melody(pitches: list[int], bpm: float = 100, program: int = 73) -> pretty_midi.PrettyMIDI:
    """One instrument playing `pitches` (MIDI numbers) as quarter notes (default GM 74: flute)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    inst = pretty_midi.Instrument(program=program)
    period = 60.0 / bpm
    for i, p in enumerate(pitches):
        inst.notes.append(pretty_midi.Note(90, int(p), i * period, (i + 0.9) * period))
    pm.instruments.append(inst)
    return pm


# ------------------------------------------------------------------ sound events
def tone(freq: float, duration_s: float, sr: int = SR, amp: float = 0.3, fade_s: float = 0.005) -> np.ndarray:
    t = np.arange(int(duration_s * sr)) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    return _fade(x.astype(np.float32), int(fade_s * sr))


def noise_burst(duration_s: float, sr: int = SR, amp: float = 0.3, seed: int = 0, fade_s: float = 0.005) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(int(duration_s * sr)) * amp / 2.0
    return _fade(x.astype(np.float32), int(fade_s * sr))


def _fade(x: np.ndarray, n: int) -> np.ndarray:
    if n > 0 and x.size > 2 * n:
        ramp = np.linspace(0, 1, n, dtype=np.float32)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def place(events: list[tuple[float, np.ndarray]], duration_s: float, sr: int = SR,
          background_db: float = -50.0, seed: int = 1) -> np.ndarray:
    """Mix `(start_s, signal)` events into quiet pink-ish background noise at `background_db` dBFS RMS."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * sr)
    bg = np.cumsum(rng.standard_normal(n)).astype(np.float32)
    bg -= np.convolve(bg, np.ones(400) / 400, mode="same")  # remove the random-walk drift
    bg *= 10 ** (background_db / 20) / (np.sqrt(np.mean(bg**2)) + 1e-12)
    out = bg.copy()
    for start, sig in events:
        s = int(round(start * sr))
        seg = out[s : s + sig.size]
        seg += sig[: seg.size]
    return out.astype(np.float32)
