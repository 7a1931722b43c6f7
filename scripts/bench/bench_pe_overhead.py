"""What MS-PE costs per training step: a G+D step with --pe=mspe against --pe=none and against
the host's own generator, same widths, same batch, timed interleaved in one process; and what
the border recipe adds on top (`mspe_rm`: --pe=mspe --pe-resize=0.75,1.5 --pe-margin=8, where G
renders a randomly zoomed canvas extended by random margins and crops it), and the digit default
(`mspe_rmo`: the recipe plus --pe-outside=30, whose G phase renders the latents once more on a window
beyond the grid: mspe_plugin.outside.PlainOutsideLoss.outside_penalty, called as training calls it).

    python -m scripts.bench.bench_pe_overhead [--resolutions 32,64] [--batch 16] [--repeats 15] [--out results/bench/bench_pe_overhead.json]

One step is what the training loop does in its main phases: G(z) -> D(fake) -> G loss backward,
then D(real), D(fake.detach()) -> D loss backward (no regularisation, no optimizer, identical for
all variants). The variants take turns step by step, so a load change on the machine hits all
of them alike; each figure is the median over the repeats. Widths: train.py's `cpu` preset
(channel_base 2048, channel_max 128, z/w 512, 2 mapping layers).
"""

import json
import os
import sys
import time

import click
import torch
import torch.nn.functional as F

from scripts import ROOT
from scripts.experiments.digits import pick_device
import dnnlib  # noqa: E402  (the vendored host, on sys.path through `scripts`)
from mspe_plugin import register  # noqa: E402
from mspe_plugin.outside import PlainOutsideLoss  # noqa: E402
from training import networks  # noqa: E402

VARIANTS = ('host', 'none', 'mspe', 'mspe_rm', 'mspe_rmo')
PLUGIN_FLAGS = {                # variant -> configure_generator arguments (train.py's flags)
    'none': dict(pe='none'),
    'mspe': dict(pe='mspe'),
    'mspe_rm': dict(pe='mspe', pe_resize=(0.75, 1.5), pe_margin=8),
}
PLUGIN_FLAGS['mspe_rmo'] = PLUGIN_FLAGS['mspe_rm']    # the same generator; the penalty is the difference
OUTSIDE_WEIGHT = {'mspe_rmo': 30.0}    # variant -> --pe-outside

def build(variant, res, device, channel_base=2048, channel_max=128):
    """(G, D) of one variant: 'host' = training.networks.Generator; 'none' / 'mspe' through
    the plugin's configure_generator, as train.py --pe=... builds them."""
    G_kwargs = dnnlib.EasyDict(class_name='training.networks.Generator', z_dim=512, w_dim=512,
        mapping_kwargs=dnnlib.EasyDict(num_layers=2),
        synthesis_kwargs=dnnlib.EasyDict(channel_base=channel_base, channel_max=channel_max))
    if variant != 'host':
        register.configure_generator(G_kwargs, **PLUGIN_FLAGS[variant])
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(**G_kwargs, c_dim=0, img_resolution=res, img_channels=3).to(device)
    D = networks.Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=channel_base,
                               channel_max=channel_max).to(device)
    outside = None
    if variant in OUTSIDE_WEIGHT:
        outside = PlainOutsideLoss(outside_weight=OUTSIDE_WEIGHT[variant], device=device, G_mapping=G.mapping,
                                   G_synthesis=G.synthesis, D=D)
    return G, D, outside

def train_step(G, D, outside, z, real):
    fake = G(z, None)
    loss = F.softplus(-D(fake, None)).mean()
    if outside is not None:                                                         # --pe-outside's penalty
        loss = loss + outside.outside_weight * outside.outside_penalty(real, z, None)[0]
    loss.backward()                                                                 # G main
    loss = F.softplus(D(fake.detach(), None)).mean() + F.softplus(-D(real, None)).mean()
    loss.backward()                                                                 # D main

@click.command()
@click.option('--resolutions', default='32,64', show_default=True, help='Comma-separated resolutions')
@click.option('--batch', default=16, type=int, show_default=True, help='Images per step')
@click.option('--repeats', default=15, type=int, show_default=True, help='Timed steps per variant (median)')
@click.option('--threads', default=None, type=int, help="torch CPU threads (default: torch's choice)")
@click.option('--out', default=os.path.join(ROOT, 'results', 'bench', 'bench_pe_overhead.json'), show_default=True)
def main(resolutions, batch, repeats, threads, out):
    if threads:
        torch.set_num_threads(threads)
    device = pick_device()
    print(f'device={device.type} threads={torch.get_num_threads()} batch={batch} repeats={repeats}')
    rows = []
    for res in [int(r) for r in resolutions.split(',')]:
        nets = {v: build(v, res, device) for v in VARIANTS}
        z = torch.randn([batch, 512], device=device)
        real = torch.randn([batch, 3, res, res], device=device)
        times = {v: [] for v in VARIANTS}
        for k in range(repeats + 2):                 # two warm-up rounds
            for v in VARIANTS:
                t0 = time.perf_counter()
                train_step(*nets[v], z, real)
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                if k >= 2:
                    times[v].append(time.perf_counter() - t0)
        median = {v: sorted(t)[len(t) // 2] for v, t in times.items()}
        row = dict(res=res, batch=batch, seconds=median,
                   mspe_vs_none_percent=100 * (median['mspe'] / median['none'] - 1),
                   mspe_vs_host_percent=100 * (median['mspe'] / median['host'] - 1),
                   mspe_rm_vs_mspe_ratio=median['mspe_rm'] / median['mspe'],
                   mspe_rmo_vs_mspe_ratio=median['mspe_rmo'] / median['mspe'])
        rows.append(row)
        print(f'{res:>4} px: host {median["host"] * 1e3:7.1f} ms  pe=none {median["none"] * 1e3:7.1f} ms  '
              f'pe=mspe {median["mspe"] * 1e3:7.1f} ms  ->  MS-PE {row["mspe_vs_none_percent"]:+.1f}% vs pe=none, '
              f'{row["mspe_vs_host_percent"]:+.1f}% vs host; resize + margins {median["mspe_rm"] * 1e3:7.1f} ms '
              f'= x{row["mspe_rm_vs_mspe_ratio"]:.2f} of pe=mspe; + --pe-outside {median["mspe_rmo"] * 1e3:7.1f} ms '
              f'= x{row["mspe_rmo_vs_mspe_ratio"]:.2f}')
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(dict(command=' '.join(['python -m scripts.bench.bench_pe_overhead'] + sys.argv[1:]), device=device.type,
                       threads=torch.get_num_threads(), rows=rows), f, indent=2)
    print(f'wrote {out}')

if __name__ == '__main__':
    main()
