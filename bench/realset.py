"""The real-recording regression set of issue 21, built from Debian packages and cached.

    from bench.realset import load_realset
    rs = load_realset()          # RealSet: effects, music, speech, scenes (16 kHz mono float32 + truth)

Truth lives in `bench/realset.yaml` (labelled by hand and from file names). Package files are read under `/`
(or $EVENTCAP_PKG_ROOT); the built clips are cached as 16-bit WAV under $EVENTCAP_REALSET_CACHE (default
~/.cache/eventcap/realset/<hash of the truth file and this module>), so a second load reads ~30 small files.
`python -m bench.realset` builds the set and lists it.

Drum loops are sequenced here from the hydrogen-drumkits one-shot recordings at an exact tempo, with small
timing and level variations (seeded), so their tempo truth is exact. Scenes place effects on a noise floor
(ALSA's Noise.wav at -55 dBFS); their event truth is each placed clip's extent, from its first sample within
35 dB of its peak to its last.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import yaml

SR = 16000
TRUTH = Path(__file__).with_name("realset.yaml")
PACKAGES = ("sound-theme-freedesktop", "asterisk-moh-opsound-wav", "wesnoth-1.16-data", "wesnoth-1.16-music",
            "supertux-data", "hydrogen-drumkits", "alsa-utils")
KITS = "usr/share/hydrogen/data/drumkits"
NOISE = "usr/share/sounds/alsa/Noise.wav"
EVENT_RANGE_DB = 35.0
EFFECT_PAD_S = 0.1  # noise floor either side of an effect clip, as a file of it would have  # an event lasts while it stays within this of its peak


# ------------------------------------------------------------------ data
@dataclass
class Effect:
    id: str
    audio: np.ndarray
    labels: list[str]


@dataclass
class Music:
    id: str
    audio: np.ndarray
    tempo: float | None
    key: str | None
    tonal: bool
    percussion_only: bool


@dataclass
class Speech:
    id: str
    audio: np.ndarray
    transcript: str | None  # reference words; None = not labelled
    speakers: int | None
    turns: list[tuple[str, float, float]] = field(default_factory=list)  # reference speaker turns
    words: bool = True  # False: babble, nothing intelligible


@dataclass
class SceneEvent:
    label: str  # the effect id
    labels: list[str]  # AudioSet names that name it
    onset: float
    offset: float


@dataclass
class Scene:
    id: str
    audio: np.ndarray
    events: list[SceneEvent]


@dataclass
class RealSet:
    effects: list[Effect]
    music: list[Music]
    speech: list[Speech]
    scenes: list[Scene]


class MissingPackageFile(FileNotFoundError):
    pass


# ------------------------------------------------------------------ reading
def pkg_root() -> Path:
    return Path(os.environ.get("EVENTCAP_PKG_ROOT", "/"))


def read_pkg(rel: str, crop: list[float] | None = None) -> np.ndarray:
    """A package file as 16 kHz mono float32 (optionally [start_s, duration_s] of it)."""
    path = pkg_root() / rel
    if not path.exists():
        raise MissingPackageFile(f"{path} missing: apt-get install {' '.join(PACKAGES)}")
    return read_audio(path, crop)


def read_audio(path: Path | str, crop: list[float] | None = None) -> np.ndarray:
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if crop:
        a = int(crop[0] * sr)
        x = x[a : a + int(crop[1] * sr)]
    if sr != SR:
        x = soxr.resample(x, sr, SR).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def extent(x: np.ndarray, range_db: float = EVENT_RANGE_DB) -> tuple[float, float]:
    """(first, last) time in s where the 10 ms RMS is within range_db of its peak."""
    n = SR // 100
    frames = x[: x.size // n * n].reshape(-1, n)
    if frames.size == 0:
        return 0.0, x.size / SR
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    on = np.flatnonzero(db >= db.max() - range_db)
    return float(on[0] * n / SR), float((on[-1] + 1) * n / SR)


# ------------------------------------------------------------------ drum loops
# one-shot sample per voice (first velocity layer), per kit
KIT_FILES = {
    "forzee": {"kick": "ForzeeStereo/Kick-0.wav", "snare": "ForzeeStereo/Snare-0.wav",
               "hat": "ForzeeStereo/HiHatClosed-0.wav", "open": "ForzeeStereo/HiHatOpen-0.wav",
               "ride": "ForzeeStereo/Ride-0.wav", "tom": "ForzeeStereo/TomLow-0.wav"},
    "colombo": {"kick": "ColomboAcousticDrumkit/bassdrum-4mics-br-stereo-normal3.flac",
                "snare": "ColomboAcousticDrumkit/snare-opaque-normal-mic-normal_shot2.flac",
                "hat": "ColomboAcousticDrumkit/hihat-closed-1.flac",
                "open": "ColomboAcousticDrumkit/hihat-open-1.flac",
                "ride": "ColomboAcousticDrumkit/crash20i__ride4.flac",
                "tom": "ColomboAcousticDrumkit/tom-low-1.flac"},
    "djembe": {"bass": "circAfrique v4/Djembe1 Bass.wav", "tone": "circAfrique v4/Djembe1 Tone.wav",
               "slap": "circAfrique v4/Djembe1 Slap.wav", "dun": "circAfrique v4/Dununba1 Head Hit.wav",
               "bell": "circAfrique v4/Kenkeni1 Bell Hit.wav"},
    "bongo": {"hi": "Gimme A Hand 1.0/BongoHi-Med.wav", "lo": "Gimme A Hand 1.0/BongoLo-Med.wav",
              "hi_soft": "Gimme A Hand 1.0/BongoHi-Soft.wav"},
}
# pattern: (steps per beat, beats per bar, {voice: [(step, gain)]}); steps count from the bar's first beat
PATTERNS: dict[str, tuple[int, int, dict[str, list[tuple[int, float]]]]] = {
    "rock": (4, 4, {"kick": [(0, 1.0), (8, 1.0), (10, 0.7)], "snare": [(4, 1.0), (12, 1.0)],
                    "hat": [(s, 0.6 if s % 4 else 0.8) for s in range(0, 16, 2)]}),
    "funk": (4, 4, {"kick": [(0, 1.0), (3, 0.7), (6, 0.8), (10, 0.9)], "snare": [(4, 1.0), (12, 1.0), (15, 0.3)],
                    "hat": [(s, 0.5 if s % 2 else 0.75) for s in range(16)]}),
    "halftime": (4, 4, {"kick": [(0, 1.0), (11, 0.7)], "snare": [(8, 1.0)],
                        "hat": [(s, 0.45 if s % 2 else 0.7) for s in range(16)]}),
    # swung eighths: triplet grid, beats on 0, 3, 6, 9
    "shuffle": (3, 4, {"kick": [(0, 1.0), (6, 0.9)], "snare": [(3, 1.0), (9, 1.0)],
                       "ride": [(s, 0.7) for s in (0, 2, 3, 5, 6, 8, 9, 11)]}),
    "waltz": (2, 3, {"kick": [(0, 1.0)], "snare": [(2, 0.7), (4, 0.7)], "hat": [(s, 0.5) for s in range(6)]}),
    "djembe": (4, 4, {"bass": [(0, 1.0), (8, 0.9)], "tone": [(2, 0.8), (3, 0.7), (10, 0.8), (11, 0.7)],
                      "slap": [(4, 1.0), (6, 0.7), (12, 1.0), (14, 0.7)],
                      "dun": [(0, 0.8), (6, 0.7), (8, 0.8)], "bell": [(s, 0.4) for s in range(0, 16, 4)]}),
    "bongo": (4, 4, {"hi": [(0, 1.0), (4, 0.9), (8, 1.0), (12, 0.9)],
                     "hi_soft": [(2, 0.6), (6, 0.6), (10, 0.6), (14, 0.6), (15, 0.5)],
                     "lo": [(3, 0.9), (7, 0.8), (11, 0.9)]}),
    # an amen-like break: syncopated kick, displaced snares and ghost notes on a 16th grid
    "break": (4, 4, {"kick": [(0, 1.0), (2, 0.9), (10, 1.0), (11, 0.8)],
                     "snare": [(4, 1.0), (7, 0.5), (9, 0.6), (12, 1.0), (15, 0.5)],
                     "hat": [(s, 0.7 if s % 4 == 0 else 0.5) for s in range(0, 16, 2)]}),
    # 12/8 bell pattern (bembe) over four dotted-quarter beats: the pulse a listener taps is the dotted quarter
    "bembe": (3, 4, {"bell": [(s, 0.6) for s in (0, 2, 4, 5, 7, 9, 11)],
                     "bass": [(0, 1.0), (6, 0.9)], "slap": [(3, 0.8), (9, 0.8)], "tone": [(4, 0.6), (10, 0.6)],
                     "dun": [(0, 0.7), (6, 0.7)]}),
    # loud 16th-note hats over soft kick and snare: the hats' grouping pulls a tracker to 4/3 of the beat
    "hats16": (4, 4, {"kick": [(0, 0.5), (8, 0.5)], "snare": [(4, 0.45), (12, 0.45)],
                      "hat": [(s, 1.0 if s % 2 else 0.8) for s in range(16)]}),
    # straight kick and snare under triplet hats: 3/2 of the beat is the trap
    "triplethat": (3, 4, {"kick": [(0, 1.0), (6, 1.0)], "snare": [(3, 1.0), (9, 1.0)],
                          "hat": [(s, 0.8) for s in range(12)]}),
    # four-on-the-floor kick, tresillo snare (dembow)
    "dembow": (4, 4, {"kick": [(0, 1.0), (4, 1.0), (8, 1.0), (12, 1.0)],
                      "snare": [(3, 0.9), (6, 0.9), (11, 0.9), (14, 0.9)], "hat": [(s, 0.5) for s in range(0, 16, 2)]}),
    # tresillo kick (3+3+2 sixteenths): dotted-eighth spacing invites 4/3
    "tresillo": (4, 4, {"kick": [(0, 1.0), (3, 0.9), (6, 0.9), (8, 1.0), (11, 0.9), (14, 0.9)],
                        "snare": [(4, 0.7), (12, 0.7)], "hat": [(s, 0.4) for s in range(0, 16, 2)]}),
    # a snare roll: 32nd notes with a crescendo, no beat
    "roll": (8, 4, {"snare": [(s, 0.25 + 0.75 * s / 32) for s in range(32)]}),
}


def drum_loop(kit: str, pattern: str, bpm: float, seconds: float = 12.0, seed: int = 0) -> np.ndarray:
    """`pattern` played on `kit`'s one-shot recordings at exactly `bpm`, ±4 ms timing and ±1.5 dB level
    variation (seeded), peak -3 dBFS."""
    rng = np.random.default_rng(seed)
    steps, beats, voices = PATTERNS[pattern]
    samples = {v: read_pkg(f"{KITS}/{KIT_FILES[kit][v]}") for v in voices}
    out = np.zeros(int(seconds * SR) + SR, np.float32)
    beat_s = 60.0 / bpm
    bar_s = beats * beat_s
    n_bars = int(np.ceil(seconds / bar_s))
    for bar in range(n_bars):
        for v, hits in voices.items():
            for step, gain in hits:
                t = bar * bar_s + step * beat_s / steps + rng.normal(0.0, 0.004)
                a = max(0, int(round(t * SR)))
                if a >= int(seconds * SR):
                    continue
                s = samples[v] * gain * 10 ** (rng.normal(0.0, 1.5) / 20)
                b = min(out.size, a + s.size)
                out[a:b] += s[: b - a]
    out = out[: int(seconds * SR)]
    if pattern == "roll":  # a roll does not repeat: one bar, then its decay
        out[int(bar_s * SR) + SR :] = 0.0
    return _peak(out, -3.0)


def _peak(x: np.ndarray, dbfs: float) -> np.ndarray:
    p = float(np.abs(x).max())
    return (x * (10 ** (dbfs / 20) / p)).astype(np.float32) if p > 0 else x


# ------------------------------------------------------------------ builders
def _noise_floor(seconds: float, dbfs: float = -55.0, seed: int = 0) -> np.ndarray:
    """ALSA's recorded noise, looped, at `dbfs` RMS."""
    n = read_pkg(NOISE)
    n = n[np.abs(n) > 0] if np.any(n) else n
    reps = int(np.ceil(seconds * SR / n.size))
    rng = np.random.default_rng(seed)
    x = np.tile(np.roll(n, int(rng.integers(n.size))), reps)[: int(seconds * SR)]
    rms = float(np.sqrt(np.mean(x**2))) or 1.0
    return (x * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def _place(floor: np.ndarray, clip: np.ndarray, at_s: float, peak_dbfs: float = -6.0) -> tuple[float, float]:
    """Adds clip at at_s (peak `peak_dbfs`); returns the clip's (onset, offset) in the scene."""
    clip = _peak(clip, peak_dbfs)
    a = int(at_s * SR)
    b = min(floor.size, a + clip.size)
    floor[a:b] += clip[: b - a]
    on, off = extent(clip[: b - a])
    return round(at_s + on, 3), round(at_s + off, 3)


def _pyannote_sample() -> tuple[Path, Path, Path]:
    import pyannote.audio

    d = Path(pyannote.audio.__file__).parent / "sample"
    return d / "sample.wav", d / "sample.rttm", d / "sample.stm"


def _build_speech(spec: dict) -> Speech:
    if spec.get("pyannote"):
        wav, rttm, stm = _pyannote_sample()
        turns = []
        for line in rttm.read_text().splitlines():
            f = line.split()
            if f and f[0] == "SPEAKER":
                turns.append((f[7], float(f[3]), float(f[3]) + float(f[4])))
        words = [" ".join(line.split()[5:]) for line in stm.read_text().splitlines() if line.strip()]
        return Speech(spec["id"], read_audio(wav), " ".join(words), spec["speakers"], turns)
    if spec.get("babble"):
        wav, _, _ = _pyannote_sample()
        src = read_audio(wav)[int(6.5 * SR) : int(30 * SR)]
        alsa = np.concatenate([read_pkg(f"usr/share/sounds/alsa/{p}.wav") for p in
                               ("Front_Center", "Rear_Left", "Side_Right", "Front_Left")])
        out = np.zeros(10 * SR, np.float32)
        rng = np.random.default_rng(7)
        for k in range(6):
            voice = (src if k % 2 == 0 else np.tile(alsa, 4))[::-1]  # reversed: voices, no words
            a = int(rng.integers(0, max(1, voice.size - out.size)))
            out += _peak(voice[a : a + out.size], -12.0 - 2 * k)[: out.size]
        return Speech(spec["id"], _peak(out, -6.0), None, None, words=False)
    gap = _noise_floor(spec.get("gap_s", 0.8), -60.0)
    parts, words = [gap], []
    for p in spec["prompts"]:
        parts += [read_pkg(f"usr/share/sounds/alsa/{p}.wav"), gap]
        words.append(p.replace("_", " ").lower())
    return Speech(spec["id"], np.concatenate(parts), " ".join(words), spec.get("speakers"))


def _build_scene(spec: dict, effects: dict[str, dict]) -> Scene:
    if spec.get("floor") == "silence":
        floor = np.zeros(int(spec["duration"] * SR), np.float32)
    else:
        floor = _noise_floor(spec["duration"], seed=len(spec["id"]))
    events = []
    if "repeat" in spec:
        r = spec["repeat"]
        clip = read_pkg(r["path"], r.get("crop"))
        for k in range(r["count"]):
            on, off = _place(floor, clip, r["start"] + k * r["period"], -8.0)
            events.append(SceneEvent("tick", list(r["label"]), on, off))
    for at, eid, *level in spec.get("events", []):
        e = effects[eid]
        on, off = _place(floor, read_pkg(e["path"], e.get("crop")), float(at), *(float(v) for v in level))
        events.append(SceneEvent(eid, list(e["labels"]), on, off))
    return Scene(spec["id"], floor.astype(np.float32), sorted(events, key=lambda e: e.onset))


def build_realset(truth: dict) -> RealSet:
    effects = {e["id"]: e for e in truth["effects"]}
    pad = _noise_floor(EFFECT_PAD_S, -60.0)
    eff = [Effect(e["id"], np.concatenate([pad, read_pkg(e["path"], e.get("crop")), pad]), list(e["labels"]))
           for e in truth["effects"] if not e.get("scene_only")]
    music = []
    for m in truth["music"]:
        if "loop" in m:
            lp = m["loop"]
            audio = drum_loop(lp["kit"], lp["pattern"], lp["bpm"], seed=len(m["id"]))
        else:
            audio = read_pkg(m["path"], m.get("crop"))
        tonal = bool(m.get("tonal", True))
        music.append(Music(m["id"], audio, m.get("tempo"), m.get("key"), tonal, "loop" in m or not tonal))
    speech = [_build_speech(s) for s in truth["speech"]]
    scenes = [_build_scene(s, effects) for s in truth["scenes"]]
    return RealSet(eff, music, speech, scenes)


# ------------------------------------------------------------------ cache
def _cache_dir() -> Path:
    h = hashlib.sha256(TRUTH.read_bytes() + Path(__file__).read_bytes()).hexdigest()[:12]
    base = os.environ.get("EVENTCAP_REALSET_CACHE", str(Path.home() / ".cache" / "eventcap" / "realset"))
    return Path(base) / h


def load_realset() -> RealSet:
    """The set, from the cache when built before (same truth file and builder), else built and cached."""
    truth = yaml.safe_load(TRUTH.read_text())
    d = _cache_dir()
    meta = d / "meta.yaml"
    if meta.exists():
        return _read_cache(d, yaml.safe_load(meta.read_text()))
    rs = build_realset(truth)
    tmp = d.with_name(d.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    m: dict = {"effects": [], "music": [], "speech": [], "scenes": []}
    for kind in m:
        for item in getattr(rs, kind):
            sf.write(tmp / f"{kind}-{item.id}.wav", item.audio, SR, subtype="PCM_16")
            fields = {k: v for k, v in item.__dict__.items() if k != "audio"}
            if kind == "scenes":
                fields["events"] = [e.__dict__ for e in item.events]
            m[kind].append(fields)
    (tmp / "meta.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
    try:
        tmp.rename(d)
    except OSError:  # built concurrently by another process: keep theirs
        pass
    return _read_cache(d, m) if d.exists() else rs


def _read_cache(d: Path, m: dict) -> RealSet:
    def audio(kind: str, i: str) -> np.ndarray:
        return sf.read(str(d / f"{kind}-{i}.wav"), dtype="float32")[0]

    return RealSet(
        effects=[Effect(audio=audio("effects", e["id"]), **e) for e in m["effects"]],
        music=[Music(audio=audio("music", e["id"]), **e) for e in m["music"]],
        speech=[Speech(audio=audio("speech", e["id"]), **{**e, "turns": [tuple(t) for t in e["turns"]]})
                for e in m["speech"]],
        scenes=[Scene(e["id"], audio("scenes", e["id"]), [SceneEvent(**v) for v in e["events"]])
                for e in m["scenes"]],
    )


if __name__ == "__main__":
    rs = load_realset()
    for kind in ("effects", "music", "speech", "scenes"):
        items = getattr(rs, kind)
        print(f"{kind}: {len(items)}, {sum(i.audio.size for i in items) / SR:.0f} s")
        for i in items:
            print(f"  {i.id:18s} {i.audio.size / SR:6.2f} s  peak {20 * np.log10(np.abs(i.audio).max() + 1e-9):6.1f} dBFS")
    print("cache:", _cache_dir())
