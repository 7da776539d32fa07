"""Servers know their models by name: each model is registered once (`register(name, model)`), a request names it
(`stream(name, ...)`), and finding it costs a dictionary lookup and one pass over flat lists made at registration
(identity and value tests and tensor addresses, about 20 µs for the shipped baseline), never a fingerprint built
anew. The rules, the same for `StreamServer` and `ProcessServer` (so that the lab, or a test, uses either alike):

- Register a model before any thread streams it: `ProcessServer` moves its tensors to shared memory then, which is
  not safe while another thread reads them. A request for a name never registered (or unregistered) is a
  `NotRegistered` error naming the names there are.
- In-place updates of the weights need nothing (an optimizer step, `load_state_dict`, an edit under `no_grad`): the
  decoding process reads the same memory, shared, and a `StreamServer` the same tensors.
- Any other change is the owner's to register again: a replaced parameter, buffer or module, `param.data = ...`, a
  dtype or device, hooks, training mode, a block's switch, the config. Registering again serves the model as it is
  then to the next request; a request already running ends on what it started with.
- What a forgotten registration leaves is noticed and the request refused (`ChangedSinceRegistered`), never served
  stale: a parameter, buffer or module assigned anywhere in the model (named by its place), the training flag,
  forward hooks where it had none or none where it had some, any attribute the forward reads that `DecodeStep`
  watches too (generation/step.py's `looked_at`: a norm's eps, a block's switch, the config's fields, any module's
  training flag), and any tensor's memory, dtype or device (`.to()`, `.data = ...`). Not noticed: a class's methods
  patched (DecodeStep's `known` sees it when it looks).
- A name registered again with another model serves the new one to new requests. Two names for one model share one
  registration: registering the model again under either renews both. A server holds its models until they are
  unregistered.
"""

import threading

import torch
from torch.nn.modules import module as torch_module

from gpt2mini.generation.step import looked_at


class NotRegistered(LookupError):
    """A request named a model its server has not been given (`register`)."""


class ChangedSinceRegistered(RuntimeError):
    """A request named a model that changed, since it was registered, in a way its server may not see."""


def check_name(name) -> None:
    """A TypeError unless `name` can name a model: a non-empty string."""
    if not isinstance(name, str) or not name:
        got = repr(name) if isinstance(name, str) else f"a {type(name).__name__}"
        raise TypeError(f"a model is registered under a name (a non-empty string), got {got}")


class Registration:
    """A model as it was registered: what `change` compares it with at each request, and where its server keeps it
    (`key`: `ProcessServer`'s copy in its decoding process; None: served in this process)."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.key = model, None
        modules = dict(model.named_modules())
        # the hook dictionaries themselves, so that looking at them all is one any() (as DecodeStep does)
        self.hooks = [torch_module._global_forward_hooks, torch_module._global_forward_pre_hooks]
        self.hooks += [d for m in modules.values() for d in (m._forward_hooks, m._forward_pre_hooks)]
        self.hooked = any(self.hooks)
        self.held = looked_at(model)  # what DecodeStep compares at every step, here at every request
        # each module's dictionaries `held` looks into, by id: its place in the model ("transformer.h.0.mlp."), and
        # whether the dictionary holds its attributes (vars) or what is assigned to it (parameters, buffers, modules)
        self.places = {}
        for place, m in modules.items():
            prefix = f"{place}." if place else ""
            self.places |= {id(d): (prefix, d is vars(m)) for d in (vars(m), m._parameters, m._buffers, m._modules)}
        self.tensors = [*model.parameters(), *model.buffers()]
        self.addresses = [t.data_ptr() for t in self.tensors]
        self.kind = (self.tensors[0].dtype, self.tensors[0].device) if self.tensors else None

    def change(self) -> str | None:
        """What changed since the model was registered that its server may not see, in words; None if nothing that
        is noticed did (see the module docstring)."""
        if any(self.hooks) != self.hooked:
            return "its forward hooks " + ("were removed" if self.hooked else "were added")
        if (changed := self.held.changed()) is not None:
            return self._said(*changed)
        if [t.data_ptr() for t in self.tensors] != self.addresses:
            kind = (self.tensors[0].dtype, self.tensors[0].device)
            if kind != self.kind:
                return f"it is {kind[0]} on {kind[1]} now, not {self.kind[0]} on {self.kind[1]}"
            return "a tensor's memory was replaced (tensor.data = ...)"
        return None

    def _said(self, where: dict, key: str) -> str:
        """A change `held` found, in words: a module's own attribute, or a parameter, buffer or module assigned."""
        if where is vars(self.model) and key == "training":
            return f"it is in {'training' if self.model.training else 'eval'} mode now"
        place, attribute = self.places.get(id(where), ("", True))  # the config's own fields have no place
        if attribute and key != "forward":
            return f"its {key!r} changed" + (f" (in {place[:-1]})" if place else "")
        return f"{place}{key} was assigned"


class Registry:
    """A server's names for its models: `bind` gives a name a model's registration, `lookup` finds a request's, checked
    (`Registration.change`). Thread-safe."""

    def __init__(self):
        self.names: dict[str, Registration] = {}
        self.lock = threading.Lock()

    def bind(self, name: str, registration: Registration) -> list[Registration]:
        """`name`, and every other name of the same model, now refer to `registration`; returns the registrations no
        name refers to any more (their copies may go)."""
        check_name(name)
        with self.lock:
            before = set(self.names.values())
            for same in [name] + [n for n, r in self.names.items() if r.model is registration.model]:
                self.names[same] = registration
            return list(before - set(self.names.values()))

    def unbind(self, name: str) -> Registration | None:
        """Forget `name`; returns its registration if no other name refers to it, or a NotRegistered error."""
        with self.lock:
            if name not in self.names:
                raise self._not_registered(name)
            registration = self.names.pop(name)
            return None if registration in self.names.values() else registration

    def lookup(self, name: str) -> Registration:
        """The registration a request names, or a NotRegistered error, or a ChangedSinceRegistered error saying what
        changed."""
        registration = self.names.get(name) if isinstance(name, str) else None
        if registration is None:
            raise self._not_registered(name)
        change = registration.change()
        if change is not None:
            raise ChangedSinceRegistered(
                f"the model registered as {name!r} changed since it was registered ({change}): register it again "
                "(server.register(name, model)) to serve it as it is now"
            )
        return registration

    def _not_registered(self, name) -> NotRegistered:
        if not isinstance(name, str):
            what = type(name).__name__
            return NotRegistered(f"a request names its model by the name it was registered under, got a {what}")
        there = ", ".join(repr(n) for n in sorted(self.names)) or "none"
        return NotRegistered(f"no model is registered as {name!r} (registered: {there})")
