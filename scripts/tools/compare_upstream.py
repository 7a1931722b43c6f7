"""Check that the host's networks compute what an NVlabs stylegan2-ada-pytorch checkout computes.

Builds the host's Generator and Discriminator (32 px, RGB, the given widths), perturbs every
parameter (so zero-initialised biases and noise strengths take part), and records G's image
(const noise), D's logits, G's and D's parameter gradients of sum(D(G(z))) and D's R1 input
gradient. A second Python process builds the same networks from the upstream checkout, loads the
host's state_dict (the FIR filter buffers are derived data and differ only in layout: upstream
keeps a 2-D 4x4 outer product, the host the separable 1-D taps) and prints the largest
differences. Needs a checkout on disk; nothing is downloaded, and no upstream code is copied.

    python -m scripts.tools.compare_upstream --upstream ~/src/stylegan2-ada-pytorch [--cmax 32] [--json out.json]
"""

import json
import os
import subprocess
import sys
import tempfile

import click

from scripts import HOST as HOST_DIR

BUILD = """
import sys, torch
sys.path.insert(0, {path!r})
from training import networks
def build(cbase, cmax):
    G = networks.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=32, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=cbase, channel_max=cmax, num_fp16_res=0, conv_clamp=None))
    D = networks.Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=cbase, channel_max=cmax,
        num_fp16_res=0, conv_clamp=None, epilogue_kwargs=dict(mbstd_group_size=4))
    return G, D
def run(G, D, z, real):
    c = torch.zeros([len(z), 0])
    img = G(z, c, noise_mode='const')
    logits = D(img, c)
    G.zero_grad(); D.zero_grad()
    logits.sum().backward()
    real = real.clone().requires_grad_(True)
    r1, = torch.autograd.grad(D(real, c).sum(), real)
    return dict(img=img.detach(), logits=logits.detach(), r1=r1,
                G_grads={{n: p.grad.clone() for n, p in G.named_parameters() if p.grad is not None}},
                D_grads={{n: p.grad.clone() for n, p in D.named_parameters() if p.grad is not None}})
"""

HOST = BUILD + """
torch.manual_seed(0)
G, D = build({cbase}, {cmax})
with torch.no_grad():
    for p in list(G.parameters()) + list(D.parameters()):
        p.add_(torch.randn_like(p) * 0.1)
z, real = torch.randn(8, 512), torch.randn(8, 3, 32, 32)
torch.save(dict(G=G.state_dict(), D=D.state_dict(), z=z, real=real, out=run(G, D, z, real)), {state!r})
"""

UPSTREAM = BUILD + """
import json
d = torch.load({state!r})
G, D = build({cbase}, {cmax})
keep = lambda sd: {{k: v for k, v in sd.items() if not k.endswith('resample_filter')}}
for net, sd in ((G, d['G']), (D, d['D'])):
    missing, unexpected = net.load_state_dict(keep(sd), strict=False)
    assert not unexpected and all(k.endswith('resample_filter') for k in missing), (missing, unexpected)
out = run(G, D, d['z'], d['real'])
ref = d['out']
rel = lambda a, b: float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
res = dict(image=rel(out['img'], ref['img']), logits=rel(out['logits'], ref['logits']), r1_grad=rel(out['r1'], ref['r1']),
           G_grads=max(rel(g, ref['G_grads'][n]) for n, g in out['G_grads'].items()),
           D_grads=max(rel(g, ref['D_grads'][n]) for n, g in out['D_grads'].items()),
           missing_grads=sorted(set(ref['G_grads']) ^ set(out['G_grads'])) + sorted(set(ref['D_grads']) ^ set(out['D_grads'])))
print(json.dumps(res))
"""

@click.command()
@click.option('--upstream', required=True, metavar='DIR', help='Root of a stylegan2-ada-pytorch checkout')
@click.option('--cbase', type=int, default=2048, show_default=True, help='Channel base of both networks')
@click.option('--cmax', type=int, default=32, show_default=True, help='Largest channel count of both networks')
@click.option('--json', 'json_path', default=None, help='Also write the result here')
def main(upstream, cbase, cmax, json_path):
    """Largest differences between the host's networks and an upstream checkout's (see above)."""
    if not os.path.isfile(os.path.join(upstream, 'training', 'networks.py')):
        raise click.ClickException(f'{upstream} is not a stylegan2-ada-pytorch checkout (no training/networks.py): pass its root.')
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, 'state.pt')
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
        subprocess.run([sys.executable, '-c', HOST.format(path=HOST_DIR, cbase=cbase, cmax=cmax, state=state)],
                       check=True, env=env)
        done = subprocess.run([sys.executable, '-c', UPSTREAM.format(path=os.path.abspath(upstream), cbase=cbase,
                               cmax=cmax, state=state)], check=True, env=env, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(cbase=cbase, cmax=cmax, command='python -m scripts.tools.compare_upstream --upstream UPSTREAM_CHECKOUT'
                  + f' --cbase {cbase} --cmax {cmax}')
    print('largest relative differences, host vs upstream: ' + ', '.join(
        f'{k} {result[k]:.1e}' for k in ('image', 'logits', 'G_grads', 'D_grads', 'r1_grad')))
    if result['missing_grads']:
        print('parameters with a gradient on one side only: ' + ', '.join(result['missing_grads']))
    if json_path:
        with open(json_path, 'w') as f:
            json.dump(result, f, indent=1)

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
