"""Test-only fault injection, loaded by every Python process of a job whose PYTHONPATH starts with this folder
(the driver and its Ray workers, which inherit the environment). No production code knows about it.

    EVENTCAP_FAULT_RAISE_KEY=<key>    the general branch's annotator raises InjectedFault on that segment
    EVENTCAP_FAULT_PERTURB=<seed>     the segmenter's evidence is perturbed (scores as on another machine)
    EVENTCAP_FAULT_SLOW_S=<seconds>   each segmenter evidence window takes that much longer (a job slow enough
                                      to be hit mid-flight)
    EVENTCAP_FAULT_HOLD_GENERAL=<path>  the general branch's annotator touches <path>, then takes 3 s longer on
                                      each call: a test can see it is mid-call and kill it there

Modules are patched right after they are imported (an import hook), so processes that never import them
(Ray's own daemons) stay as they are.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import time


class InjectedFault(RuntimeError):
    """Raised by the wrapped annotator: the class name a quarantine row must carry."""


def _wrap_annotate(mod, before) -> None:
    """Every annotator class of `mod` calls `before(items)` at the start of each `annotate` call."""
    for cls in [v for v in vars(mod).values() if isinstance(v, type) and v.__module__ == mod.__name__]:
        if callable(getattr(cls, "annotate", None)):
            original = cls.annotate

            def annotate(self, items, _original=original):
                before(items)
                return _original(self, items)

            cls.annotate = annotate


def _patch_annotator(mod) -> None:
    key = os.environ["EVENTCAP_FAULT_RAISE_KEY"]

    def raise_on_key(items):
        if any(getattr(it.segment, "key", None) == key for it in items):
            raise InjectedFault(f"injected fault on segment {key}")

    _wrap_annotate(mod, raise_on_key)


def _patch_general_hold(mod) -> None:
    mark = os.environ["EVENTCAP_FAULT_HOLD_GENERAL"]

    def hold(items):
        with open(mark, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(3.0)

    _wrap_annotate(mod, hold)


def _patch_segmenter(mod) -> None:
    original = mod.compute_evidence
    slow = float(os.environ.get("EVENTCAP_FAULT_SLOW_S", "0") or 0)
    perturb_seed = os.environ.get("EVENTCAP_FAULT_PERTURB")
    rng = None
    if perturb_seed:
        import numpy as np

        from tests.reliability.perturb import perturb

        rng = np.random.default_rng(int(perturb_seed))

    def compute_evidence(*a, **k):
        if slow:
            time.sleep(slow)
        ev = original(*a, **k)
        return perturb(ev, rng) if rng is not None else ev

    mod.compute_evidence = compute_evidence


PATCHES = {}
if os.environ.get("EVENTCAP_FAULT_RAISE_KEY"):
    PATCHES["annotators.general.annotator"] = _patch_annotator
if os.environ.get("EVENTCAP_FAULT_HOLD_GENERAL"):
    PATCHES["annotators.general.annotator"] = _patch_general_hold
if os.environ.get("EVENTCAP_FAULT_PERTURB") or os.environ.get("EVENTCAP_FAULT_SLOW_S"):
    PATCHES["annotators.segmentation.segmenter"] = _patch_segmenter


class _PatchAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    _loaders: dict = {}

    def find_spec(self, name, path=None, target=None):
        if name not in PATCHES:
            return None
        sys.meta_path.remove(self)  # find the real module with the other finders
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None:
            return None
        self._loaders[name] = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loaders[spec.name].create_module(spec)

    def exec_module(self, module):
        self._loaders[module.__name__].exec_module(module)
        PATCHES[module.__name__](module)


if PATCHES:
    sys.meta_path.insert(0, _PatchAfterImport())
