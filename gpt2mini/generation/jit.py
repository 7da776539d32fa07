"""TorchScript, once per process: `compiled(fn)` is `fn` scripted, or `fn` itself where this torch cannot script it."""

import threading

import torch

_COMPILED: dict = {}


_COMPILE_LOCK = threading.Lock()  # the app's worker threads may ask at once; catch_warnings is not thread-safe


def compiled(fn):
    """`fn` compiled with TorchScript once per process, or `fn` itself where that fails (no TorchScript in this
    torch, or no source): the same function, run as Python."""
    if fn not in _COMPILED:
        with _COMPILE_LOCK:
            if fn not in _COMPILED:
                import warnings

                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # torch.jit is deprecated for torch.compile; see DecodeStep
                        _COMPILED[fn] = torch.jit.script(fn)
                except Exception:
                    _COMPILED[fn] = fn
    return _COMPILED[fn]
