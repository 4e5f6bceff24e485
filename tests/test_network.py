"""Affine maps and lifted networks (PAPER_MATH §1, §3; §6 checks 12 and 13)."""

import warnings

import pytest
import torch
from torch import nn

from lbreg import network
from lbreg.activations import Identity, LeakyReLU, ReLU, activation_of
from lbreg.network import AffineMap, Layer, LiftedNetwork
from lbreg.operators import power_norm, tv
from lbreg.regularizers import TV

DT = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=DT)


def _seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    """Float64 copy of ``module`` with seeded random parameters."""
    module = module.to(DT)
    with torch.no_grad():
        for i, p in enumerate(module.parameters()):
            p.copy_(torch.randn(p.shape, generator=_gen(seed + i), dtype=DT) / 3.0)
    return module


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum())


def _check_adjoint_and_forward(module: nn.Module, in_shape: tuple, device: torch.device,
                               batch: int = 2) -> AffineMap:
    """<Ax, u> = <x, A^T u>, and A agrees with the module, on ``device``."""
    module = module.to(device)
    A = AffineMap.from_module(module, in_shape)
    x = _randn(batch, *in_shape, seed=11).to(device)
    u = _randn(batch, *A.out_shape, seed=12).to(device)
    Ax = A.linear(x)
    assert Ax.shape == (batch, *A.out_shape) and Ax.device == x.device
    Atu = A.adjoint(u)
    assert Atu.shape == (batch, *in_shape)
    lhs, rhs = _dot(Ax, u), _dot(x, Atu)
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))
    with torch.no_grad():
        ref = module(x)
    assert A(x).shape == ref.shape
    torch.testing.assert_close(A(x), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(A.linear(x), A(x) - A(torch.zeros_like(x)), rtol=0, atol=1e-12)
    return A


def _dense_matrix(A: AffineMap) -> torch.Tensor:
    """The matrix of x -> Wx, assembled column by column (one basis vector per batch entry)."""
    n = 1
    for s in A.in_shape:
        n *= s
    basis = torch.eye(n, dtype=DT).reshape(n, *A.in_shape)
    return A.linear(basis).reshape(n, -1).T


# ---------------------------------------------------------------- adjoints and forward


@pytest.mark.parametrize("bias", [True, False])
def test_linear_adjoint_and_forward(bias, device):
    _check_adjoint_and_forward(_seeded(nn.Linear(12, 7, bias=bias)), (12,), device)
    A = _check_adjoint_and_forward(_seeded(nn.Linear(784, 10, bias=bias)), (784,), device)
    B = AffineMap.from_module(_seeded(nn.Linear(784, 10, bias=bias)).to(device), (1, 28, 28))
    x = _randn(3, 1, 28, 28).to(device)
    torch.testing.assert_close(B(x), A(x.reshape(3, 784)), rtol=0, atol=0)
    assert B.adjoint(_randn(3, 10).to(device)).shape == (3, 1, 28, 28)


CONV_CASES = [
    # (in_ch, out_ch, kernel, stride, padding, dilation, groups, bias, H, W)
    (1, 8, 4, 2, 1, 1, 1, True, 28, 28),  # the paper's CNN layer
    (8, 16, 4, 2, 1, 1, 1, True, 14, 14),
    (3, 6, 3, 1, 0, 1, 3, False, 9, 7),  # depthwise-like groups
    (2, 4, 3, 2, 1, 1, 2, True, 9, 8),  # odd size: output_padding 0 in H, 1 in W
    (2, 4, (3, 2), (2, 3), (1, 2), (2, 1), 1, True, 11, 10),
    (1, 2, 5, 3, 2, 1, 1, False, 13, 13),  # output_padding 2
    (2, 3, 4, 1, "same", 1, 1, True, 7, 8),  # asymmetric 'same' padding
    (2, 3, 3, 1, "same", 2, 1, False, 6, 5),
    (2, 3, 3, 2, "valid", 1, 1, True, 8, 9),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_adjoint_and_forward(case, device):
    cin, cout, k, s, p, d, g, bias, h, w = case
    conv = _seeded(nn.Conv2d(cin, cout, k, s, p, d, g, bias))
    A = _check_adjoint_and_forward(conv, (cin, h, w), device)
    assert A.out_shape == tuple(conv(torch.zeros(1, cin, h, w, dtype=DT, device=device)).shape[1:])


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_conv2d_adjoint_routes_agree(case, dtype):
    """The two routes of the adjoint (products with Wᵀ summed by F.fold; a transposed
    convolution) give the same Wᵀu to rounding, so each is checked wherever the tests run."""
    cin, cout, k, s, p, d, g, bias, h, w = case
    A = AffineMap.from_module(_seeded(nn.Conv2d(cin, cout, k, s, p, d, g, bias)), (cin, h, w)).to(dtype=dtype)
    u = _randn(3, *A.out_shape, seed=5).to(dtype)
    folded, transposed = A._adjoint_fold(u, (h, w)), A._adjoint_transposed(u, (h, w))
    assert folded.shape == transposed.shape == (3, cin, h, w)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(folded, transposed, rtol=tol, atol=tol * float(transposed.abs().max()))


CONVT_CASES = [
    # (in_ch, out_ch, kernel, stride, padding, output_padding, dilation, groups, bias, H, W)
    (16, 8, 4, 2, 1, 0, 1, 1, True, 7, 7),  # the paper's decoder layers
    (8, 1, 4, 2, 1, 0, 1, 1, True, 14, 14),
    (4, 2, 3, 2, 1, 1, 1, 1, False, 5, 6),
    (4, 6, 3, 3, 0, 2, 1, 2, True, 4, 3),
    (2, 2, 3, 1, 1, 1, 2, 1, True, 5, 5),  # output_padding >= stride (allowed by dilation)
    (3, 3, (2, 3), (2, 1), (0, 1), (1, 0), 1, 3, False, 4, 6),
]


@pytest.mark.parametrize("case", CONVT_CASES)
def test_conv_transpose2d_adjoint_and_forward(case, device):
    cin, cout, k, s, p, op, d, g, bias, h, w = case
    convt = _seeded(nn.ConvTranspose2d(cin, cout, k, s, p, op, g, bias, d))
    _check_adjoint_and_forward(convt, (cin, h, w), device)


@pytest.mark.parametrize("case", CONVT_CASES)
@pytest.mark.parametrize("fold", [True, False])
def test_conv_transpose2d_float32_routes_match_module(case, fold, monkeypatch):
    """In float32 on the CPU the forward (the adjoint of the dual convolution) matches the
    module by either route of `_ConvMap._conv_adjoint`, and the adjoint stays exact."""
    monkeypatch.setattr(network._ConvMap, "_fold_adjoint", property(lambda self: fold))
    cin, cout, k, s, p, op, d, g, bias, h, w = case
    convt = _seeded(nn.ConvTranspose2d(cin, cout, k, s, p, op, g, bias, d)).float()
    A = AffineMap.from_module(convt, (cin, h, w))
    x = _randn(3, cin, h, w, seed=7).float()
    with torch.no_grad():
        ref = convt(x)
    torch.testing.assert_close(A(x), ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    u = _randn(3, *A.out_shape, seed=8).float()
    assert _dot(A.linear(x), u) == pytest.approx(_dot(x, A.adjoint(u)), rel=1e-4)


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        (dict(kernel_size=2), (3, 8, 8)),
        (dict(kernel_size=3, stride=2, padding=1), (2, 9, 7)),
        (
            dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
            (2, 8, 7),
        ),
        (dict(kernel_size=(2, 3), stride=(1, 2), divisor_override=4), (1, 6, 7)),
    ],
)
def test_avg_pool_adjoint_and_forward(kwargs, shape, device):
    _check_adjoint_and_forward(nn.AvgPool2d(**kwargs), shape, device)


def test_from_matrix_adjoint_forward_and_shapes():
    W, b = _randn(20, 64, seed=1), _randn(20, seed=2)
    A = AffineMap.from_matrix(W, b, in_shape=(1, 8, 8), out_shape=(4, 5))
    assert (A.in_shape, A.out_shape) == ((1, 8, 8), (4, 5))
    x, u = _randn(3, 1, 8, 8), _randn(3, 4, 5, seed=3)
    torch.testing.assert_close(A(x), (x.reshape(3, 64) @ W.T + b).reshape(3, 4, 5))
    assert _dot(A.linear(x), u) == pytest.approx(_dot(x, A.adjoint(u)), rel=1e-12)
    torch.testing.assert_close(A(x.reshape(3, 64)), A(x))  # flat inputs are accepted
    plain = AffineMap.from_matrix(W)
    assert (plain.in_shape, plain.out_shape, plain.bias) == ((64,), (20,), None)


def test_matrix_of_dense_maps_only():
    """`AffineMap.matrix`: W (prod(out_shape), prod(in_shape)) for dense maps, None otherwise."""
    W = _randn(20, 64, seed=4)
    A = AffineMap.from_matrix(W, in_shape=(1, 8, 8), out_shape=(4, 5))
    assert torch.equal(A.matrix, W)
    torch.testing.assert_close(A.linear(torch.eye(64, dtype=DT).reshape(64, 1, 8, 8)).reshape(64, 20).T, A.matrix)
    linear = AffineMap.from_module(nn.Linear(12, 3), input_shape=(3, 4))
    assert linear.matrix.shape == (3, 12)
    assert AffineMap.from_module(nn.Conv2d(1, 2, 3), input_shape=(1, 6, 6)).matrix is None
    assert AffineMap.from_module(nn.AvgPool2d(2), input_shape=(1, 6, 6)).matrix is None


# ---------------------------------------------------------------- spectral norms


def test_norm_of_dense_map_matches_matrix_norm():
    """Exact (Gram eigenvalue) for wide and tall W, against the SVD's largest singular value."""
    for W in (_randn(100, 784, seed=5), _randn(300, 40, seed=6)):
        ref = float(torch.linalg.matrix_norm(W, 2))
        assert AffineMap.from_matrix(W).norm() == pytest.approx(ref, rel=1e-13)
    lin = _seeded(nn.Linear(50, 30))
    ref = float(torch.linalg.matrix_norm(lin.weight.detach(), 2))
    assert AffineMap.from_module(lin, (50,)).to(dtype=torch.float32).norm() == pytest.approx(
        ref, rel=1e-6
    )


def test_norm_of_a_large_dense_map_falls_back_to_power_iteration(monkeypatch):
    """Above the exact-norm size the power iteration answers: a lower bound within 1e-6."""
    calls = []
    monkeypatch.setattr(network, "_EXACT_NORM_MAX", 10)
    monkeypatch.setattr(network, "power_norm", lambda *a, **k: calls.append(a) or power_norm(*a, **k))
    W = _randn(30, 50, seed=8)
    ref = float(torch.linalg.matrix_norm(W, 2))
    norm = AffineMap.from_matrix(W).norm()
    assert len(calls) == 1
    assert norm == pytest.approx(ref, rel=1e-6)
    assert norm <= ref * (1 + 1e-14)


@pytest.mark.parametrize(
    "module, shape",
    [
        (nn.Conv2d(1, 4, 4, 2, 1), (1, 8, 8)),
        (nn.Conv2d(2, 3, 3, 2, 0, bias=False), (2, 9, 8)),
        (nn.ConvTranspose2d(3, 2, 4, 2, 1), (3, 4, 4)),
        (nn.AvgPool2d(3, 2, 1), (1, 8, 8)),
    ],
)
def test_norm_of_conv_map_matches_assembled_matrix(module, shape):
    A = AffineMap.from_module(_seeded(module), shape)
    M = _dense_matrix(A)
    u = _randn(M.shape[0], *A.out_shape, seed=7)
    torch.testing.assert_close(A.adjoint(u).reshape(M.shape[0], -1), u.reshape(M.shape[0], -1) @ M)
    ref = float(torch.linalg.matrix_norm(M, 2))
    assert A.norm() == pytest.approx(ref, rel=1e-6)
    assert A.norm() is A.norm()  # cached


# ---------------------------------------------------------------- lifted networks


def _dense_encoder() -> nn.Module:
    return _seeded(nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU()))


def _cnn_encoder() -> nn.Module:
    return _seeded(
        nn.Sequential(
            nn.Conv2d(1, 8, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 4, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(784, 300),
        )
    )


def test_dense_encoder_is_one_relu_layer():
    enc = _dense_encoder()
    net = LiftedNetwork.from_module(enc, (1, 28, 28))
    assert net.depth == 1
    assert (net.input_shape, net.output_shape) == ((1, 28, 28), (100,))
    assert isinstance(net.layers[0].activation, ReLU)
    x = torch.rand(4, 1, 28, 28, generator=_gen(1), dtype=DT)
    with torch.no_grad():
        torch.testing.assert_close(net(x), enc(x), rtol=0, atol=1e-12)


def test_cnn_encoder_layers_shapes_and_forward():
    enc = _cnn_encoder()
    net = LiftedNetwork.from_module(enc, (1, 28, 28))
    assert net.depth == 3
    assert [type(layer.activation) for layer in net.layers] == [ReLU, ReLU, Identity]
    assert [layer.affine.out_shape for layer in net.layers] == [(8, 14, 14), (16, 7, 7), (300,)]
    x = torch.rand(3, 1, 28, 28, generator=_gen(2), dtype=DT)
    with torch.no_grad():
        ref = enc(x)
    torch.testing.assert_close(net(x), ref, rtol=0, atol=1e-12)
    xs = net.states(x)
    assert [tuple(s.shape[1:]) for s in xs] == [(1, 28, 28), (8, 14, 14), (16, 7, 7), (300,)]
    torch.testing.assert_close(xs[-1], net(x), rtol=0, atol=0)
    assert not any(s.requires_grad for s in xs)


def test_decoder_with_unflatten_nested_sequential_and_skipped_modules():
    dec = _seeded(
        nn.Sequential(
            nn.Linear(300, 784),
            nn.Unflatten(1, (16, 7, 7)),
            nn.Sequential(nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.Dropout(0.5), nn.ReLU()),
            nn.Identity(),
            nn.ConvTranspose2d(8, 1, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
    ).eval()
    net = LiftedNetwork.from_module(dec, (300,))
    assert net.depth == 3
    assert [type(layer.activation) for layer in net.layers] == [Identity, ReLU, LeakyReLU]
    assert [layer.affine.in_shape for layer in net.layers] == [(300,), (784,), (8, 14, 14)]
    assert net.output_shape == (784,)  # the trailing Flatten is folded into the last map
    y = _randn(2, 300, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(net(y), dec(y), rtol=0, atol=1e-12)
    with pytest.warns(UserWarning, match=r"Dropout at index 2\.1 is in training mode.*module\.eval\(\)"):
        LiftedNetwork.from_module(dec.train(), (300,))  # the same eval-mode map, with a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LiftedNetwork.from_module(dec.eval(), (300,))


def test_a_relu6_network_lifts_to_its_forward_map_and_states_in_0_6():
    """ReLU6 (MobileNet's activation) is HardTanh(0, 6): the lifted map is torch's, and each
    state lies in dom Ψ = [0, 6]."""
    body = _seeded(nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU6(), nn.Conv2d(4, 4, 3, 1, 1, groups=2),
                                 nn.Hardtanh(-0.5, 2.0), nn.Flatten(), nn.Linear(64, 10))).double()
    net = LiftedNetwork.from_module(body, (1, 8, 8))
    assert [repr(layer.activation) for layer in net.layers] == [
        "HardTanh(min_val=0.0, max_val=6.0)", "HardTanh(min_val=-0.5, max_val=2.0)", "Identity()"]
    x = 10 * _randn(3, 1, 8, 8, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(net(x), body(x), rtol=0, atol=1e-12)
    for state, layer in zip(net.states(x)[1:], net.layers):
        assert bool(layer.activation.in_domain(state).all())
    assert bool((net.states(x)[1] == 6.0).any())  # the inputs reach the upper clamp


def test_modules_used_twice_are_lifted_at_each_use():
    """A shared activation, a repeated block and a tied Linear: one layer per use, as forward
    applies them (``named_children`` lists a module once, which dropped the later uses)."""
    act, lin = nn.ReLU(), _seeded(nn.Linear(6, 6)).double()
    block = nn.Sequential(_seeded(nn.Linear(6, 6)), nn.Tanh()).double()
    x = _randn(3, 6)
    for module, depth in ((nn.Sequential(_seeded(nn.Linear(6, 5)).double(), act, _seeded(nn.Linear(5, 4)).double(), act), 2),
                          (nn.Sequential(block, block, block), 3),
                          (nn.Sequential(lin, nn.ReLU(), lin, nn.ReLU()), 2)):
        net = LiftedNetwork.from_module(module, (6,))
        assert net.depth == depth
        with torch.no_grad():
            torch.testing.assert_close(net(x), module(x), rtol=0, atol=1e-12)


def test_parametrized_weights_are_lifted():
    """torch.nn.utils.parametrizations (no hooks) give the weight forward uses."""
    lin = nn.utils.parametrizations.spectral_norm(_seeded(nn.Linear(6, 4)).double()).eval()
    net = LiftedNetwork.from_module(nn.Sequential(lin, nn.ReLU()), (6,))
    x = _randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(net(x), torch.relu(lin(x)), rtol=0, atol=1e-12)


class _InitialisedLinear(nn.Linear):
    """A subclass that changes only how the weights are initialised and printed."""

    def reset_parameters(self):
        nn.init.constant_(self.weight, 0.25)
        nn.init.constant_(self.bias, -0.5)

    def extra_repr(self):
        return "constant"


def test_subclass_changing_only_initialisation_is_lifted():
    """Overriding reset_parameters or extra_repr leaves forward's computation alone: lifted, and
    the lifted network computes what the module computes."""
    lin = _InitialisedLinear(6, 4).double()
    net = LiftedNetwork.from_module(nn.Sequential(lin, nn.ReLU()), (6,))
    x = _randn(3, 6)
    with torch.no_grad():
        torch.testing.assert_close(net(x), torch.relu(lin(x)), rtol=0, atol=0)


def test_linear_on_a_last_axis_keeps_torchs_leading_axes():
    """Flatten(2) then Linear on (C=1, H·W): torch keeps the channel axis, (B, 1, out), and so does
    the lifted network; a Linear that torch would apply to several rows is refused, naming it."""
    module = nn.Sequential(_seeded(nn.Conv2d(1, 1, 3)), nn.ReLU(), nn.Flatten(2), _seeded(nn.Linear(36, 5))).double()
    net = LiftedNetwork.from_module(module, (1, 8, 8))
    assert net.output_shape == (1, 5)
    x = _randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x), module(x), rtol=0, atol=1e-12)
    rows = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(2), nn.Linear(36, 5))
    with pytest.raises(ValueError, match="torch applies it to each row along the last axis"):
        LiftedNetwork.from_module(rows, (1, 8, 8))


def test_single_module_and_from_layers():
    lin = _seeded(nn.Linear(6, 4))
    net = LiftedNetwork.from_module(lin, (6,))
    assert net.depth == 1 and isinstance(net.layers[0].activation, Identity)
    A = AffineMap.from_matrix(_randn(5, 4), out_shape=(5,))
    net2 = LiftedNetwork.from_layers([Layer(net.layers[0].affine, nn.ReLU()), Layer(A, ReLU())])
    assert net2.depth == 2 and isinstance(net2.layers[0].activation, ReLU)
    x = _randn(3, 6)
    torch.testing.assert_close(net2(x), torch.relu(A(torch.relu(lin(x)))))
    with pytest.raises(ValueError, match=r"layers\[1\] expects inputs of shape \(3,\)"):
        LiftedNetwork.from_layers(
            [Layer(net.layers[0].affine, ReLU()), Layer(AffineMap.from_matrix(_randn(2, 3)), ReLU())]
        )


def test_energy_at_true_states_is_alpha_tv():
    """PAPER_MATH §6 item 13: J(x†_0, ..., x†_{L-1}) = α TV(x†) for y = N(x†)."""
    alpha = 0.009
    x = torch.rand(2, 1, 28, 28, generator=_gen(4), dtype=DT)
    for enc in (_dense_encoder(), _cnn_encoder()):
        net = LiftedNetwork.from_module(enc, (1, 28, 28))
        xs = net.states(x)
        energy = net.energy(xs[:-1], xs[-1], alpha, TV())
        assert energy.shape == (2,)
        torch.testing.assert_close(energy, alpha * tv(x), rtol=1e-12, atol=1e-10)
        # B_Ψ >= 0: perturbing a state can only increase J
        xs_pert = [xs[0]] + [s + 0.1 for s in xs[1:-1]]
        y_pert = xs[-1] + 0.1
        assert torch.all(net.energy(xs_pert, y_pert, alpha, TV()) > energy)
        no_reg = net.energy(xs[:-1], xs[-1], 0.0, None)
        torch.testing.assert_close(no_reg, torch.zeros(2, dtype=DT), rtol=0, atol=1e-10)


def test_energy_names_a_non_finite_input():
    net = LiftedNetwork.from_module(_dense_encoder(), (1, 28, 28))
    x = torch.rand(2, 1, 28, 28, generator=_gen(6), dtype=DT)
    xs = net.states(x)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"xs\[0\] contains NaN"):
        net.energy([x, *xs[1:-1]], xs[-1], 0.1, TV())


def test_energy_outside_the_domain_raises_or_is_infinite():
    net = LiftedNetwork.from_module(_dense_encoder(), (1, 28, 28))
    x = torch.rand(2, 1, 28, 28, generator=_gen(5), dtype=DT)
    y = net(x).clone()
    y[1, 0] = -1.0  # outside dom Ψ = [0, ∞) of ReLU
    with pytest.raises(ValueError, match="y must lie in dom"):
        net.energy([x], y, 0.1, TV())
    energy = net.energy([x], y, 0.1, TV(), check=False)
    assert torch.isfinite(energy[0]) and energy[1] == float("inf")
    deep = LiftedNetwork.from_module(_cnn_encoder(), (1, 28, 28))
    xs = deep.states(x)
    with pytest.raises(ValueError, match=r"xs\[1\] must lie in dom"):
        deep.energy([xs[0], -1.0 - xs[1], xs[2]], xs[3], 0.1, TV())


def test_repr_names_padding_dilation_and_groups_where_not_default():
    plain = AffineMap.from_module(nn.Conv2d(1, 4, 3), (1, 8, 8))
    assert "padding" not in repr(plain) and "dilation" not in repr(plain)
    dilated = AffineMap.from_module(nn.Conv2d(2, 4, 3, padding=2, dilation=2, groups=2), (2, 8, 8))
    assert "stride (1, 1), padding (2, 2), dilation (2, 2), groups 2," in repr(dilated)
    same = AffineMap.from_module(nn.Conv2d(1, 1, 4, padding="same"), (1, 8, 8))
    assert "padding (top, bottom, left, right) (1, 2, 1, 2)" in repr(same)
    transposed = AffineMap.from_module(nn.ConvTranspose2d(4, 2, 4, 2, 1), (4, 8, 8))
    assert "conv_transpose2d kernel (4, 2, 4, 4), stride (2, 2), padding (1, 1)," in repr(transposed)
    longer = AffineMap.from_module(nn.ConvTranspose2d(2, 2, 3, 2, 1, output_padding=1), (2, 5, 5))
    assert "padding (1, 1), output_padding (1, 1), in_shape=(2, 5, 5), out_shape=(2, 10, 10)" in repr(longer)


def test_to_copies_and_is_noop_when_already_there():
    lin = _seeded(nn.Linear(6, 4))
    A = AffineMap.from_module(lin, (6,))
    assert A.to(dtype=DT) is A and A.to("cpu") is A
    B = A.to(dtype=torch.float32)
    assert B.weight.dtype == torch.float32 and B.weight.data_ptr() != A.weight.data_ptr()
    net = LiftedNetwork.from_module(nn.Sequential(lin, nn.ReLU()), (6,))
    assert net.to(dtype=DT) is net
    net32 = net.to(dtype=torch.float32)
    assert net32.dtype == torch.float32 and net.dtype == DT
    assert net32(torch.ones(1, 6, dtype=torch.float32)).dtype == torch.float32
    assert net.to(torch.float32).dtype == torch.float32  # a dtype first, as nn.Module.to takes it
    assert A.to(torch.float32).weight.dtype == torch.float32
    with pytest.raises(TypeError, match="a device and a dtype, or a dtype alone"):
        net.to(torch.float32, torch.float64)
    with torch.no_grad():  # weights are detached copies: editing the module changes nothing
        lin.weight.add_(1.0)
    assert not A.weight.requires_grad
    assert not torch.equal(A.weight, lin.weight)


# ---------------------------------------------------------------- errors


def test_unsupported_modules_raise_naming_the_module():
    with pytest.raises(TypeError, match=r"MaxPool2d at index 2"):
        LiftedNetwork.from_module(
            nn.Sequential(nn.Conv2d(1, 2, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2)), (1, 8, 8)
        )
    with pytest.raises(TypeError, match="GELU"):
        LiftedNetwork.from_module(nn.Sequential(nn.Linear(4, 3), nn.GELU()), (4,))
    with pytest.raises(TypeError, match="BatchNorm2d"):
        LiftedNetwork.from_module(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), (1, 8, 8))
    with pytest.raises(ValueError, match="ReLU at index 0 is an activation with no preceding affine map"):
        LiftedNetwork.from_module(nn.Sequential(nn.ReLU(), nn.Linear(4, 3)), (4,))
    with pytest.raises(TypeError, match="MaxPool2d is not an affine module"):
        AffineMap.from_module(nn.MaxPool2d(2), (1, 8, 8))


def test_input_shape_and_padding_mode_errors():
    with pytest.raises(ValueError, match=r"input_shape \(1, 20, 20\) has 400 entries"):
        AffineMap.from_module(nn.Linear(784, 10), (1, 20, 20))
    with pytest.raises(ValueError, match=r"Linear at index 1 does not fit.*input_shape"):
        LiftedNetwork.from_module(_dense_encoder(), (1, 20, 20))
    with pytest.raises(ValueError, match="input_shape must be \\(C, H, W\\) with C = in_channels = 3"):
        AffineMap.from_module(nn.Conv2d(3, 4, 3), (1, 8, 8))
    with pytest.raises(ValueError, match="input_shape"):
        AffineMap.from_module(nn.Conv2d(1, 4, 5), (1, 3, 3))  # kernel larger than the image
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        AffineMap.from_module(nn.Conv2d(1, 4, 3, padding=1, padding_mode="reflect"), (1, 8, 8))
    with pytest.raises(ValueError, match="input_shape"):
        AffineMap.from_module(nn.Linear(4, 3), (0, 4))


def test_check_input_and_output_errors():
    net = LiftedNetwork.from_module(_dense_encoder(), (1, 28, 28))
    x = torch.rand(2, 1, 28, 28, dtype=DT)
    assert net.check_input(x.reshape(2, 784)).shape == (2, 1, 28, 28)
    assert net.check_output(torch.rand(2, 100, dtype=DT)).shape == (2, 100)
    with pytest.raises(ValueError, match=r"y must have shape \(B, \*\(100,\)\).*got shape \(2, 99\)"):
        net.check_output(torch.rand(2, 99, dtype=DT))
    x[1, 0, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        net.check_input(x)
    with pytest.raises(ValueError, match="x_true contains NaN"):
        net.check_input(x, name="x_true")
    with pytest.raises(TypeError, match="x must have a real floating dtype"):
        net.check_input(torch.zeros(2, 1, 28, 28, dtype=torch.int64))
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        net.check_output([0.0] * 100)
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.rand(2, 28, 27, dtype=DT))
    with pytest.raises(ValueError, match="xs must hold the 1 states"):
        net.energy([], torch.rand(2, 100, dtype=DT), 0.1, TV())


class _DoubledReLU(nn.ReLU):
    def forward(self, x):
        return 2.0 * super().forward(x)


def test_a_layer_refuses_an_activation_module_whose_forward_is_changed():
    """`Layer` and `activation_of` read a module's type, as `from_module` does: a subclass with
    its own forward, or a forward hook, would be lifted as the plain activation."""
    affine = AffineMap.from_matrix(torch.eye(4, dtype=torch.float64))
    hooked = nn.ReLU()
    hooked.register_forward_hook(lambda module, args, out: 2.0 * out)
    with pytest.raises(TypeError, match="overrides forward of ReLU"):
        Layer(affine, _DoubledReLU())
    with pytest.raises(TypeError, match="has forward hooks"):
        Layer(affine, hooked)
    with pytest.raises(TypeError, match="overrides forward of ReLU"):
        activation_of(_DoubledReLU())


def test_from_module_refuses_complex_weights():
    """A complex Linear would lose the imaginary part of its weights in the lifted products."""
    lin = nn.Linear(36, 4, dtype=torch.complex128)
    with pytest.raises(TypeError, match=r"Linear at index 1: weight must have a real floating dtype"):
        LiftedNetwork.from_module(nn.Sequential(nn.Flatten(), lin, nn.ReLU()), input_shape=(1, 6, 6))


def test_batch_norm_is_refused_with_the_fusion_that_lifts_it():
    with pytest.raises(TypeError, match=r"BatchNorm2d .*fuse_conv_bn_eval"):
        LiftedNetwork.from_module(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()).eval(), (1, 8, 8))
