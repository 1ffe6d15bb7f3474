"""Shared fixtures: offline models loaded once, a local Ray instance bound to 127.0.0.1."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def evidence_models():
    from annotators.common.vad import SileroVad
    from annotators.common.yamnet import YamNet
    from annotators.segmentation import EvidenceModels

    return EvidenceModels(SileroVad(), YamNet())


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """One in-process Ray instance for the session (2 CPUs, loopback only, no dashboard)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
                 _temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield ray
    ray.shutdown()


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine, OpenMP threads that spin-wait cost 5-10x."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
