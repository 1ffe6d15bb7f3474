"""Speaker turns for one segment. No Ray.

- `ResemblyzerDiarizer` (embedded default, offline): GE2E speaker embeddings (resemblyzer's shipped
  `pretrained.pt`) of overlapping windows inside the VAD's speech regions, spectral clustering of a pruned cosine
  affinity, the number of speakers found from how distinct the clusters stay (capped by `max_speakers`), tiny
  clusters folded into their nearest neighbour, then each speech frame takes the label of the window centred
  nearest to it. No overlap detection: one speaker per instant.
- `PyannoteDiarizer`: any pyannote.audio pipeline, loaded with `Pipeline.from_pretrained(path_or_name,
  token=...)`: a local directory with `config.yaml` (e.g. a copy of `pyannote/speaker-diarization-community-1`
  made on a machine with network), a path to that `config.yaml`, or a hub name when the cluster has network
  and a token in the environment variable named by `diarization.token_env`.

Both return `[(speaker, start_s, end_s)]` sorted by start, speakers named SPEAKER_00, SPEAKER_01, ... in
order of first appearance.
"""

from __future__ import annotations

import os

import numpy as np

from annotators.common import SAMPLE_RATE
from annotators.speech.asr import resolve_device
from annotators.speech.vadtools import regions
from schemas.speech_config import DiarizationConfig

Turn = tuple[str, float, float]


def _torch_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _rename(turns: list[tuple[object, float, float]]) -> list[Turn]:
    names: dict[object, str] = {}
    out = []
    for lab, s, e in sorted(turns, key=lambda t: (t[1], t[2])):
        if lab not in names:
            names[lab] = f"SPEAKER_{len(names):02d}"
        out.append((names[lab], round(float(s), 3), round(float(e), 3)))
    return out


def _pruned_affinity(emb: np.ndarray, keep: float) -> np.ndarray:
    """Cosine affinity keeping each row's top `keep` share (others x0.01), symmetrised (Wang et al. 2018)."""
    a = np.clip(emb @ emb.T, 0, None)
    n = a.shape[0]
    k = max(2, int(np.ceil(keep * n)))
    b = a.copy()
    for i in range(n):
        b[i, np.argsort(a[i])[:-k]] *= 0.01
    return np.maximum(b, b.T)


def _max_pair_similarity(emb: np.ndarray, lab: np.ndarray, centers: np.ndarray, window_s: float) -> float:
    """Largest mean cross-cluster similarity normalised by the clusters' own cohesion.

    Only pairs of windows overlapping by less than half count: overlapping windows share audio and would
    make any short stretch look like a tight cluster of its own (all pairs are used for a cluster too short
    to have such a pair).
    """
    s = emb @ emb.T
    far = np.abs(centers[:, None] - centers[None, :]) >= window_s / 2
    ks = np.unique(lab)
    m = {}
    for i in ks:
        for j in ks:
            if i <= j:
                sel = far[np.ix_(lab == i, lab == j)]
                blk = s[np.ix_(lab == i, lab == j)]
                m[i, j] = blk[sel].mean() if sel.any() else blk.mean()
    out = 0.0
    for i in ks:
        for j in ks:
            if i < j:
                v = m[i, j] / np.sqrt(m[i, i] * m[j, j])
                out = max(out, 1.0 if not np.isfinite(v) else float(v))
    return out


class ResemblyzerDiarizer:
    name = "resemblyzer-ge2e+spectral"

    def __init__(self, cfg: DiarizationConfig, threads: int = 1):
        """On CPU the encoder is its ONNX export (annotators/speech/onnx_models.py: no torch in the actor)."""
        from importlib.metadata import version

        self.cfg = cfg
        self.version = version("resemblyzer")
        self.onnx = None
        device = resolve_device(cfg.device)  # "auto": asked of CTranslate2, so that no torch is imported
        if device == "cpu":
            from annotators.speech.onnx_models import VoiceEncoderOnnx

            self.onnx = VoiceEncoderOnnx(threads)
        else:
            from resemblyzer import VoiceEncoder

            self.encoder = VoiceEncoder(device=device, verbose=False)

    def embed_windows(self, audio: np.ndarray, centers_s: np.ndarray) -> np.ndarray:
        """(n_windows, 256) L2-normalised embeddings of window_s windows centred at centers_s."""
        from annotators.speech.onnx_models import mel_frames, normalize_volume

        wav = normalize_volume(audio.astype(np.float32), -30)
        mel = mel_frames(wav)  # (T, 40), 10 ms hop
        w = int(round(self.cfg.window_s * 100))
        if mel.shape[0] < w:
            mel = np.pad(mel, ((0, w - mel.shape[0]), (0, 0)))
        starts = np.clip(np.round(centers_s * 100).astype(int) - w // 2, 0, mel.shape[0] - w)
        batch = np.stack([mel[s : s + w] for s in starts]).astype(np.float32)
        if self.onnx is not None:
            return np.concatenate([self.onnx(batch[b : b + 64]) for b in range(0, len(batch), 64)])
        import torch

        out = []
        with torch.inference_mode():
            for b in range(0, len(batch), 64):
                x = torch.from_numpy(batch[b : b + 64]).to(self.encoder.device)
                out.append(self.encoder(x).cpu().numpy())
        return np.concatenate(out)

    def diarize(self, audio: np.ndarray, vad_prob: np.ndarray, hop_s: float, threshold: float = 0.5) -> list[Turn]:
        cfg = self.cfg
        regs = regions(vad_prob, hop_s, threshold, min_gap_s=0.25, min_len_s=0.2)
        if not regs:
            return []
        dur = audio.shape[0] / SAMPLE_RATE
        centers, owner = [], []
        for r, (s, e) in enumerate(regs):
            if e - s <= cfg.window_s:
                cs = [0.5 * (s + e)]
            else:
                n = int(np.floor((e - s - cfg.window_s) / cfg.hop_s)) + 1
                cs = list(s + cfg.window_s / 2 + cfg.hop_s * np.arange(n))
                if e - cs[-1] - cfg.window_s / 2 > cfg.hop_s / 2:
                    cs.append(e - cfg.window_s / 2)
            centers += cs
            owner += [r] * len(cs)
        centers_a = np.clip(np.array(centers), 0, dur)
        owner_a = np.array(owner)
        if sum(e - s for s, e in regs) < cfg.min_multi_speaker_s:
            labels = np.zeros(len(centers_a), int)  # too little speech to tell voices apart reliably
        else:
            labels = self.cluster(self.embed_windows(audio, centers_a), centers_a)
        # Each speech frame (10 ms) takes the label of the nearest window centre of its region.
        step = 0.01
        turns: list[list] = []
        for r, (s, e) in enumerate(regs):
            idx = np.flatnonzero(owner_a == r)
            t = np.arange(s, e, step) + step / 2
            near = idx[np.argmin(np.abs(t[:, None] - centers_a[idx][None, :]), axis=1)]
            lab = labels[near]
            cut = np.flatnonzero(np.diff(lab)) + 1
            for a, b in zip(np.r_[0, cut], np.r_[cut, len(lab)], strict=False):
                turns.append([int(lab[a]), s + a * step, min(e, s + b * step)])
        return _rename([tuple(t) for t in self._smooth(turns)])

    def cluster(self, emb: np.ndarray, centers: np.ndarray) -> np.ndarray:
        """Window labels. Spectral clustering on a pruned cosine affinity; the speaker count is the largest k
        for which every partition up to k keeps all cluster pairs apart (normalised centroid similarity under
        `same_speaker_similarity`); one speaker when even two clusters are too alike."""
        from sklearn.cluster import KMeans

        cfg = self.cfg
        n = emb.shape[0]
        lo = cfg.min_speakers or 1
        if n < 4:
            return np.zeros(n, int)
        # Spectral embedding once (top eigenvectors of D^-1/2 A D^-1/2), then k-means for each k.
        aff = _pruned_affinity(emb, cfg.affinity_keep)
        dinv = 1.0 / np.sqrt(aff.sum(1))
        _, vec = np.linalg.eigh(aff * dinv[:, None] * dinv[None, :])
        vec = vec[:, ::-1]
        best = np.zeros(n, int)
        for k in range(2, min(cfg.max_speakers, n - 1) + 1):
            x = vec[:, :k] / np.linalg.norm(vec[:, :k], axis=1, keepdims=True)
            lab = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(x)
            if _max_pair_similarity(emb, lab, centers, cfg.window_s) >= cfg.same_speaker_similarity and k > lo:
                break
            best = lab
        # Fold clusters with too little speech into the nearest big one (by centroid cosine).
        min_windows = max(1, int(np.ceil(cfg.min_speaker_s / cfg.hop_s)))
        counts = np.bincount(best)
        big = [c for c in range(len(counts)) if counts[c] >= min_windows]
        if big and len(big) < len(counts) and len(big) >= lo:
            cent = np.stack([emb[best == c].mean(0) for c in big])
            cent /= np.linalg.norm(cent, axis=1, keepdims=True)
            for i in np.flatnonzero(~np.isin(best, big)):
                best[i] = big[int(np.argmax(cent @ emb[i]))]
        return best

    def _smooth(self, turns: list[list]) -> list[list]:
        """Join same-speaker turns across short gaps; give turns under min_turn_s to their longer neighbour."""
        cfg = self.cfg
        turns = sorted(turns, key=lambda t: t[1])
        while True:
            merged = [turns[0]]
            for t in turns[1:]:
                if t[0] == merged[-1][0] and t[1] - merged[-1][2] < cfg.merge_gap_s:
                    merged[-1][2] = max(merged[-1][2], t[2])
                else:
                    merged.append(t)
            turns = merged
            short = None
            for i in sorted(range(len(turns)), key=lambda j: turns[j][2] - turns[j][1]):
                if turns[i][2] - turns[i][1] >= cfg.min_turn_s:
                    break
                near = [turns[j] for j in (i - 1, i + 1) if 0 <= j < len(turns)
                        and turns[j][0] != turns[i][0]
                        and max(turns[j][1], turns[i][1]) - min(turns[j][2], turns[i][2]) < cfg.merge_gap_s]
                if near:
                    short = (i, max(near, key=lambda t: t[2] - t[1])[0])
                    break
            if short is None:
                return turns
            turns[short[0]][0] = short[1]


class PyannoteDiarizer:
    """A pyannote.audio pipeline by local path (or hub name + token). Telemetry is switched off."""

    def __init__(self, cfg: DiarizationConfig):
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
        from importlib.metadata import version

        import torch
        from pyannote.audio import Pipeline

        if not cfg.pipeline:
            raise ValueError("diarization.backend=pyannote needs diarization.pipeline (a local path or a hub name)")
        self.cfg = cfg
        local = os.path.exists(cfg.pipeline)
        token = os.environ.get(cfg.token_env) or None
        if not local and token is None:
            raise ValueError(
                f"diarization.pipeline={cfg.pipeline!r} is not a local path; a hub pipeline needs network and a "
                f"token in ${cfg.token_env}"
            )
        pipeline = Pipeline.from_pretrained(cfg.pipeline, token=token)
        if pipeline is None:
            raise RuntimeError(f"pyannote could not load the pipeline {cfg.pipeline!r}")
        pipeline.to(torch.device(_torch_device(cfg.device)))
        self.pipeline = pipeline
        self.name = f"pyannote {cfg.pipeline if not local else os.path.basename(os.path.normpath(cfg.pipeline))}"
        self.version = version("pyannote.audio")

    def diarize(self, audio: np.ndarray, vad_prob: np.ndarray | None = None, hop_s: float = 0.032,
                threshold: float = 0.5) -> list[Turn]:
        import torch

        kw = {"max_speakers": self.cfg.max_speakers}
        if self.cfg.min_speakers:
            kw["min_speakers"] = self.cfg.min_speakers
        out = self.pipeline({"waveform": torch.from_numpy(audio.astype(np.float32))[None], "sample_rate": SAMPLE_RATE},
                            **kw)
        # pyannote.audio 4 returns DiarizeOutput; prefer its overlap-free view (one speaker per instant).
        ann = getattr(out, "exclusive_speaker_diarization", None) or getattr(out, "speaker_diarization", out)
        dur = audio.shape[0] / SAMPLE_RATE  # pyannote's sliding windows can run past the end: clip to the segment
        return _rename([(lab, min(seg.start, dur), min(seg.end, dur)) for seg, _, lab in ann.itertracks(yield_label=True)
                        if seg.start < dur])


def build_diarizer(cfg: DiarizationConfig, threads: int = 1):
    if cfg.backend == "none":
        return None
    if cfg.backend == "pyannote":
        return PyannoteDiarizer(cfg)
    return ResemblyzerDiarizer(cfg, threads)
