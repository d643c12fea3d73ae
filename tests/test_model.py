"Tests of deepknet_lit.model.PointNet."
import pytest
import torch

from deepknet_lit.model import PointNet, count_parameters, encoder_block


def _x(B=4, n=27, C=4, seed=0):
    return torch.randn(B, n, C, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pooling", ["max", "mean", "attention"])
def test_shapes_and_permutation_invariance(pooling):
    torch.manual_seed(0)
    net = PointNet(mlp=(16, 32), head=(16, 8), n_classes=4, pooling=pooling, attention_layers=2).eval()
    x = _x()
    out = net(x)
    assert out.shape == (4, 4) and torch.isfinite(out).all()
    perm = torch.randperm(27, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(net(x[:, perm]), out, atol=1e-5)


def test_not_invariant_to_changing_points():
    "The invariance test can fail: altering one point changes the output."
    torch.manual_seed(0)
    net = PointNet(mlp=(16, 32), head=(16,)).eval()
    x = _x()
    y = x.clone(); y[:, 0] += 5.0
    assert not torch.allclose(net(x), net(y))


def test_critical_points_follow_permutation():
    torch.manual_seed(0)
    net = PointNet(mlp=(8, 16, 32), head=(16,)).eval()
    x = _x(B=3)
    logits, crit = net(x, return_critical=True)
    assert crit.shape == (3, 32) and crit.dtype == torch.int64
    h = net.point_features(x)
    assert torch.equal(h.gather(1, crit.unsqueeze(1)).squeeze(1), h.max(1).values)
    perm = torch.randperm(27)
    _, crit_p = net(x[:, perm], return_critical=True)
    # the same physical points win (up to float near-ties between rows computed in a different order)
    assert (perm[crit_p] == crit).float().mean() > 0.97
    hp = net.point_features(x[:, perm])
    assert torch.allclose(hp.gather(1, crit_p.unsqueeze(1)).squeeze(1), h.gather(1, crit.unsqueeze(1)).squeeze(1), atol=1e-5)


def test_paper_defaults_and_hyperparameters():
    net = PointNet()
    assert net.hparams["mlp"] == (64, 128, 512, 1024) and net.hparams["head"] == (1024, 512, 256, 128)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [64, 128, 512, 1024, 1024, 512, 256, 128, 2]
    small = PointNet(mlp=(32, 64), head=(32,), dropout=0.0)
    assert count_parameters(small) < count_parameters(net)
    assert not any(isinstance(m, torch.nn.Dropout) for m in small.modules())
    att = PointNet(mlp=(16, 32), head=(16,), pooling="attention", attention_layers=4)
    assert len(att.pool.blocks) == 4
    assert PointNet.from_hparams(att.hparams).hparams == att.hparams


def test_encoder_block_is_torchs_layer_with_its_gradients():
    "The batch-first block gives torch's TransformerEncoderLayer output and the same parameter and input gradients."
    torch.manual_seed(0)
    blk = PointNet(mlp=(16, 32), head=(16,), pooling="attention", attention_heads=4).pool.blocks[0].train()
    h = torch.randn(3, 27, 32, requires_grad=True)
    grads = []
    for f in (blk, lambda x: encoder_block(blk, x)):
        blk.zero_grad(); h.grad = None
        out = f(h)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([out.detach(), h.grad.clone()] + [p.grad.clone() for p in blk.parameters()])
    assert len(grads[0]) == 2 + len(list(blk.parameters()))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_bad_arguments():
    with pytest.raises(ValueError, match="pooling"):
        PointNet(pooling="sum")
    with pytest.raises(ValueError, match="in_dim=4"):
        PointNet(mlp=(8,), head=(8,))(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="n_classes"):
        PointNet(n_classes=0)
    assert PointNet(mlp=(8,), head=(8,), n_classes=1).eval()(torch.randn(2, 5, 4)).shape == (2, 1)  # one regression output


def test_train_step_learns():
    "A few steps reduce the loss on a separable toy problem (checks gradients flow)."
    torch.manual_seed(0)
    net = PointNet(in_dim=3, mlp=(16, 32), head=(16,), dropout=0.0)
    x = _x(B=32, n=10, C=3)
    y = (x[..., 0].mean(1) > 0).long()
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(); loss.backward(); opt.step(); losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
