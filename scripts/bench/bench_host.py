"""Throughput of the host's networks, eager and compiled (training/compiled.py), and optionally of
NVlabs' upstream networks at the same config, in one run on this machine (CPU unless a GPU is present).

    python -m scripts.bench.bench_host [--resolutions 32,64] [--batch 16] [--threads 2] [--out results/bench/bench_host.json]
    python -m scripts.bench.bench_host --upstream ~/src/stylegan2-ada-pytorch    # + upstream's eager networks

Every measurement runs in its own Python process (so one compile cannot warm another), builds G and
D with channel_base 4096, channel_max 128, FP32, and reports img/s of
- G forward: `G.synthesis(ws)` without gradients (inference);
- training step: the training loop's main phases, Gmain (G forward, D forward, backward into G's
  weights through frozen D) and Dmain (G forward with frozen weights, D forward on fakes and reals,
  backward into D's weights); the lazy regularisation phases are left out.
*compiled_bf16*: compiled, with the top four resolutions' blocks in bfloat16 (train.py --cpu-bf16; the
`auto` presets' FP16 blocks), on CPUs with native bfloat16 only. Compiled times are taken after the first (compiling) call, whose duration is reported separately.
The upstream checkout is only imported, never copied or committed.
"""
import json
import os
import subprocess
import sys

import click
import torch

from scripts import HOST, ROOT

WORKER = r'''
import json, sys, time, torch
sys.path.insert(0, {root!r})
torch.set_num_threads({threads})
from training import networks
res, batch, mode = {res}, {batch}, {mode!r}
dev = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
torch.manual_seed(0)
bf16 = mode.endswith('bf16')
kw = dict(channel_base=4096, channel_max=128, num_fp16_res=4 if bf16 else 0, conv_clamp=256 if bf16 else None)
G = networks.Generator(z_dim=128, c_dim=0, w_dim=128, img_resolution=res, img_channels=3,
                       mapping_kwargs=dict(num_layers=2), synthesis_kwargs=kw).to(dev)
D = networks.Discriminator(c_dim=0, img_resolution=res, img_channels=3, **kw).to(dev)
z = torch.randn([batch, 128], device=dev)
c = torch.zeros([batch, 0], device=dev)
synthesis, disc = G.synthesis, D
if bf16:
    from training import compiled
    compiled.use_cpu_bf16(G, D)
if mode.startswith('compiled'):
    from training import compiled
    synthesis = compiled._Compiled(G.synthesis, 'G.synthesis', log=None)
    disc = compiled._Compiled(D, 'D', log=None)
def sync():
    if dev.type == 'cuda':
        torch.cuda.synchronize()
def timed(fn, repeats={repeats}):
    t0 = time.perf_counter(); fn(); sync(); first = time.perf_counter() - t0
    fn(); sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); sync(); times.append(time.perf_counter() - t0)
    times.sort()
    return first, times[len(times) // 2]
with torch.no_grad():
    ws = G.mapping(z, c)
    first_fwd, t_fwd = timed(lambda: synthesis(ws, noise_mode='const'))
real = torch.randn([batch, 3, res, res], device=dev)
sp = torch.nn.functional.softplus
def step():    # the training loop's main phases: Gmain (D frozen), then Dmain (G frozen)
    G.requires_grad_(True); D.requires_grad_(False); G.zero_grad(set_to_none=True)
    sp(-disc(synthesis(G.mapping(z, c), noise_mode='const'), c)).mean().backward()
    G.requires_grad_(False); D.requires_grad_(True); D.zero_grad(set_to_none=True)
    fake = synthesis(G.mapping(z, c), noise_mode='const')
    (sp(disc(fake, c)).mean() + sp(-disc(real, c)).mean()).backward()
first_step, t_step = timed(step)
print('RESULT ' + json.dumps(dict(g_fwd_img_s=batch / t_fwd, gd_step_img_s=batch / t_step,
                                  first_g_fwd_s=first_fwd, first_step_s=first_step)))
'''

def measure(root, res, batch, mode, threads, repeats):
    code = WORKER.format(root=root, threads=threads, res=res, batch=batch, mode=mode, repeats=repeats)
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=root)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('RESULT ')]
    if proc.returncode != 0 or not lines:
        raise click.ClickException(f'the {mode} benchmark at {res} px failed in {root}: {proc.stderr.strip().splitlines()[-1:]}')
    return json.loads(lines[-1][len('RESULT '):])

@click.command()
@click.option('--resolutions', default='32,64', help='Comma-separated resolutions')
@click.option('--batch', default=16, type=int, help='Images per step')
@click.option('--repeats', default=7, type=int, help='Timed repeats (median)')
@click.option('--threads', default=2, type=int, help='torch CPU threads per measurement', show_default=True)
@click.option('--upstream', default=None, metavar='DIR', help='Also time the networks of this stylegan2-ada-pytorch checkout (eager)')
@click.option('--bf16/--no-bf16', default=True, show_default=True, help='Also time compiled networks with bfloat16 FP16 blocks (train.py --cpu-bf16; CPU with native bf16 only)')
@click.option('--out', default=None, help='Write the results as JSON here')
def main(resolutions, batch, repeats, threads, upstream, bf16, out):
    if upstream is not None and not os.path.isfile(os.path.join(upstream, 'training', 'networks.py')):
        raise click.ClickException(f'--upstream {upstream} has no training/networks.py; pass the root of a stylegan2-ada-pytorch checkout.')
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if bf16 and device == 'cpu':
        sys.path.insert(0, HOST)
        from training import compiled
        bf16 = compiled.cpu_bf16_supported()
    print(f'device={device} threads={threads} batch={batch} (img/s; first = seconds of the first call, compiling included)')
    head = f'{"res":>4} {"":>9} {"G fwd":>8} {"step":>8} {"first fwd":>10} {"first step":>11}'
    print(head)
    rows = []
    impls = [('eager', HOST), ('compiled', HOST)]
    if device == 'cpu' and bf16:
        impls.append(('compiled_bf16', HOST))
    impls += [('upstream', os.path.abspath(upstream))] if upstream else []
    for res in [int(r) for r in resolutions.split(',')]:
        row = dict(res=res, batch=batch)
        for name, root in impls:
            r = measure(root, res, batch, 'eager' if name == 'upstream' else name, threads, repeats)
            row[name] = r
            print(f'{res:>4} {name:>9} {r["g_fwd_img_s"]:>8.1f} {r["gd_step_img_s"]:>8.1f} {r["first_g_fwd_s"]:>10.1f} {r["first_step_s"]:>11.1f}')
        row['compiled_vs_eager'] = dict(g_fwd=row['compiled']['g_fwd_img_s'] / row['eager']['g_fwd_img_s'],
                                        gd_step=row['compiled']['gd_step_img_s'] / row['eager']['gd_step_img_s'])
        line = f'{res:>4} compiled/eager: G fwd x{row["compiled_vs_eager"]["g_fwd"]:.2f}, step x{row["compiled_vs_eager"]["gd_step"]:.2f}'
        if 'compiled_bf16' in row:
            row['compiled_bf16_vs_eager'] = dict(g_fwd=row['compiled_bf16']['g_fwd_img_s'] / row['eager']['g_fwd_img_s'],
                                                 gd_step=row['compiled_bf16']['gd_step_img_s'] / row['eager']['gd_step_img_s'])
            line += f'; compiled+bf16/eager: G fwd x{row["compiled_bf16_vs_eager"]["g_fwd"]:.2f}, step x{row["compiled_bf16_vs_eager"]["gd_step"]:.2f}'
        if upstream and 'compiled_bf16' in row:
            row['compiled_bf16_vs_upstream'] = dict(g_fwd=row['compiled_bf16']['g_fwd_img_s'] / row['upstream']['g_fwd_img_s'],
                                                    gd_step=row['compiled_bf16']['gd_step_img_s'] / row['upstream']['gd_step_img_s'])
            line += f'; compiled+bf16/upstream: G fwd x{row["compiled_bf16_vs_upstream"]["g_fwd"]:.2f}, step x{row["compiled_bf16_vs_upstream"]["gd_step"]:.2f}'
        if upstream:
            row['compiled_vs_upstream'] = dict(g_fwd=row['compiled']['g_fwd_img_s'] / row['upstream']['g_fwd_img_s'],
                                               gd_step=row['compiled']['gd_step_img_s'] / row['upstream']['gd_step_img_s'])
            row['eager_vs_upstream'] = dict(g_fwd=row['eager']['g_fwd_img_s'] / row['upstream']['g_fwd_img_s'],
                                            gd_step=row['eager']['gd_step_img_s'] / row['upstream']['gd_step_img_s'])
            line += (f'; compiled/upstream: G fwd x{row["compiled_vs_upstream"]["g_fwd"]:.2f}, step x{row["compiled_vs_upstream"]["gd_step"]:.2f}'
                     f'; eager/upstream: G fwd x{row["eager_vs_upstream"]["g_fwd"]:.2f}, step x{row["eager_vs_upstream"]["gd_step"]:.2f}')
        print(line)
        rows.append(row)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        command = (f'python -m scripts.bench.bench_host --resolutions {resolutions} --batch {batch} --repeats {repeats} --threads {threads}'
                   + (' --upstream UPSTREAM_CHECKOUT' if upstream else '') + f' --out {out}')
        with open(out, 'w') as f:
            json.dump(dict(command=command, device=device, threads=threads, torch=torch.__version__, rows=rows), f, indent=2)

if __name__ == '__main__':
    main()
