"""mspe-patch: applies unified diffs to a checkout or a fork, idempotently and all-or-nothing.

The fixture trees and diffs here are tiny stand-ins written for these tests (a fake train.py /
generate.py), not upstream code. The last tests read the shipped patches/ files."""

import difflib
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mspe_plugin import patch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRAIN = """\
import os
import click

import dnnlib

def setup(cfg):
    desc = f'run-{cfg}'
    return desc

def check(kimg):
    if kimg is not None and kimg < 1:
        raise ValueError('kimg')
    return kimg

@click.command()
@click.option('--cfg', type=click.Choice(['auto', 'paper256']))
@click.option('--kimg', type=int)
def main(cfg, kimg):
    desc = setup(cfg)
    print(desc, kimg)

if __name__ == '__main__':
    main()
"""

TRAIN_PATCHED = """\
import os
import click

import dnnlib
from fakeplugin import hook

def setup(cfg):
    desc = f'run-{cfg}'
    return desc

def check(kimg):
    if kimg is not None and kimg < 1:
        raise ValueError('kimg')
    return kimg

@click.command()
@click.option('--cfg', type=click.Choice(['auto', 'paper256'] + hook.CFGS))
@click.option('--kimg', type=int)
def main(cfg, kimg):
    desc = setup(cfg)
    desc += hook.suffix(cfg)
    print(desc, kimg)

if __name__ == '__main__':
    main()
"""

GENERATE = """\
import torch

def generate(G, z):
    device = torch.device('cuda')
    return G(z.to(device))
"""

GENERATE_PATCHED = """\
import torch
from fakeplugin import hook

def generate(G, z):
    device = hook.default_device()
    return G(z.to(device))
"""

def unified_diff(path, old, new):
    """The unified diff (3 lines of context) that turns `old` into `new` for `path`."""
    return ''.join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), 'a/' + path, 'b/' + path))

def make_tree(tmp_path, train=TRAIN, generate=GENERATE):
    """A fake checkout with train.py and generate.py, and a patch folder for both; returns (root, patches)."""
    root = tmp_path / 'checkout'
    root.mkdir()
    (root / 'train.py').write_bytes(train.encode())
    (root / 'generate.py').write_bytes(generate.encode())
    patches = tmp_path / 'patches'
    patches.mkdir()
    (patches / 'train.diff').write_text('Fake hook for train.py.\n\n' + unified_diff('train.py', TRAIN, TRAIN_PATCHED))
    (patches / 'generate.diff').write_text(unified_diff('generate.py', GENERATE, GENERATE_PATCHED))
    return root, patches

def run_cli(*args):
    return CliRunner().invoke(patch.main, [str(a) for a in args])

def snapshot(root):
    """{name: (bytes, mtime_ns)} of every file under root (temporary files would show up too)."""
    return {name: ((root / name).read_bytes(), os.stat(root / name).st_mtime_ns) for name in sorted(os.listdir(root))}

#----------------------------------------------------------------------------
# Apply, again, revert, check.

def test_apply_writes_the_patched_files(tmp_path):
    root, patches = make_tree(tmp_path)
    result = run_cli(root, '--patches', patches)
    assert result.exit_code == 0, result.output
    assert (root / 'train.py').read_text() == TRAIN_PATCHED
    assert (root / 'generate.py').read_text() == GENERATE_PATCHED
    assert 'train.py' in result.output and 'patched' in result.output

def test_second_apply_reports_already_applied_and_changes_nothing(tmp_path):
    root, patches = make_tree(tmp_path)
    assert run_cli(root, '--patches', patches).exit_code == 0
    before = snapshot(root)
    result = run_cli(root, '--patches', patches)
    assert result.exit_code == 0, result.output
    assert result.output.count('already applied') >= 2
    assert snapshot(root) == before

def test_revert_restores_the_original_bytes(tmp_path):
    root, patches = make_tree(tmp_path)
    assert run_cli(root, '--patches', patches).exit_code == 0
    result = run_cli(root, '--patches', patches, '--revert')
    assert result.exit_code == 0, result.output
    assert (root / 'train.py').read_bytes() == TRAIN.encode()
    assert (root / 'generate.py').read_bytes() == GENERATE.encode()
    again = run_cli(root, '--patches', patches, '--revert')
    assert again.exit_code == 0 and 'nothing to revert' in again.output

def test_check_reports_each_file_and_writes_nothing(tmp_path):
    root, patches = make_tree(tmp_path, generate=GENERATE_PATCHED)
    before = snapshot(root)
    result = run_cli(root, '--patches', patches, '--check')
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.output.splitlines())
    assert lines['train.py'].startswith('applies')
    assert lines['generate.py'].startswith('already applied')
    assert snapshot(root) == before

#----------------------------------------------------------------------------
# Drift: reported precisely, nothing written.

def test_drifted_file_is_reported_and_no_file_is_written(tmp_path):
    fork_train = TRAIN.replace("    desc = setup(cfg)\n", "    desc = setup(cfg).upper()\n")
    root, patches = make_tree(tmp_path, train=fork_train)
    before = snapshot(root)
    result = run_cli(root, '--patches', patches)
    assert result.exit_code == 1
    drift_line = next(line for line in result.output.splitlines() if line.startswith('train.py'))
    assert 'drifted' in drift_line
    second_hunk = patch.parse_patch((patches / 'train.diff').read_text())[0].hunks[1]
    assert f'hunk 2/2 {second_hunk.header}' in drift_line     # the failing hunk's header
    assert "'desc = setup(cfg)'" in drift_line and "'desc = setup(cfg).upper()'" in drift_line
    assert 'nothing was written' in result.output
    assert snapshot(root) == before                           # generate.py would apply, yet is untouched

def test_check_exits_1_for_a_drifted_file(tmp_path):
    root, patches = make_tree(tmp_path, generate=GENERATE.replace("'cuda'", "'cuda:1'"))
    result = run_cli(root, '--patches', patches, '--check')
    assert result.exit_code == 1
    assert 'generate.py  drifted: hunk 1/1' in result.output
    assert 'train.py     applies' in result.output

def test_partly_patched_file_is_drifted_with_a_hint(tmp_path):
    half = TRAIN_PATCHED.replace('    desc += hook.suffix(cfg)\n', '')
    root, patches = make_tree(tmp_path, train=half)
    result = run_cli(root, '--patches', patches)
    assert result.exit_code == 1
    assert 'partly patched' in result.output
    assert (root / 'train.py').read_text() == half

def test_missing_file_in_a_fork_blocks_the_other_files(tmp_path):
    root, patches = make_tree(tmp_path)
    (root / 'generate.py').unlink()
    result = run_cli(root, '--patches', patches)
    assert result.exit_code == 1
    assert 'generate.py  missing' in result.output
    assert (root / 'train.py').read_text() == TRAIN

def test_failed_write_leaves_every_file_as_it_was(tmp_path, monkeypatch):
    root, patches = make_tree(tmp_path)
    before = snapshot(root)
    copies = []
    def copymode_failing_on_second(src, dst):
        copies.append(dst)
        if len(copies) == 2:
            raise PermissionError(13, 'Permission denied')
    monkeypatch.setattr(patch.shutil, 'copymode', copymode_failing_on_second)
    result = run_cli(root, '--patches', patches)
    assert result.exit_code == 1
    assert 'nothing was changed' in result.output
    assert snapshot(root) == before                           # no file replaced, no temporary left

#----------------------------------------------------------------------------
# Forks: moved lines, CRLF, trailing whitespace, no final newline.

def test_hunks_are_found_when_the_fork_moved_lines(tmp_path):
    extra = ''.join(f'# fork line {i}\n' for i in range(7))
    fork_train = TRAIN.replace('import os\n', 'import os\n' + extra)
    root, patches = make_tree(tmp_path, train=fork_train)
    result = run_cli(root, '--patches', patches)
    assert result.exit_code == 0, result.output
    assert (root / 'train.py').read_text() == TRAIN_PATCHED.replace('import os\n', 'import os\n' + extra)
    assert 'offset +7 lines' in result.output
    assert run_cli(root, '--patches', patches, '--revert').exit_code == 0
    assert (root / 'train.py').read_text() == fork_train

def test_nearest_match_wins_when_context_repeats(tmp_path):
    block = 'a\nb\nc\nd\ne\nf\n'
    old = block + 'x\n' * 20 + block
    new = block + 'x\n' * 20 + block.replace('c\n', 'c\nNEW\n')
    root = tmp_path / 'tree'
    root.mkdir()
    (root / 'train.py').write_text(old)
    patches = tmp_path / 'p'
    patches.mkdir()
    (patches / 'p.diff').write_text(unified_diff('train.py', old, new))
    assert run_cli(root, '--patches', patches).exit_code == 0
    assert (root / 'train.py').read_text() == new           # the second block, where the diff says

def test_crlf_fork_keeps_its_line_ends(tmp_path):
    crlf = TRAIN.replace('\n', '\r\n')
    root, patches = make_tree(tmp_path, train=crlf)
    assert run_cli(root, '--patches', patches).exit_code == 0
    assert (root / 'train.py').read_bytes() == TRAIN_PATCHED.replace('\n', '\r\n').encode()
    assert run_cli(root, '--patches', patches, '--revert').exit_code == 0
    assert (root / 'train.py').read_bytes() == crlf.encode()

def test_trailing_whitespace_in_the_fork_is_tolerated_and_kept(tmp_path):
    fork_train = TRAIN.replace('import dnnlib\n', 'import dnnlib   \n')
    root, patches = make_tree(tmp_path, train=fork_train)
    assert run_cli(root, '--patches', patches).exit_code == 0
    assert 'import dnnlib   \nfrom fakeplugin import hook\n' in (root / 'train.py').read_text()
    assert run_cli(root, '--patches', patches, '--revert').exit_code == 0
    assert (root / 'train.py').read_text() == fork_train

def test_missing_final_newline_round_trips(tmp_path):
    root = tmp_path / 'tree'
    root.mkdir()
    (root / 'generate.py').write_bytes(b'a\nb\nc')
    patches = tmp_path / 'p'
    patches.mkdir()
    (patches / 'g.diff').write_text('--- a/generate.py\n+++ b/generate.py\n@@ -1,3 +1,4 @@\n a\n b\n-c\n\\ No newline at end of file\n+c\n+d\n\\ No newline at end of file\n')
    assert run_cli(root, '--patches', patches).exit_code == 0
    assert (root / 'generate.py').read_bytes() == b'a\nb\nc\nd'
    assert run_cli(root, '--patches', patches, '--revert').exit_code == 0
    assert (root / 'generate.py').read_bytes() == b'a\nb\nc'

#----------------------------------------------------------------------------
# Command line: exit codes and one-sentence errors.

def _one_sentence_error(result):
    error_lines = [line for line in result.output.splitlines() if line.startswith('Error:')]
    return len(error_lines) == 1 and error_lines[0].endswith('.') and 'Traceback' not in result.output

def test_path_that_does_not_exist_is_a_usage_error(tmp_path):
    _, patches = make_tree(tmp_path)
    result = run_cli(tmp_path / 'nowhere', '--patches', patches)
    assert result.exit_code == 2 and _one_sentence_error(result)
    assert 'does not exist' in result.output

def test_folder_without_the_scripts_is_not_a_checkout(tmp_path):
    _, patches = make_tree(tmp_path)
    empty = tmp_path / 'empty'
    empty.mkdir()
    result = run_cli(empty, '--patches', patches)
    assert result.exit_code == 2 and _one_sentence_error(result)
    assert 'is not a StyleGAN2-ADA checkout' in result.output

def test_check_and_revert_together_is_a_usage_error(tmp_path):
    root, patches = make_tree(tmp_path)
    result = run_cli(root, '--patches', patches, '--check', '--revert')
    assert result.exit_code == 2 and _one_sentence_error(result)

def test_damaged_patch_file_is_a_usage_error_naming_the_file(tmp_path):
    root, patches = make_tree(tmp_path)
    (patches / 'train.diff').write_text('--- a/train.py\n+++ b/train.py\n@@ -1,3 +1,4 @@\n import os\n+x\n')
    result = run_cli(root, '--patches', patches)
    assert result.exit_code == 2 and _one_sentence_error(result)
    assert 'train.diff' in result.output and 'truncated' in result.output
    assert (root / 'generate.py').read_text() == GENERATE

def test_patch_that_escapes_the_checkout_is_refused():
    with pytest.raises(patch.PatchFormatError, match='relative to the checkout'):
        patch.parse_patch('--- a/../x.py\n+++ b/../x.py\n@@ -1 +1 @@\n-a\n+b\n', 'evil.diff')

def test_module_runs_as_a_script(tmp_path):
    root, patches = make_tree(tmp_path)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    run = subprocess.run([sys.executable, '-m', 'mspe_plugin.patch', str(root), '--patches', str(patches), '--check'],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert 'train.py     applies' in run.stdout
    drift = subprocess.run([sys.executable, '-m', 'mspe_plugin.patch', str(tmp_path / 'nowhere'), '--patches', str(patches)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert drift.returncode == 2 and drift.stderr.strip().startswith('Error:') and len(drift.stderr.strip().splitlines()) == 1

#----------------------------------------------------------------------------
# The shipped patches.

def test_shipped_patches_parse_and_touch_only_the_three_host_scripts():
    patch_dir = patch.default_patch_dir()
    assert patch_dir is not None and os.path.samefile(patch_dir, os.path.join(ROOT, 'patches'))
    file_patches = patch.load_patches(patch_dir)
    assert sorted(fp.path for fp in file_patches) == ['generate.py', 'projector.py', 'train.py']
    for fp in file_patches:
        added = [text for hunk in fp.hunks for tag, text in hunk.ops if tag == '+']
        removed = [text for hunk in fp.hunks for tag, text in hunk.ops if tag == '-']
        assert 'from mspe_plugin import register' in added
        assert len(added) + len(removed) <= 40, f'{fp.path}: the hook should stay a few lines'
        # The hook adds calls into the plugin; it never defines plugin code inside the host.
        assert not any(line.lstrip().startswith(('def ', 'class ')) for line in added)

def old_side_lines(file_patch):
    """The script a shipped diff was made against, as far as the diff shows it: each hunk's old
    side at its line, filler lines between (no upstream code needed)."""
    filler = 0
    old_lines = []
    for hunk in file_patch.hunks:
        while len(old_lines) < hunk.old_start - 1:
            old_lines.append(f'# filler {filler}')
            filler += 1
        old_lines += hunk.side(new=False)
    return old_lines

def test_shipped_patches_apply_to_their_own_old_side_and_revert(tmp_path):
    """Rebuild each script's hunk regions (old side) from the diff alone and check the shipped
    hunks apply and revert there, without needing upstream's code."""
    for fp in patch.load_patches(patch.default_patch_dir()):
        lines = [(text, '\n') for text in old_side_lines(fp)]
        patched, offsets = patch.apply_file_patch(lines, fp)
        assert offsets == [0] * len(fp.hunks)
        assert any('register.' in text for text, _ in patched)
        reverted, _ = patch.apply_file_patch(patched, fp, reverse=True)
        assert reverted == lines

def test_a_non_editable_build_carries_the_patches_and_mspe_patch_finds_them(tmp_path):
    """What `pip install .` puts into site-packages (setup.py's build) holds patches/ as
    mspe_plugin/patches, and `mspe-patch --check` run from there, away from this repository,
    reports that they apply."""
    build = tmp_path / 'lib'
    subprocess.run([sys.executable, 'setup.py', '-q', 'build_py', '--build-lib', str(build)], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    shipped = sorted(os.listdir(build / 'mspe_plugin' / 'patches'))
    assert shipped == sorted(os.listdir(os.path.join(ROOT, 'patches'))), shipped
    checkout = tmp_path / 'stylegan2-ada-pytorch'
    checkout.mkdir()
    for fp in patch.load_patches(os.path.join(ROOT, 'patches')):
        (checkout / fp.path).write_text(''.join(line + '\n' for line in old_side_lines(fp)))
    env = dict(os.environ, PYTHONPATH=str(build))
    run = subprocess.run([sys.executable, '-m', 'mspe_plugin.patch', str(checkout), '--check'], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert all(f'{name}' in run.stdout for name in ('train.py', 'generate.py', 'projector.py'))
    assert run.stdout.count('applies') == 3, run.stdout

def test_lines_added_after_a_last_line_without_newline_stay_separate():
    file_patch = patch.parse_patch('--- a/g.py\n+++ b/g.py\n@@ -1,3 +1,4 @@\n a\n b\n c\n+d\n')[0]
    patched, _ = patch.apply_file_patch(patch.split_lines('a\nb\nc'), file_patch)
    assert patch.join_lines(patched) == 'a\nb\nc\nd'
    reverted, _ = patch.apply_file_patch(patched, file_patch, reverse=True)
    assert patch.join_lines(reverted) == 'a\nb\nc'
