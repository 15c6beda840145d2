"""A CUDA stand-in for CPU-only machines: under ``fake_cuda()`` PyTorch behaves, for the code under test, as if
CUDA devices existed, while every kernel runs on the CPU (so results equal the CPU's bit for bit).

    with fake_cuda():                        # or the ``cuda_stand_in`` fixture
        x = torch.ones(3, device="cuda")     # x.device == cuda:0, x.is_cuda; the data is in host memory
        net = nn.Linear(3, 1).to("cuda")     # the same Parameter objects, now on the stand-in device
        net(torch.ones(3))                   # RuntimeError: Expected all tensors to be on the same device ...

How it works
- A stand-in tensor is an ordinary CPU tensor whose Python class is switched in place (``obj.__class__ = ...``)
  to a subclass of its own class: ``StandInCudaTensor`` for tensors, ``StandInCudaParameter`` for parameters,
  one class per device index. Switching the class in place keeps the object's identity, its autograd
  history, leaf-ness and ``.grad``, so an optimizer built before ``model.to("cuda")`` still holds the model's
  parameters, as with real CUDA.
- The subclass's ``__torch_function__`` (active in every thread) runs each op on a stand-in: it refuses a
  stand-in mixed with a CPU tensor that is not a 0-dim scalar, runs the CPU kernel and switches the class of
  the results. Inside a kernel call, stand-ins report the CPU, so torch's own Python code (custom autograd
  functions, ``torch.nn.functional``) builds its helper tensors on the CPU too.
- A ``TorchFunctionMode`` (the entering thread, and threads started while the stand-in is active) catches what
  turns plain tensors into stand-ins: factories with ``device="cuda"``, ``Tensor.to/cuda/type``, and the
  ``param.data = ...`` with which ``Module._apply`` moves parameters. It also lets factories allocate pinned
  host memory (``pin_memory=True``), which needs CUDA.
- ``torch.cuda`` (availability, devices, RNG, streams, events, memory), ``torch.accelerator``, ``torch.load``
  (``map_location``), ``torch.set_rng_state``, ``torch._C._nn._parse_to`` (``Module.to(tensor)``) and
  ``Tensor.record_stream`` are patched; everything patched, and the cuDNN flags, is restored when the context
  ends, also on error.
- Random ops aimed at device i draw from ``torch.cuda.default_generators[i]`` (a CPU generator presented as
  cuda:i), so the CPU stream and each device's stream are separate, as on real CUDA, and
  ``torch.manual_seed`` seeds them all.

Where it differs from real CUDA (documented limits, not bugs of the code under test)
- Everything is synchronous; streams and events only keep their bookkeeping (``Event.elapsed_time`` measures
  wall time between ``record`` calls). ``memory_allocated`` counts the bytes of the distinct storages of live
  stand-in tensors reachable from Python (no 512-byte rounding, no caching allocator).
- RNG states are the CPU generator's (5056 bytes), not Philox's 16; random draws on cuda:i equal the CPU's
  draws after the same seed, where a GPU would give other numbers.
- ``torch.save`` writes stand-ins as CPU tensors: a file written under the stand-in loads on the CPU unless
  ``map_location`` says cuda (a real GPU checkpoint would come back on the GPU). A file written on a real GPU
  (locations ``cuda:i``) loads onto stand-ins.
- Optimizers do not choose their foreach path by themselves (they check the exact tensor class), so they take
  the CPU's single-tensor path unless ``foreach=True`` is given.
- Not modelled: ``torch.Generator(device="cuda")``, ``torch.cuda.amp`` / ``torch.autocast("cuda")``,
  TorchScript (``torch.jit.load`` with a cuda ``map_location`` fails as on a machine without a GPU), NCCL,
  CUDA's refusal in forked DataLoader workers, numerical differences of GPU kernels (TF32, cuDNN algorithms),
  and threads that were already running when the stand-in started (they see stand-ins, but ``device="cuda"``
  factories there reach the real, absent, CUDA). Tensors that outlive the context stay stand-ins.
"""
from __future__ import annotations

import collections
import copy
import gc
import os
import re
import threading
import time
import types
import weakref
from contextlib import ExitStack, contextmanager
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

_ACTIVE: "_Devices | None" = None  # the devices of the running stand-in
_tls = threading.local()  # .real: depth of kernel calls on this thread; .device, .streams: current ones

_CPU, _OTHER = -1, -2  # targets besides a device index; _UNSET: no device asked for
_UNSET = None

_ORIG_PARSE_TO = torch._C._nn._parse_to
_ORIG_LOAD = torch.load
_ORIG_SET_RNG_STATE = torch.set_rng_state


# --------------------------------------------------------------------------------------------- the tensors
@contextmanager
def _real():
    """Inside a kernel call stand-ins are what they really are, CPU tensors."""
    _tls.real = getattr(_tls, "real", 0) + 1
    try:
        yield
    finally:
        _tls.real -= 1


def _in_real() -> bool:
    return getattr(_tls, "real", 0) > 0


@contextmanager
def _raw():
    """Plumbing of the stand-in itself: no dispatch at all, and the real devices."""
    with torch._C.DisableTorchFunction(), _real():
        yield


class StandInCudaTensor(torch.Tensor):
    """A CPU tensor that presents itself as living on ``cuda:<_index>``."""

    _index = 0
    _plain = torch.Tensor  # the class it had before it became a stand-in

    @property
    def device(self) -> torch.device:
        return torch.device("cpu") if _in_real() else torch.device("cuda", type(self)._index)

    @property
    def is_cuda(self) -> bool:
        return not _in_real()

    @property
    def is_cpu(self) -> bool:
        return _in_real()

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return _handle(func, args, kwargs or {})

    def __reduce_ex__(self, proto):
        """Pickled as the CPU tensor it is (torch.save of a CUDA tensor records cuda:i, and torch.load without
        map_location would bring it back there; see the module notes)."""
        with _raw():
            data = self.detach()
            requires_grad = self.requires_grad
            state = {k: v for k, v in self.__dict__.items() if k != "_is_param"}
            if isinstance(self, nn.Parameter):
                hooks = collections.OrderedDict()
                if state:
                    return torch._utils._rebuild_parameter_with_state, (data, requires_grad, hooks, state)
                return torch._utils._rebuild_parameter, (data, requires_grad, hooks)
            data.requires_grad_(requires_grad)
            func, args = data._reduce_ex_internal(proto)
        if state:
            return torch._tensor._rebuild_from_type_v2, (func, torch.Tensor, args, state)
        return func, args

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        with _raw():
            if not self.is_leaf:
                raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support the "
                                   "deepcopy protocol at the moment.")
            new = self.detach().clone()
            new.requires_grad_(self.requires_grad)
            grad = self.grad
        new.__class__ = type(self)
        memo[id(self)] = new
        if grad is not None:
            grad = copy.deepcopy(grad, memo)
            with _raw():
                new.grad = grad
            _to_standin(grad, type(self)._index)
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new


_CLASSES: dict[tuple[int, type], type] = {(0, torch.Tensor): StandInCudaTensor}


def _standin_class(index: int, plain: type) -> type:
    """The stand-in class of ``plain`` tensors on cuda:index (made once, then cached)."""
    cls = _CLASSES.get((index, plain))
    if cls is None:
        if plain is torch.Tensor:
            cls = type(f"StandInCudaTensor{index}", (StandInCudaTensor,), {"_index": index, "__module__": __name__})
        else:
            cls = type(f"StandInCuda{plain.__name__}", (_standin_class(index, torch.Tensor), plain),
                       {"_plain": plain, "__module__": __name__})
        _CLASSES[(index, plain)] = cls
    return cls


def _to_standin(t: torch.Tensor, index: int) -> torch.Tensor:
    cls = type(t)
    plain = cls._plain if issubclass(cls, StandInCudaTensor) else cls
    t.__class__ = _standin_class(index, plain)
    return t


def _to_plain(t: torch.Tensor) -> torch.Tensor:
    cls = type(t)
    if issubclass(cls, StandInCudaTensor):
        plain = cls._plain
        if plain is torch.Tensor and t.__dict__.pop("_is_param", False):
            plain = nn.Parameter  # made by nn.Parameter(stand_in): a Parameter again on the CPU
        t.__class__ = plain
    return t


def _index_of(t) -> int:
    """cuda index of a stand-in, _CPU for a CPU tensor, _OTHER for any other device (meta, ...)."""
    if isinstance(t, StandInCudaTensor):
        return type(t)._index
    return _CPU if t.device.type == "cpu" else _OTHER


def _name(index: int) -> str:
    return "cpu" if index == _CPU else f"cuda:{index}"


# --------------------------------------------------------------------------------------------- devices
def _current_device() -> int:
    return getattr(_tls, "device", 0)


def _check_ordinal(index: int) -> int:
    if _ACTIVE is not None and not 0 <= index < _ACTIVE.count:
        raise RuntimeError(f"CUDA error: invalid device ordinal (the CUDA stand-in has {_ACTIVE.count} "
                           f"device{'s' if _ACTIVE.count > 1 else ''}, cuda:{index} was asked for)")
    return index


def _target(device) -> int | None:
    """Where a ``device=`` argument sends a result: a cuda index, _CPU, _OTHER, or _UNSET (None)."""
    if device is None:
        return _UNSET
    if isinstance(device, int) and not isinstance(device, bool):
        return _check_ordinal(device)  # torch reads a bare int as an accelerator index
    device = torch.device(device)
    if device.type == "cpu":
        return _CPU
    if device.type != "cuda":
        return _OTHER
    return _check_ordinal(device.index if device.index is not None else _current_device())


def _cuda_index(device=None) -> int:
    """The index a torch.cuda function's ``device`` argument names (None, int, str or torch.device)."""
    if device is None:
        return _current_device()
    if isinstance(device, (str, torch.device)):
        device = torch.device(device)
        if device.type != "cuda":
            raise ValueError(f"Expected a cuda device, but got: {device}")
        return _check_ordinal(device.index if device.index is not None else _current_device())
    if isinstance(device, (StandInCudaGenerator, Stream)):
        return device.device.index
    return _check_ordinal(int(device))


# --------------------------------------------------------------------------------------------- dispatch
# ops whose operands may sit on different devices (as CUDA allows): copies, and those that only read shapes or
# types; a result is on the device of the first operand
_MIXING_OK = {"copy_", "set_", "expand_as", "view_as", "reshape_as", "is_same_size",
              "_has_compatible_shallow_copy_type"}
# ops that draw random numbers (by name; a false match only costs a swap of generator states)
_RANDOM = re.compile(r"rand|normal|uniform|bernoulli|multinomial|dropout|poisson|exponential|geometric|"
                     r"cauchy|rrelu|gumbel|orthogonal|sparse_|binomial|gamma|dirichlet")


def _tensors(obj, out: list) -> list:
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            _tensors(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            _tensors(x, out)
    return out


def _check_one_device(name: str, tensors: list) -> None:
    """Refuse what CUDA refuses: operands on two devices, CPU 0-dim scalars excepted."""
    seen: list[str] = []
    for t in tensors:
        if isinstance(t, StandInCudaTensor):
            where = f"cuda:{type(t)._index}"
        else:
            where = str(t.device)
            if where == "cpu" and t.dim() == 0:
                continue
        if where not in seen:
            seen.append(where)
    if len(seen) > 1:
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                           f"{seen[0]} and {seen[1]}! (in {name}, under the CUDA stand-in)")


def _handle(func, args, kwargs):
    special = _SPECIAL.get(func)
    if special is not None:
        return special(func, args, kwargs)
    target = _target(kwargs.get("device"))
    if kwargs.get("pin_memory"):  # a factory asking for pinned host memory (needs CUDA, so: here it exists)
        if target is not _UNSET and target >= 0:
            raise RuntimeError("Only dense CPU tensors can be pinned")
        with _raw():
            return _register_pinned(func(*args, **{**kwargs, "pin_memory": False}))
    tensors = _tensors((args, kwargs), [])
    found = [type(t)._index for t in tensors if isinstance(t, StandInCudaTensor)]
    if not found and (target is _UNSET or target < 0):
        return func(*args, **kwargs)  # plain tensors only: torch as usual
    name = getattr(func, "__name__", "")
    with torch._C.DisableTorchFunctionSubclass():
        if name in _MIXING_OK:
            dest = _index_of(args[0]) if args and isinstance(args[0], torch.Tensor) else found[0]
        else:
            if torch._C._current_graph_task_id() == -1:  # the autograd engine mixes plain grads in freely
                _check_one_device(name, tensors)
            dest = found[0] if target is _UNSET else target
        if target is not _UNSET and target >= 0:
            kwargs = {**kwargs, "device": "cpu"}
        out = _call(func, args, kwargs, dest if dest >= 0 and _RANDOM.search(name) else None)
        if dest >= 0:
            inplace = name.endswith("_") and not name.endswith("__")
            if not inplace and isinstance(out, torch.Tensor) and any(out is t for t in tensors) \
                    and not isinstance(out, StandInCudaTensor):
                with _real():
                    out = out.clone()  # e.g. torch.as_tensor(cpu_tensor, device="cuda"): a copy on the device
            _mark(out, dest, tensors)
    return out


def _call(func, args, kwargs, rng_index: int | None):
    """Run the CPU kernel (random ops with the device's generator)."""
    with _real():
        if rng_index is None:
            return func(*args, **kwargs)
        generator = kwargs.get("generator")
        if generator is not None:
            if not isinstance(generator, StandInCudaGenerator):
                raise RuntimeError(f"Expected a 'cuda' device type for generator but found "
                                   f"'{generator.device.type}'")
            return func(*args, **kwargs)
        with _device_rng(rng_index):
            return func(*args, **kwargs)


def _mark(out, index: int, inputs: list) -> None:
    """Results on cuda:index become stand-ins in place; plain inputs returned as they are (an in-place op on a
    CPU tensor, ``cpu.copy_(stand_in)``) stay on the CPU."""
    if isinstance(out, torch.Tensor):
        if type(out) in (torch.Tensor, nn.Parameter) and not any(out is t for t in inputs):
            _to_standin(out, index)
    elif isinstance(out, (list, tuple)):
        for x in out:
            _mark(x, index, inputs)
    elif isinstance(out, dict):
        for x in out.values():
            _mark(x, index, inputs)


# --------------------------------------------------------------------------------------------- special ops
def _move(self: torch.Tensor, target, dtype=None, non_blocking=False, copy_=False, fmt=None) -> torch.Tensor:
    """``self`` on ``target`` (a cuda index, _CPU, _OTHER or _UNSET = where it is). A change of device always
    copies; on the same device torch decides (no copy when nothing changes)."""
    source = _index_of(self)
    kw = {"dtype": dtype, "non_blocking": non_blocking, "memory_format": fmt}
    with _raw():
        if target is _UNSET or target == source:
            out = torch._C.TensorBase.to(self, copy=copy_, **kw)
            if out is not self and source >= 0:
                _to_standin(out, source)
            return out
        if target == _OTHER or source == _OTHER:
            raise NotImplementedError("the CUDA stand-in moves tensors between the CPU and cuda devices only")
        out = torch._C.TensorBase.to(self, device="cpu", copy=True, **kw)
    return _to_standin(out, target) if target >= 0 else out


def _parse_to(*args, **kwargs):
    """torch._C._nn._parse_to (used by Tensor.to and Module.to) that reads a stand-in's device."""
    device, dtype, non_blocking, fmt = _ORIG_PARSE_TO(*args, **kwargs)
    other = args[0] if args else kwargs.get("tensor")
    if isinstance(other, StandInCudaTensor):
        device = torch.device("cuda", type(other)._index)
    return device, dtype, non_blocking, fmt


def _to(func, args, kwargs):
    self, rest, kwargs = args[0], list(args[1:]), dict(kwargs)
    copy_ = kwargs.pop("copy", False)
    flags = [i for i, a in enumerate(rest) if isinstance(a, bool)]  # positional non_blocking, copy
    if len(flags) > 1:
        copy_ = rest.pop(flags[1])
    device, dtype, non_blocking, fmt = _parse_to(*rest, **kwargs)
    return _move(self, _target(device), dtype, non_blocking, copy_, fmt)


def _cuda(func, args, kwargs):
    self = args[0]
    device = args[1] if len(args) > 1 else kwargs.get("device")
    target = _target("cuda" if device is None else device)
    if target < 0:
        raise RuntimeError("Invalid device, must be cuda device")
    non_blocking = args[2] if len(args) > 2 else kwargs.get("non_blocking", False)
    return _move(self, target, None, non_blocking, False, kwargs.get("memory_format"))


def _cpu(func, args, kwargs):
    fmt = args[1] if len(args) > 1 else kwargs.get("memory_format")
    return _move(args[0], _CPU, fmt=fmt)


def _type(func, args, kwargs):
    self = args[0]
    dtype = args[1] if len(args) > 1 else kwargs.get("dtype")
    if not isinstance(self, StandInCudaTensor) and not (isinstance(dtype, str) and ".cuda." in dtype):
        with _raw():
            return func(*args, **kwargs)
    if dtype is None:
        with _raw():
            return func(self).replace("torch.", "torch.cuda.", 1)
    if isinstance(dtype, str):
        target = _current_device() if ".cuda." in dtype else _CPU
        return _move(self, target, getattr(torch, dtype.rsplit(".", 1)[-1]).dtype)
    return _move(self, _UNSET, dtype)


def _type_as(func, args, kwargs):
    self, other = args[0], args[1] if len(args) > 1 else kwargs["other"]
    return _move(self, _index_of(other), other.dtype)


def _to_numpy(func, args, kwargs):
    self = args[0]
    if isinstance(self, StandInCudaTensor) and not kwargs.get("force", args[1] if len(args) > 1 else False):
        raise TypeError(f"can't convert cuda:{type(self)._index} device type tensor to numpy. Use Tensor.cpu() "
                        "to copy the tensor to host memory first.")
    if isinstance(self, StandInCudaTensor):
        return _move(self, _CPU).numpy(force=True)
    with _raw():
        return func(*args, **kwargs)


def _array(func, args, kwargs):
    if isinstance(args[0], StandInCudaTensor):
        _to_numpy(func, args[:1], {})
    with _raw():
        return func(*args, **kwargs)


_PINNED: dict[int, object] = {}  # id -> weakref of CPU tensors pinned under the stand-in


def _pin_memory(func, args, kwargs):
    self = args[0]
    if isinstance(self, StandInCudaTensor):
        with _raw():
            kind = self.type()
        raise RuntimeError(f"cannot pin '{kind.replace('torch.', 'torch.cuda.', 1)}' only dense CPU tensors "
                           "can be pinned")
    if _is_pinned(func, (self,), {}):
        return self
    with _raw():
        out = self.clone()
    return _register_pinned(out)


def _register_pinned(out: torch.Tensor) -> torch.Tensor:
    key = id(out)
    _PINNED[key] = weakref.ref(out, lambda _: _PINNED.pop(key, None))
    return out


def _is_pinned(func, args, kwargs):
    self = args[0]
    if isinstance(self, StandInCudaTensor):
        return False
    ref = _PINNED.get(id(self))
    return ref is not None and ref() is self


def _get_device(func, args, kwargs):
    if isinstance(args[0], StandInCudaTensor):
        return type(args[0])._index
    with _raw():
        return func(*args, **kwargs)


def _set_data(func, args, kwargs):
    """``t.data = other`` (how Module._apply moves parameters): ``t`` goes where ``other`` is."""
    self, value = args
    with _raw():
        func(self, value)
    if isinstance(value, StandInCudaTensor):
        _to_standin(self, type(value)._index)
    else:
        _to_plain(self)


def _set_grad(func, args, kwargs):
    """``t.grad = g`` with ``g`` on another device is refused, with torch's messages."""
    self, grad = args
    if grad is not None and _index_of(grad) != _index_of(self):
        mine, theirs = _index_of(self), _index_of(grad)
        if mine >= 0 and theirs >= 0:
            raise RuntimeError(f"attempting to assign a gradient located on device with index '{theirs}' to a tensor "
                               f"located on device with index '{mine}'. Please ensure that the gradient and the "
                               "tensor are on the same device")
        kind = {True: "cuda", False: "cpu"}
        raise RuntimeError(f"attempting to assign a gradient with device type '{kind[theirs >= 0]}' to a tensor with "
                           f"device type '{kind[mine >= 0]}'. Please ensure that the gradient and the tensor are on "
                           "the same device")
    with _raw():
        func(self, grad)


def _repr(func, args, kwargs):
    if not isinstance(args[0], StandInCudaTensor):
        with _raw():
            return func(*args, **kwargs)
    self = args[0]
    with torch._C.DisableTorchFunction():  # not _real(): the printout names the device
        text = torch._tensor_str._str(self, **kwargs)
    # torch prints a subclass as ``Name(...)`` (``Parameter(Name(...))``): print it as the tensor it stands for
    if isinstance(self, nn.Parameter) and text.startswith("Parameter("):
        text = text[len("Parameter("):-1]
    prefix = f"{type(self).__name__}("
    extra = len(prefix) - len("tensor(")
    first, *rest = text[len(prefix):].split("\n")
    return "\n".join(["tensor(" + first] + [line[extra:] if line.startswith(" " * extra) else line for line in rest])


def _index(func, args, kwargs):
    """t[i], t[i] = v: CUDA takes CPU indices for a CUDA tensor, not CUDA indices for a CPU tensor."""
    self = args[0]
    if not isinstance(self, StandInCudaTensor):
        if any(isinstance(t, StandInCudaTensor) for t in _tensors(args[1], [])):
            raise RuntimeError("indices should be either on cpu or on the same device as the indexed tensor (cpu)")
        with _raw():
            return func(*args, **kwargs)
    with torch._C.DisableTorchFunctionSubclass():
        out = _call(func, args, kwargs, None)
        _mark(out, type(self)._index, [])
    return out


def _no_op_on_device(func, args, kwargs):
    """share_memory_ / is_shared: nothing to do for device memory."""
    self = args[0]
    if not isinstance(self, StandInCudaTensor):
        with _raw():
            return func(*args, **kwargs)
    return True if func is torch.Tensor.is_shared else self


_ORIG_RECORD_STREAM = torch.Tensor.record_stream


def _record_stream(self, stream) -> None:
    """Tensor.record_stream (patched on the class: torch's argument parser refuses a stand-in Stream before any
    dispatch). Work is synchronous, so there is nothing to record."""
    if not isinstance(self, StandInCudaTensor) or not isinstance(stream, Stream):
        _ORIG_RECORD_STREAM(self, stream)


_SPECIAL = {
    torch.Tensor.to: _to, torch.Tensor.cuda: _cuda, torch.Tensor.cpu: _cpu, torch.Tensor.type: _type,
    torch.Tensor.type_as: _type_as, torch.Tensor.numpy: _to_numpy, torch.Tensor.__array__: _array,
    torch.Tensor.pin_memory: _pin_memory, torch.Tensor.is_pinned: _is_pinned,
    torch.Tensor.get_device: _get_device, torch.Tensor.data.__set__: _set_data,
    torch.Tensor.grad.__set__: _set_grad, torch.Tensor.__repr__: _repr, torch.Tensor.__getitem__: _index,
    torch.Tensor.__setitem__: _index, torch.Tensor.share_memory_: _no_op_on_device,
    torch.Tensor.is_shared: _no_op_on_device,
}


class _StandInMode(TorchFunctionMode):
    """Turns plain tensors into stand-ins where CUDA is asked for (factories, .to, .cuda, Module._apply)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if _ACTIVE is None:  # the stand-in ended while this thread ran
            return func(*args, **(kwargs or {}))
        return _handle(func, args, kwargs or {})


# --------------------------------------------------------------------------------------------- torch.cuda
class StandInCudaGenerator(torch.Generator):
    """``torch.cuda.default_generators[i]``: a CPU generator presented as cuda:i."""

    def __new__(cls, index: int):
        gen = super().__new__(cls)
        gen._index = index
        return gen

    def __init__(self, index: int):
        super().__init__()

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self._index)

    def set_state(self, new_state):
        _check_rng_state(new_state)
        return super().set_state(new_state)


def _check_rng_state(state) -> None:
    """torch's check of a generator state (CUDA's set_state says the same of a state that is on the GPU)."""
    if not isinstance(state, torch.Tensor):
        raise TypeError(f"expected a torch.ByteTensor, but got {type(state).__name__}")
    if isinstance(state, StandInCudaTensor) or state.dtype != torch.uint8:
        raise TypeError("RNG state must be a torch.ByteTensor")


@contextmanager
def _device_rng(index: int):
    """Let the CPU kernel of a random op draw from cuda:index's generator."""
    cpu, dev = torch.default_generator, _ACTIVE.generators[index] if _ACTIVE else None
    if dev is None:
        yield
        return
    saved = cpu.get_state()
    cpu.set_state(dev.get_state())
    try:
        yield
    finally:
        torch.Generator.set_state(dev, cpu.get_state())
        cpu.set_state(saved)


class Event:
    """torch.cuda.Event. Work is synchronous, so an event is complete as soon as it is recorded."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False):
        self.enable_timing, self.blocking, self.interprocess = enable_timing, blocking, interprocess
        self._recorded_at: float | None = None

    def record(self, stream=None) -> None:
        self._recorded_at = time.perf_counter()

    def wait(self, stream=None) -> None:
        pass

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end_event: "Event") -> float:
        """Milliseconds of wall time between the two ``record`` calls."""
        if not (self.enable_timing and end_event.enable_timing):
            raise RuntimeError("Both events must be created with argument 'enable_timing=True'.")
        if self._recorded_at is None or end_event._recorded_at is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time.")
        return (end_event._recorded_at - self._recorded_at) * 1000.0

    def __repr__(self) -> str:
        return f"<torch.cuda.Event (stand-in) recorded={self._recorded_at is not None}>"


class Stream:
    """torch.cuda.Stream: work is synchronous, so a stream is always idle."""

    def __init__(self, device=None, priority: int = 0, **kwargs):
        self.device = torch.device("cuda", _cuda_index(device))
        self.priority = priority

    @property
    def cuda_stream(self) -> int:
        return id(self)

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        pass

    def is_capturing(self) -> bool:
        return False  # no CUDA graphs

    def wait_event(self, event: Event) -> None:
        event.wait(self)

    def wait_stream(self, stream: "Stream") -> None:
        pass

    def record_event(self, event: Event | None = None) -> Event:
        event = event or Event()
        event.record(self)
        return event

    def __repr__(self) -> str:
        return f"<torch.cuda.Stream (stand-in) device={self.device} priority={self.priority}>"


class _Devices:
    """The state of one stand-in run: devices, their generators and default streams."""

    def __init__(self, count: int):
        if count < 1:
            raise ValueError(f"device_count must be at least 1, got {count}")
        self.count = count
        self.generators = tuple(StandInCudaGenerator(i) for i in range(count))
        self.default_streams = tuple(Stream(i) for i in range(count))

    # ---------------------------------------------------------------- devices
    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return self.count

    def current_device(self) -> int:
        return _current_device()

    def set_device(self, device) -> None:
        if device is None or (isinstance(device, int) and device < 0):
            return  # torch ignores a negative index
        _tls.device = _cuda_index(device)

    def get_device_name(self, device=None) -> str:
        return f"CUDA stand-in {_cuda_index(device)} (CPU)"

    def get_device_capability(self, device=None) -> tuple[int, int]:
        _cuda_index(device)
        return 8, 0

    def get_device_properties(self, device=None):
        index = _cuda_index(device)
        return SimpleNamespace(name=self.get_device_name(index), major=8, minor=0,
                               total_memory=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
                               multi_processor_count=os.cpu_count(), is_integrated=False)

    def synchronize(self, device=None) -> None:
        _cuda_index(device)

    def is_initialized(self) -> bool:
        return True

    def init(self) -> None:
        pass

    # ---------------------------------------------------------------- RNG (mirrors torch/cuda/random.py)
    def get_rng_state(self, device="cuda") -> torch.Tensor:
        return self.generators[self._rng_index(device)].get_state()

    def get_rng_state_all(self) -> list[torch.Tensor]:
        return [self.get_rng_state(i) for i in range(self.count)]

    def set_rng_state(self, new_state, device="cuda") -> None:
        # as torch: the index is not checked against the device count, so an index past the last device is an
        # IndexError from the generator tuple
        self.generators[self._rng_index(device, check=False)].set_state(new_state)

    def set_rng_state_all(self, new_states) -> None:
        for i, state in enumerate(new_states):  # as torch: states past the last device fail after the others
            self.set_rng_state(state, i)

    def manual_seed(self, seed) -> None:
        self.generators[_current_device()].manual_seed(int(seed))

    def manual_seed_all(self, seed) -> None:
        for gen in self.generators:
            gen.manual_seed(int(seed))

    def seed(self) -> None:
        self.generators[_current_device()].seed()

    def seed_all(self) -> None:
        seed = self.generators[0].seed()
        for gen in self.generators[1:]:
            gen.manual_seed(seed)

    def initial_seed(self) -> int:
        return self.generators[_current_device()].initial_seed()

    @staticmethod
    def _rng_index(device, check: bool = True) -> int:
        if isinstance(device, int):
            return _check_ordinal(device) if check else device
        device = torch.device(device)
        index = device.index if device.index is not None else _current_device()
        return _check_ordinal(index) if check else index

    # ---------------------------------------------------------------- streams
    def _streams(self) -> dict:
        if not hasattr(_tls, "streams"):
            _tls.streams = {}
        return _tls.streams

    def default_stream(self, device=None) -> Stream:
        return self.default_streams[_cuda_index(device)]

    def current_stream(self, device=None) -> Stream:
        index = _cuda_index(device)
        return self._streams().get(index) or self.default_stream(index)

    def set_stream(self, stream: Stream) -> None:
        if stream is not None:
            self._streams()[stream.device.index] = stream

    @contextmanager
    def stream(self, stream: Stream | None):
        """torch.cuda.stream(s): s is the current stream of its device (and its device the current one)."""
        if stream is None:
            yield
            return
        index = stream.device.index
        before_stream, before_device = self._streams().get(index), _current_device()
        self._streams()[index] = stream
        _tls.device = index
        try:
            yield
        finally:
            self._streams()[index] = before_stream
            _tls.device = before_device

    def is_current_stream_capturing(self) -> bool:
        return False

    # ---------------------------------------------------------------- memory
    def empty_cache(self) -> None:
        pass  # nothing is cached: freed stand-ins go back to the host allocator at once

    def memory_allocated(self, device=None) -> int:
        """Bytes of the distinct storages of live stand-in tensors on the device (found through the garbage
        collector's list of objects: slow, a tool for tests)."""
        index = _cuda_index(device)
        storages = {}
        with _raw():
            for obj in gc.get_objects():
                if issubclass(type(obj), StandInCudaTensor) and type(obj)._index == index:
                    try:
                        storage = obj.untyped_storage()
                    except (RuntimeError, NotImplementedError):  # no storage (sparse, ...)
                        continue
                    storages[storage.data_ptr()] = storage.nbytes()
        return sum(storages.values())


class _CudaDevice:
    """torch.cuda.device(i) (a class in torch too: torch checks ``isinstance(d, torch.cuda.device)``): i is the
    current device inside the block."""

    def __init__(self, device):
        self.idx = -1 if device is None or (isinstance(device, int) and device < 0) else _cuda_index(device)

    def __enter__(self):
        self.prev_idx = _current_device()
        if self.idx >= 0:
            _tls.device = self.idx
        return self

    def __exit__(self, *exc):
        _tls.device = self.prev_idx
        return False


class _CudaDeviceOf(_CudaDevice):
    """torch.cuda.device_of(t): the device of ``t`` is the current one inside the block (none for a CPU t)."""

    def __init__(self, obj):
        super().__init__(type(obj)._index if isinstance(obj, StandInCudaTensor) else -1)


# --------------------------------------------------------------------------------------------- torch.load
def _load(f, map_location=None, *args, **kwargs):
    """torch.load that places on stand-ins what ``map_location`` (or, without one, the file) puts on CUDA."""
    if callable(map_location):
        return _ORIG_LOAD(f, map_location, *args, **kwargs)
    placed: dict[int, int] = {}

    def restore(storage, location):
        if map_location is None:
            where = location
        elif isinstance(map_location, dict):
            where = map_location.get(location, location)
        else:
            where = map_location
        device = torch.device(where)
        if device.type != "cuda":
            return torch.serialization.default_restore_location(storage, str(device))
        index = device.index if device.index is not None else _current_device()
        if index >= _ACTIVE.count:
            raise RuntimeError(f"Attempting to deserialize object on CUDA device {index} but "
                               f"torch.cuda.device_count() is {_ACTIVE.count}. Please use torch.load with "
                               "map_location to map your storages to an existing device.")
        placed[storage._cdata] = index
        return storage

    obj = _ORIG_LOAD(f, restore, *args, **kwargs)
    if placed:
        _place_loaded(obj, placed)
    return obj


def _place_loaded(obj, placed: dict[int, int]) -> None:
    """Make every loaded tensor whose storage went to cuda:i a stand-in, wherever it sits in the object."""
    stack, seen = [obj], set()
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, str, bytes)
    while stack:
        x = stack.pop()
        if id(x) in seen or isinstance(x, skip):
            continue
        seen.add(id(x))
        if isinstance(x, torch.Tensor):
            with _raw():
                key = x.untyped_storage()._cdata
            if key in placed and not isinstance(x, StandInCudaTensor):
                _to_standin(x, placed[key])
        elif isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, (list, tuple, set, frozenset)):
            stack.extend(x)
        elif hasattr(x, "__dict__"):
            stack.extend(vars(x).values())


def _set_rng_state(new_state) -> None:
    """torch.set_rng_state: the CPU generator refuses a state that is on the GPU, as with real CUDA."""
    _check_rng_state(new_state)
    _ORIG_SET_RNG_STATE(new_state)


# --------------------------------------------------------------------------------------------- the context
_CUDA_NAMES = ("is_available", "device_count", "current_device", "set_device", "get_device_name",
               "get_device_capability", "get_device_properties", "synchronize", "is_initialized", "init",
               "get_rng_state", "get_rng_state_all", "set_rng_state", "set_rng_state_all", "manual_seed",
               "manual_seed_all", "seed", "seed_all", "initial_seed", "default_stream", "current_stream",
               "set_stream", "stream", "is_current_stream_capturing", "empty_cache",
               "memory_allocated")


def _patches(devices: _Devices) -> list[tuple[object, str, object]]:
    cuda = [(torch.cuda, name, getattr(devices, name)) for name in _CUDA_NAMES]
    cuda += [(torch.cuda, "Event", Event), (torch.cuda, "Stream", Stream), (torch.cuda, "device", _CudaDevice),
             (torch.cuda, "device_of", _CudaDeviceOf),
             (torch.cuda, "default_generators", devices.generators)]
    accelerator = [
        (torch.accelerator, "is_available", lambda: True),
        (torch.accelerator, "current_accelerator", lambda check_available=False: torch.device("cuda")),
        (torch.accelerator, "device_count", devices.device_count),
        (torch.accelerator, "current_device_index", devices.current_device),
        (torch.accelerator, "set_device_index", devices.set_device),
        (torch.accelerator, "synchronize", devices.synchronize),
        (torch.accelerator, "current_stream", devices.current_stream),
        (torch.accelerator, "set_stream", devices.set_stream),
    ]
    torch_level = [(torch, "load", _load), (torch.serialization, "load", _load),
                   (torch, "set_rng_state", _set_rng_state), (torch.random, "set_rng_state", _set_rng_state),
                   (torch._C._nn, "_parse_to", _parse_to), (torch.Tensor, "record_stream", _record_stream),
                   (threading.Thread, "_bootstrap_inner", _bootstrap_with_mode(threading.Thread._bootstrap_inner))]
    return cuda + accelerator + torch_level


def _bootstrap_with_mode(original):
    """Threads started while the stand-in is active run with its mode (torch function modes are per thread)."""
    def _bootstrap_inner(self):
        if _ACTIVE is None:
            return original(self)
        with _StandInMode():
            return original(self)
    return _bootstrap_inner


_FLAGS = ((torch.backends.cudnn, "enabled"), (torch.backends.cudnn, "benchmark"),
          (torch.backends.cudnn, "deterministic"), (torch.backends.cudnn, "allow_tf32"),
          (torch.backends.cuda.matmul, "allow_tf32"))


@contextmanager
def fake_cuda(device_count: int = 1):
    """PyTorch as if ``device_count`` CUDA devices existed, computing on the CPU; restored on exit."""
    global _ACTIVE
    if _ACTIVE is not None:
        raise RuntimeError("the CUDA stand-in is already active")
    devices = _Devices(device_count)
    flags = [(owner, name, getattr(owner, name)) for owner, name in _FLAGS]
    with ExitStack() as stack:
        for owner, name, value in flags:  # code under test may set them; they come back as they were
            stack.callback(setattr, owner, name, value)
        for owner, name, value in _patches(devices):
            stack.enter_context(mock.patch.object(owner, name, value, create=True))
        stack.callback(_deactivate, getattr(_tls, "device", None))
        _ACTIVE = devices
        _tls.device = 0
        stack.enter_context(_StandInMode())
        yield devices


def _deactivate(device) -> None:
    global _ACTIVE
    _ACTIVE = None
    _PINNED.clear()
    if device is None:
        _tls.__dict__.pop("device", None)
    else:
        _tls.device = device
    _tls.__dict__.pop("streams", None)


@pytest.fixture
def cuda_stand_in():
    """One stand-in CUDA device for the test (see ``fake_cuda``)."""
    with fake_cuda() as devices:
        yield devices
