"""Writes tests/data/unit_reference.pt: a tiny UNIT generator and discriminator built and run by the authors' code.

Run with a checkout of github.com/mingyuliutw/UNIT (master, 28d5982) on the path, for its ``networks.py``:
    PYTHONPATH=/path/to/UNIT python tests/data/make_unit_reference.py tests/data/unit_reference.pt
Only their network classes are used; the test compares art2real.nn.unit's forward passes with these outputs.
"""
import sys

import torch
from networks import MsImageDis, VAEGen  # the authors' classes

torch.manual_seed(0)
gen = dict(dim=4, n_downsample=2, n_res=1, activ="relu", pad_type="reflect")
dis = dict(dim=4, n_layer=2, num_scales=2, norm="none", activ="lrelu", gan_type="lsgan", pad_type="reflect")
g, d = VAEGen(3, gen), MsImageDis(3, dis)
with torch.no_grad():
    for p in g.parameters():  # random biases and LayerNorm affine, so that every parameter shows in the outputs
        if p.dim() == 1:
            p.uniform_(-0.5, 0.5)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    h = g.enc(x)
    out = {"gen_sizes": gen, "dis_sizes": dis, "x": x, "gen": g.state_dict(), "dis_a": d.state_dict(), "h": h,
           "x_recon": g.dec(h), "x_recon_first": g.dec(h[:1]),  # batch 1 takes another branch of their LayerNorm
           "dis_a_outputs": d(x)}
torch.save(out, sys.argv[1])
