"""The CUDA stand-in (tests/fake_cuda.py): CUDA's behaviour where the code under test can see it, CPU results."""
import copy
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from torch import nn

from art2real.nn.networks import NLayerDiscriminator, ResnetGenerator, init_weights

from .fake_cuda import StandInCudaTensor, fake_cuda

CUDA0 = torch.device("cuda", 0)


def on_cuda(t, index=0) -> bool:
    return isinstance(t, StandInCudaTensor) and t.device == torch.device("cuda", index) and t.is_cuda


def plain(t) -> bool:
    return type(t) in (torch.Tensor, nn.Parameter) and t.device.type == "cpu" and not t.is_cuda


# ------------------------------------------------------------------------------------------ torch.cuda
def test_cuda_api_answers_like_one_device(cuda_stand_in):
    assert torch.cuda.is_available() and torch.cuda.device_count() == 1 and torch.cuda.is_initialized()
    assert torch.cuda.current_device() == 0 and "stand-in" in torch.cuda.get_device_name(0)
    assert torch.cuda.get_device_properties(0).total_memory > 0
    assert torch.accelerator.is_available() and torch.accelerator.current_accelerator().type == "cuda"
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    with pytest.raises(RuntimeError, match="invalid device ordinal"):
        torch.cuda.set_device(1)
    with pytest.raises(RuntimeError, match="invalid device ordinal"):
        torch.zeros(1, device="cuda:1")


def test_everything_patched_is_restored_even_on_error():
    saved = {name: getattr(torch.cuda, name) for name in ("is_available", "device_count", "get_rng_state",
                                                          "Event", "Stream", "default_generators")}
    load, set_rng, parse_to = torch.load, torch.set_rng_state, torch._C._nn._parse_to
    bootstrap = threading.Thread._bootstrap_inner
    flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    with pytest.raises(ZeroDivisionError):
        with fake_cuda():
            torch.backends.cudnn.benchmark = not flags[0]  # settable inside
            torch.backends.cudnn.deterministic = not flags[1]
            assert torch.backends.cudnn.benchmark == (not flags[0])
            1 / 0
    assert {name: getattr(torch.cuda, name) for name in saved} == saved
    assert (torch.load, torch.set_rng_state, torch._C._nn._parse_to) == (load, set_rng, parse_to)
    assert threading.Thread._bootstrap_inner is bootstrap
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == flags
    assert torch._C._len_torch_function_stack() == 0
    assert plain(torch.zeros(2))
    with fake_cuda():  # and it can start again
        assert on_cuda(torch.zeros(2, device="cuda"))


def test_nested_stand_in_is_refused(cuda_stand_in):
    with pytest.raises(RuntimeError, match="already active"):
        with fake_cuda():
            pass


# ------------------------------------------------------------------------------------------ RNG
def test_rng_states_are_cpu_byte_tensors_and_round_trip(cuda_stand_in):
    torch.cuda.manual_seed_all(3)
    state = torch.cuda.get_rng_state()
    assert plain(state) and state.dtype == torch.uint8
    a = torch.randn(5, device="cuda")
    torch.cuda.set_rng_state(state)
    b = torch.randn(5, device="cuda")
    assert on_cuda(a) and torch.equal(a.cpu(), b.cpu())
    assert [s.dtype for s in torch.cuda.get_rng_state_all()] == [torch.uint8]


def test_device_stream_is_separate_from_the_cpu_stream(cuda_stand_in):
    torch.manual_seed(0)  # seeds the CPU and every device, as torch does
    cpu_state = torch.get_rng_state()
    on_device = torch.randn(4, device="cuda")
    dropped = nn.functional.dropout(torch.ones(100, device="cuda"), 0.5)
    assert torch.equal(torch.get_rng_state(), cpu_state), "a draw on the device moved the CPU generator"
    torch.manual_seed(0)
    assert torch.equal(on_device.cpu(), torch.randn(4))  # same seed, same algorithm (a GPU would differ)
    assert on_cuda(dropped) and 0 < int((dropped == 0).sum()) < 100
    assert torch.cuda.initial_seed() == 0


def test_multi_device_rng_states_and_set_rng_state_all_like_torch():
    with fake_cuda(device_count=2):
        assert torch.cuda.device_count() == 2
        torch.cuda.manual_seed_all(1)
        first, second = torch.cuda.get_rng_state_all()
        assert torch.equal(first, second)
        torch.randn(3, device="cuda:1")  # only device 1 advances
        after = torch.cuda.get_rng_state_all()
        assert torch.equal(after[0], first) and not torch.equal(after[1], second)
        torch.cuda.set_rng_state_all([first, second])
        assert all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), [first, second]))
        # torch sets state i on device i and indexes its generator tuple past the end: the states for the
        # existing devices are set, then IndexError
        torch.randn(3, device="cuda:0")
        torch.randn(3, device="cuda:1")
        with pytest.raises(IndexError):
            torch.cuda.set_rng_state_all([first, second, first])
        assert all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), [first, second]))
        x, y = torch.ones(2, device="cuda:0"), torch.ones(2, device="cuda:1")
        assert on_cuda(y, 1) and y.get_device() == 1
        with pytest.raises(RuntimeError, match="cuda:0 and cuda:1"):
            x + y
        assert on_cuda(y.to(x), 0)


def test_rng_state_on_the_device_is_refused_like_cuda(cuda_stand_in):
    state = torch.get_rng_state().to("cuda")
    with pytest.raises(TypeError, match="RNG state must be a torch.ByteTensor"):
        torch.set_rng_state(state)
    with pytest.raises(TypeError, match="RNG state must be a torch.ByteTensor"):
        torch.cuda.set_rng_state(state)
    torch.set_rng_state(state.cpu())


def test_current_device_contexts():
    with fake_cuda(device_count=2):
        with torch.cuda.device(1):
            assert torch.cuda.current_device() == 1 and on_cuda(torch.zeros(1, device="cuda"), 1)
        assert torch.cuda.current_device() == 0 and isinstance(torch.cuda.device(0), torch.cuda.device)
        with torch.cuda.device_of(torch.ones(1, device="cuda:1")):
            assert torch.cuda.current_device() == 1
        with torch.device("cuda:1"):  # torch's default-device context
            assert on_cuda(torch.zeros(2), 1)
        torch.cuda.set_device(1)
        assert on_cuda(torch.ones(1).cuda(), 1) and torch.cuda.get_rng_state().dtype == torch.uint8


# ------------------------------------------------------------------------------------------ streams, memory
def test_events_and_streams(cuda_stand_in):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.ones(100, device="cuda").sum()
    end.record()
    end.synchronize()
    assert start.query() and end.query() and start.elapsed_time(end) >= 0
    end.wait()
    with pytest.raises(RuntimeError, match="enable_timing"):
        torch.cuda.Event().elapsed_time(end)
    side = torch.cuda.Stream()
    default = torch.cuda.current_stream()
    assert side != default and default is torch.cuda.default_stream()
    with torch.cuda.stream(side):
        assert torch.cuda.current_stream() is side
        side.wait_stream(default)
        event = side.record_event()
    assert torch.cuda.current_stream() is default and event.query()
    default.wait_event(event)
    torch.ones(2, device="cuda").record_stream(side)


def test_memory_allocated_follows_live_tensors(cuda_stand_in):
    before = torch.cuda.memory_allocated()
    x = torch.empty(1 << 18, device="cuda")  # 1 MiB
    assert torch.cuda.memory_allocated() - before >= 1 << 20
    del x
    torch.cuda.empty_cache()
    assert torch.cuda.memory_allocated() - before < 1 << 20


# ------------------------------------------------------------------------------------------ moving
@pytest.mark.parametrize("move", [lambda t, o: t.to("cuda"), lambda t, o: t.to(torch.device("cuda:0")),
                                  lambda t, o: t.cuda(), lambda t, o: t.to(o), lambda t, o: t.to(0),
                                  lambda t, o: t.to(device="cuda", dtype=torch.float32)],
                         ids=["str", "device", "cuda()", "other_tensor", "int", "kwargs"])
def test_tensors_move_to_the_device_as_copies(cuda_stand_in, move):
    t = torch.arange(6.0).reshape(2, 3)
    moved = move(t, torch.zeros(1, device="cuda"))
    assert on_cuda(moved) and moved.shape == t.shape and torch.equal(moved.cpu(), t)
    t.add_(1)  # a copy: the host tensor is independent
    assert torch.equal(moved.cpu(), t - 1)
    assert moved.cuda() is moved and moved.to("cuda:0") is moved
    assert on_cuda(moved.to(torch.float64)) and moved.to(torch.float64).dtype == torch.float64
    back = moved.cpu()
    assert plain(back) and plain(moved.to("cpu")) and torch.equal(back, t - 1)
    back.zero_()
    assert moved.abs().sum().item() > 0


def test_modules_move_with_their_parameter_objects(cuda_stand_in):
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    params = list(net.parameters())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)  # built before the move, as often done
    assert net.to("cuda") is net
    assert [p is q for p, q in zip(net.parameters(), params)] == [True] * 4
    assert all(on_cuda(p) and isinstance(p, nn.Parameter) and p.is_leaf for p in net.parameters())
    assert all(on_cuda(b) for b in net.buffers())
    before = net[0].weight.detach().cpu()
    net(torch.randn(5, 3, device="cuda")).sum().backward()
    assert on_cuda(net[0].weight.grad)
    opt.step()
    assert not torch.equal(net[0].weight.detach().cpu(), before)
    net.cpu()
    assert all(plain(p) and type(p) is nn.Parameter for p in net.parameters())
    assert plain(net[0].weight.grad)
    net.cuda()
    assert all(on_cuda(p) for p in net.parameters())
    other = nn.Linear(2, 2).to(torch.zeros(1, device="cuda"))  # Module.to(tensor)
    assert on_cuda(other.weight)


@pytest.mark.parametrize("make", [
    lambda: torch.zeros(2, 3, device="cuda"), lambda: torch.ones(2, device="cuda"),
    lambda: torch.empty(4, device="cuda"), lambda: torch.full((2,), 7.0, device="cuda"),
    lambda: torch.arange(5, device="cuda"), lambda: torch.tensor([1.0, 2.0], device="cuda"),
    lambda: torch.randn(3, device="cuda"), lambda: torch.rand(3, device=CUDA0),
    lambda: torch.randint(0, 9, (3,), device="cuda"), lambda: torch.linspace(0, 1, 5, device="cuda"),
    lambda: torch.eye(3, device="cuda"), lambda: torch.zeros_like(torch.ones(2), device="cuda"),
    lambda: torch.as_tensor(np.ones(3), device="cuda"), lambda: torch.randperm(4, device="cuda"),
    lambda: torch.ones(2).new_zeros(3, device="cuda"),
], ids=["zeros", "ones", "empty", "full", "arange", "tensor", "randn", "rand", "randint", "linspace", "eye",
        "zeros_like", "as_tensor", "randperm", "new_zeros"])
def test_factories_with_device_cuda(cuda_stand_in, make):
    assert on_cuda(make())


@pytest.mark.parametrize("like", [torch.zeros_like, torch.ones_like, torch.empty_like, torch.rand_like,
                                  torch.randn_like, lambda t: torch.full_like(t, 2.0), lambda t: t.new_ones(3),
                                  lambda t: t.new_tensor([1.0])])
def test_like_factories_of_a_stand_in_stay_on_the_device(cuda_stand_in, like):
    assert on_cuda(like(torch.ones(2, device="cuda")))
    assert plain(torch.zeros_like(torch.ones(2, device="cuda"), device="cpu"))


def test_factory_values_equal_the_cpu_ones(cuda_stand_in):
    assert torch.equal(torch.linspace(-1, 1, 7, device="cuda").cpu(), torch.linspace(-1, 1, 7))
    assert torch.equal(torch.eye(4, device="cuda").cpu(), torch.eye(4))
    assert torch.equal(torch.arange(2, 11, 3, device="cuda").cpu(), torch.arange(2, 11, 3))


def test_torch_load_with_map_location_cuda(cuda_stand_in):
    net = nn.Linear(3, 2)
    buffer = io.BytesIO()
    torch.save({"net": net.state_dict(), "nested": [torch.ones(2), {"x": torch.zeros(1)}], "step": 3}, buffer)
    for where in ("cuda", "cuda:0", CUDA0, {"cpu": "cuda:0"}):
        buffer.seek(0)
        state = torch.load(buffer, map_location=where)
        assert on_cuda(state["net"]["weight"]) and on_cuda(state["nested"][0]) and on_cuda(state["nested"][1]["x"])
        assert state["step"] == 3 and torch.equal(state["net"]["weight"].cpu(), net.weight.detach())
    buffer.seek(0)
    assert plain(torch.load(buffer, map_location="cpu")["nested"][0])
    buffer.seek(0)
    with pytest.raises(RuntimeError, match="device_count"):
        torch.load(buffer, map_location="cuda:1")


def test_saved_stand_ins_load_anywhere_as_cpu_tensors(cuda_stand_in):
    net = nn.Linear(3, 2).cuda()
    buffer = io.BytesIO()
    torch.save({"state": net.state_dict(), "param": net.weight}, buffer)
    buffer.seek(0)
    state = torch.load(buffer)  # weights_only: no stand-in class in the file
    assert plain(state["state"]["weight"]) and type(state["param"]) is nn.Parameter
    assert torch.equal(state["param"].detach(), net.weight.detach().cpu())
    net.load_state_dict(state["state"])  # CPU tensors copied into stand-in parameters
    assert on_cuda(net.weight)


def test_deepcopy_of_a_module_on_the_device(cuda_stand_in):
    net = nn.Linear(3, 2).cuda()
    twin = copy.deepcopy(net)
    assert all(on_cuda(p) and isinstance(p, nn.Parameter) for p in twin.parameters())
    assert torch.equal(twin.weight.detach().cpu(), net.weight.detach().cpu())
    twin.weight.data.add_(1)
    assert not torch.equal(twin.weight.detach().cpu(), net.weight.detach().cpu())


# ------------------------------------------------------------------------------------------ refused mixing
def test_mixing_with_cpu_tensors_is_refused_like_cuda(cuda_stand_in):
    x = torch.ones(3, device="cuda")
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        x + torch.ones(3)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        torch.cat([x, torch.ones(3)])
    net = nn.Linear(3, 1)  # forgotten .to("cuda")
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        net(x)
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        torch.ones(3) * torch.tensor(2.0, device="cuda")  # a device scalar does not mix with a CPU tensor
    assert on_cuda(x * torch.tensor(2.0)) and on_cuda(x * 2)  # CPU 0-dim scalars and numbers do
    assert on_cuda(x[torch.tensor([0, 2])])  # CPU indices for a device tensor
    with pytest.raises(RuntimeError, match="indices should be either on cpu"):
        torch.ones(3)[torch.tensor([0], device="cuda")]
    leaf = torch.zeros(3, device="cuda", requires_grad=True)
    with pytest.raises(RuntimeError, match="gradient with device type 'cpu' to a tensor with device type 'cuda'"):
        leaf.grad = torch.ones(3)


def test_numpy_of_a_stand_in_is_refused_like_cuda(cuda_stand_in):
    x = torch.ones(3, device="cuda")
    with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
        x.numpy()
    with pytest.raises(TypeError, match="Use Tensor.cpu"):
        np.asarray(x)
    assert x.cpu().numpy().tolist() == [1.0, 1.0, 1.0] and x.tolist() == [1.0, 1.0, 1.0]
    assert x.sum().item() == 3.0 and float(x[0]) == 1.0


def test_pinned_memory_and_non_blocking_copies(cuda_stand_in):
    host = torch.arange(4.0)
    pinned = host.pin_memory()
    assert plain(pinned) and pinned.is_pinned() and torch.equal(pinned, host)
    assert pinned.pin_memory() is pinned
    made = torch.empty(4, pin_memory=True)  # pinned at allocation, as a CUDA machine allows
    assert plain(made) and made.is_pinned() and plain(torch.zeros_like(host, pin_memory=True))
    with pytest.raises(RuntimeError, match="Only dense CPU tensors can be pinned"):
        torch.empty(4, device="cuda", pin_memory=True)
    device = torch.empty(4, device="cuda")
    assert device.copy_(pinned, non_blocking=True) is device and on_cuda(device)
    back = torch.empty(4).copy_(device, non_blocking=True)
    assert plain(back) and torch.equal(back, host)
    assert on_cuda(pinned.to("cuda", non_blocking=True))
    with pytest.raises(RuntimeError, match="cannot pin"):
        device.pin_memory()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 2)), batch_size=2,
                                         pin_memory=True)
    (batch,) = next(iter(loader))
    assert plain(batch) and batch.is_pinned()


def test_threads_started_inside_see_the_device(cuda_stand_in):
    with ThreadPoolExecutor(1) as pool:
        made = pool.submit(lambda: torch.zeros(2, device="cuda") + torch.ones(2, device="cuda")).result()
    assert on_cuda(made)


# ------------------------------------------------------------------------------------------ autograd
class _Square(torch.autograd.Function):
    """x ** 2 with a backward that builds a helper tensor on the input's device."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        two = torch.full((), 2.0, device=x.device)
        return grad * two * x


def _autograd_case(device):
    torch.manual_seed(0)
    w = torch.randn(4, 3).to(device).requires_grad_()
    x = torch.randn(5, 3).to(device)
    y = _Square.apply(x @ w.T).sigmoid().sum()
    y.backward()
    (gx,) = torch.autograd.grad((x.requires_grad_() @ w.T.detach()).pow(3).sum(), [x])
    return y.detach(), w.grad, gx


def test_autograd_through_stand_ins_equals_the_cpu(cuda_stand_in):
    expected = _autograd_case("cpu")
    got = _autograd_case("cuda")
    assert all(on_cuda(t) for t in got)
    assert all(torch.equal(a, b.cpu()) for a, b in zip(expected, got))
    leaf = torch.randn(3, device="cuda", requires_grad=True)
    (leaf * 2).sum().backward()
    assert leaf.is_leaf and on_cuda(leaf.grad) and torch.equal(leaf.grad.cpu(), torch.full((3,), 2.0))


def _clipped_foreach_adam(device):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=0.1, foreach=True)  # the multi-tensor path CUDA takes by default
    x = torch.randn(16, 4).to(device)
    for _ in range(3):
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        norm = nn.utils.clip_grad_norm_(net.parameters(), 0.01)  # groups gradients by device
        opt.step()
    return norm, [p.detach() for p in net.parameters()]


def test_device_grouping_utilities_equal_the_cpu(cuda_stand_in):
    cpu_norm, cpu_params = _clipped_foreach_adam("cpu")
    norm, params = _clipped_foreach_adam("cuda")
    assert on_cuda(norm) and torch.equal(norm.cpu(), cpu_norm)
    assert all(on_cuda(p) and torch.equal(p.cpu(), q) for p, q in zip(params, cpu_params))


# ------------------------------------------------------------------------------------------ a CycleGAN step
def _cyclegan_steps(device: str, steps: int = 2):
    """G, F, D_Y, D_X and two Adams: the least-squares GAN + cycle losses of CycleGAN, a few steps."""
    torch.manual_seed(0)
    nets = [init_weights(ResnetGenerator(ngf=8, n_blocks=2)), init_weights(ResnetGenerator(ngf=8, n_blocks=2)),
            init_weights(NLayerDiscriminator(ndf=8, n_layers=2)), init_weights(NLayerDiscriminator(ndf=8, n_layers=2))]
    x_cpu, y_cpu = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    G, F, D_Y, D_X = (net.to(device) for net in nets)
    opt_G = torch.optim.Adam(list(G.parameters()) + list(F.parameters()), 2e-4, (0.5, 0.999))
    opt_D = torch.optim.Adam(list(D_Y.parameters()) + list(D_X.parameters()), 2e-4, (0.5, 0.999))
    x, y = x_cpu.to(device), y_cpu.to(device)
    mse, l1 = nn.MSELoss(), nn.L1Loss()
    losses = []
    for _ in range(steps):
        fake_y, fake_x = G(x), F(y)
        pred_y, pred_x = D_Y(fake_y), D_X(fake_x)
        loss_G = (mse(pred_y, torch.ones_like(pred_y)) + mse(pred_x, torch.ones_like(pred_x))
                  + 10 * (l1(F(fake_y), x) + l1(G(fake_x), y)))
        opt_G.zero_grad()
        loss_G.backward()
        opt_G.step()
        loss_D = 0.0
        for d, real, fake in ((D_Y, y, fake_y), (D_X, x, fake_x)):
            p_real, p_fake = d(real), d(fake.detach())
            loss_D = loss_D + 0.5 * (mse(p_real, torch.ones_like(p_real)) + mse(p_fake, torch.zeros_like(p_fake)))
        opt_D.zero_grad()
        loss_D.backward()
        opt_D.step()
        losses.append((loss_G.item(), loss_D.item()))
    weights = [{k: v.detach().cpu() for k, v in net.state_dict().items()} for net in (G, F, D_Y, D_X)]
    states = [s for opt in (opt_G, opt_D) for s in opt.state.values()]
    return losses, weights, states


def test_cyclegan_training_step_equals_the_cpu_bit_for_bit(cuda_stand_in):
    cpu_losses, cpu_weights, _ = _cyclegan_steps("cpu")
    losses, weights, states = _cyclegan_steps("cuda")
    assert losses == cpu_losses  # exact floats
    for ours, theirs in zip(weights, cpu_weights):
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert all(on_cuda(s["exp_avg"]) and on_cuda(s["exp_avg_sq"]) for s in states)
