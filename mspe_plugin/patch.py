"""`mspe-patch PATH [--check] [--revert]`: add the mspe_plugin hook to a StyleGAN2-ADA checkout.

Applies the unified diffs shipped in patches/ (train.py, generate.py, projector.py of
NVlabs/stylegan2-ada-pytorch) to an upstream checkout or a fork, with a parser and applier of
our own (neither `patch` nor git is needed):
  - a hunk is found by its context lines, nearest to the line the diff names, so a fork whose
    lines moved still patches; trailing whitespace and CRLF line ends are tolerated;
  - a file whose patched form is already there (the reversed diff matches) is reported
    "already applied" and left alone, so running twice changes nothing;
  - if any hunk of any file does not match, nothing at all is written, and the report names the
    file, the hunk header and the first line that differs.
Exit status: 0 done or nothing to do, 1 a file cannot be patched (drifted or missing),
2 usage errors (PATH is not a checkout, a damaged patch file).
"""

import dataclasses
import glob
import os
import re
import shutil
import tempfile

import click

PATCH_SUFFIXES = ('.diff', '.patch')
_HUNK_HEADER = re.compile(r'^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@')

class PatchFormatError(Exception):
    """A patch file that is not a unified diff this module can apply (message: one sentence)."""

#----------------------------------------------------------------------------
# Parsing unified diffs.

@dataclasses.dataclass
class Hunk:
    """One `@@ -a,b +c,d @@` block: ops are (tag, text) with tag ' ' (context), '-' or '+'."""
    header: str                         # The full '@@ ... @@' line, for reports.
    old_start: int                      # 1-based first line of the old side (as the diff says).
    new_start: int                      # 1-based first line of the new side.
    ops: list                           # [(tag, text)], text without its line end.
    old_eof_newline: bool = True        # False: the old side ends without a final newline.
    new_eof_newline: bool = True        # False: the new side ends without a final newline.

    def side(self, new):
        """Line texts of the new side (new=True) or of the old side."""
        skip = '-' if new else '+'
        return [text for tag, text in self.ops if tag != skip]

@dataclasses.dataclass
class FilePatch:
    """The hunks of one file in one patch file."""
    path: str                           # Target path relative to the checkout, '/'-separated.
    hunks: list                         # [Hunk] in file order.
    source: str                         # Patch file name, for reports.

def _target_path(minus_line, plus_line, source, line_no):
    """Checkout-relative path named by a '--- a/X' / '+++ b/X' header pair."""
    names = [line[4:].split('\t')[0].strip() for line in (minus_line, plus_line)]
    if '/dev/null' in names:
        raise PatchFormatError(f'{source}, line {line_no}: the diff creates or deletes a file, which mspe-patch does not do.')
    name = names[1]
    if name.startswith(('a/', 'b/')):
        name = name[2:]
    parts = name.split('/')
    if not name or name.startswith('/') or '..' in parts:
        raise PatchFormatError(f'{source}, line {line_no}: the target path {name!r} must be relative to the checkout.')
    return name

def _parse_hunk(lines, i, source):
    """Parse the hunk whose header is lines[i]; returns (Hunk, index of the next line)."""
    match = _HUNK_HEADER.match(lines[i])
    if match is None:
        raise PatchFormatError(f'{source}, line {i + 1}: {lines[i]!r} is not a hunk header of the form "@@ -A,B +C,D @@".')
    old_left = 1 if match.group(2) is None else int(match.group(2))
    new_left = 1 if match.group(4) is None else int(match.group(4))
    hunk = Hunk(header=lines[i].strip(), old_start=int(match.group(1)), new_start=int(match.group(3)), ops=[])
    i += 1
    last_tag = None
    while old_left > 0 or new_left > 0 or (i < len(lines) and lines[i].startswith('\\')):
        if i >= len(lines):
            raise PatchFormatError(f'{source}: hunk {hunk.header} ends before its last line; the patch file is truncated.')
        line = lines[i]
        tag, text = (line[:1], line[1:]) if line else (' ', '')     # editors strip blank context lines
        if tag == '\\':
            if last_tag in (' ', '-'):
                hunk.old_eof_newline = False
            if last_tag in (' ', '+'):
                hunk.new_eof_newline = False
        elif tag == ' ' and old_left > 0 and new_left > 0:
            old_left, new_left = old_left - 1, new_left - 1
        elif tag == '-' and old_left > 0:
            old_left -= 1
        elif tag == '+' and new_left > 0:
            new_left -= 1
        else:
            raise PatchFormatError(f'{source}, line {i + 1}: hunk {hunk.header} does not match the line counts of its header; the patch file is damaged.')
        if tag != '\\':
            hunk.ops.append((tag, text))
        last_tag = tag
        i += 1
    return hunk, i

def parse_patch(text, source='<patch>'):
    """Unified diff text -> [FilePatch]. Lines outside file headers and hunks (commentary,
    'diff --git', 'index') are ignored, as `patch` does."""
    lines = [line[:-1] if line.endswith('\r') else line for line in text.split('\n')]
    file_patches = []
    i = 0
    while i < len(lines):
        if lines[i].startswith('--- ') and i + 1 < len(lines) and lines[i + 1].startswith('+++ '):
            file_patches.append(FilePatch(_target_path(lines[i], lines[i + 1], source, i + 1), [], source))
            i += 2
        elif lines[i].startswith('@@'):
            if not file_patches:
                raise PatchFormatError(f'{source}, line {i + 1}: a hunk comes before any "--- a/FILE" / "+++ b/FILE" header.')
            hunk, i = _parse_hunk(lines, i, source)
            file_patches[-1].hunks.append(hunk)
        else:
            i += 1
    if not file_patches:
        raise PatchFormatError(f'{source} holds no unified diff (no "--- a/FILE" / "+++ b/FILE" header).')
    for file_patch in file_patches:
        if not file_patch.hunks:
            raise PatchFormatError(f'{source}: the diff of {file_patch.path} has no hunks.')
    return file_patches

def load_patches(patch_dir):
    """Parse every .diff / .patch file of `patch_dir` (name order) -> [FilePatch]."""
    names = sorted(n for n in os.listdir(patch_dir) if n.endswith(PATCH_SUFFIXES))
    if not names:
        raise PatchFormatError(f'{patch_dir} holds no .diff or .patch files.')
    file_patches = []
    for name in names:
        with open(os.path.join(patch_dir, name), 'rb') as f:
            text = f.read().decode('utf-8', errors='surrogateescape')
        file_patches += parse_patch(text, source=name)
    return file_patches

def default_patch_dir():
    """The shipped patches: mspe_plugin/patches when pip-installed, else the repo's patches/."""
    package_dir = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(package_dir, 'patches'), os.path.join(os.path.dirname(package_dir), 'patches')):
        if any(glob.glob(os.path.join(candidate, '*' + suffix)) for suffix in PATCH_SUFFIXES):
            return candidate
    return None

#----------------------------------------------------------------------------
# Matching and applying hunks to a file held in memory as [(text, line end)].

class HunkMismatch(Exception):
    """A hunk whose lines are not in the file; str() says which hunk and the first differing line."""

def split_lines(text):
    """File text -> [(line text, line end)] with line end '\\n', '\\r\\n' or '' (last line, no newline)."""
    parts = text.split('\n')
    lines = [(part[:-1], '\r\n') if part.endswith('\r') else (part, '\n') for part in parts[:-1]]
    if parts[-1]:
        lines.append((parts[-1], ''))
    return lines

def join_lines(lines):
    """Inverse of split_lines."""
    return ''.join(text + end for text, end in lines)

def _same(a, b, loose):
    return a.rstrip() == b.rstrip() if loose else a == b

def _positions_outward(expected, lo, hi):
    """lo..hi ordered by distance from `expected`."""
    yield expected
    for step in range(1, max(expected - lo, hi - expected) + 1):
        for pos in (expected - step, expected + step):
            if lo <= pos <= hi:
                yield pos

def find_block(texts, wanted, expected, floor=0):
    """Index of the first line where the consecutive lines `wanted` occur in `texts`, searching
    outward from `expected` and never before `floor`; exact matches first, then matches that
    ignore trailing whitespace. None when they occur nowhere."""
    last = len(texts) - len(wanted)
    if last < floor:
        return None
    expected = min(max(expected, floor), last)
    for loose in (False, True):
        for pos in _positions_outward(expected, floor, last):
            if all(_same(texts[pos + k], line, loose) for k, line in enumerate(wanted)):
                return pos
    return None

def _describe_mismatch(texts, wanted, expected, floor):
    """Where `wanted` comes closest to matching (most equal lines, nearest `expected`) and the
    first line that differs there, as a phrase for the report."""
    last = len(texts) - len(wanted)
    if last < max(floor, 0):
        return f'the file has too few lines after line {floor} for this hunk'
    def score(pos):
        return sum(_same(texts[pos + k], line, True) for k, line in enumerate(wanted))
    best = max(range(floor, last + 1), key=lambda pos: (score(pos), -abs(pos - expected)))
    k = next(k for k, line in enumerate(wanted) if not _same(texts[best + k], line, True))
    return f'closest at line {best + k + 1}: expected {wanted[k].strip()!r}, found {texts[best + k].strip()!r}'

def apply_file_patch(lines, file_patch, reverse=False):
    """Apply (or, reverse=True, undo) the hunks of `file_patch` to [(text, line end)] lines.
    Returns (new lines, [offset of each hunk from the line the diff names]); raises HunkMismatch.
    Context lines keep the file's own text and line ends; inserted lines take the file's
    dominant line end."""
    crlf = sum(end == '\r\n' for _, end in lines) > sum(end == '\n' for _, end in lines)
    eol = '\r\n' if crlf else '\n'
    drop, add = ('+', '-') if reverse else ('-', '+')
    out = list(lines)
    drift, floor, offsets = 0, 0, []
    for index, hunk in enumerate(file_patch.hunks):
        before = hunk.side(new=reverse)
        after = hunk.side(new=not reverse)
        start = hunk.old_start if reverse else hunk.new_start
        declared = start if not after else start - 1      # '+5,0' names the line before the hunk
        texts = [text for text, _ in out]
        pos = find_block(texts, before, declared + drift, floor)
        if pos is None:
            where = _describe_mismatch(texts, before, declared + drift, floor)
            if find_block(texts, after, declared + drift) is not None and before != after:
                where += (' (this hunk is not applied here)' if reverse else
                          ' (this hunk\'s change is already there: the file is partly patched)')
            raise HunkMismatch(f'hunk {index + 1}/{len(file_patch.hunks)} {hunk.header} does not match; {where}')
        drift = pos - declared
        offsets.append(drift)
        reaches_end = pos + len(before) == len(out)
        cursor, replacement = pos, []
        for tag, text in hunk.ops:
            if tag == ' ':
                replacement.append(out[cursor])
                cursor += 1
            elif tag == drop:
                cursor += 1
            elif tag == add:
                replacement.append((text, eol))
        replacement = [(text, end or eol) for text, end in replacement[:-1]] + replacement[-1:]
        if reaches_end and replacement:
            after_newline = hunk.old_eof_newline if reverse else hunk.new_eof_newline
            before_newline = hunk.new_eof_newline if reverse else hunk.old_eof_newline
            last_end = out[-1][1] if before else eol
            if not after_newline:
                last_end = ''
            elif not before_newline:
                last_end = eol
            replacement[-1] = (replacement[-1][0], last_end)
        out[pos:pos + len(before)] = replacement
        floor = pos + len(replacement)
    return out, offsets

#----------------------------------------------------------------------------
# Planning every file before writing any.

@dataclasses.dataclass
class FilePlan:
    """What mspe-patch found for one target file and what it would write."""
    path: str                           # Checkout-relative path.
    state: str                          # 'applies', 'applied', 'drifted' or 'missing'.
    detail: str = ''                    # Offsets, or why the file does not match.
    result: bytes = None                # New content for the requested action; None: leave alone.

def _offset_note(offsets):
    moved = sorted({o for o in offsets if o})
    return '' if not moved else ' (found at offset ' + ', '.join(f'{o:+d}' for o in moved) + ' lines)'

def plan_file(root, path, file_patches, revert=False):
    """Decide the state of one target file and compute, in memory, its patched (or reverted)
    content. The reversed diff is tried first: a file that already has the change is 'applied'."""
    full = os.path.join(root, *path.split('/'))
    if not os.path.isfile(full):
        return FilePlan(path, 'missing', 'not found in the checkout')
    with open(full, 'rb') as f:
        lines = split_lines(f.read().decode('utf-8', errors='surrogateescape'))
    try:
        reverted, offsets = lines, []
        for file_patch in reversed(file_patches):
            reverted, more = apply_file_patch(reverted, file_patch, reverse=True)
            offsets += more
        result = join_lines(reverted).encode('utf-8', errors='surrogateescape') if revert else None
        return FilePlan(path, 'applied', _offset_note(offsets) if revert else '', result)
    except HunkMismatch as err:
        reverse_failure = str(err)
    try:
        patched, offsets = lines, []
        for file_patch in file_patches:
            patched, more = apply_file_patch(patched, file_patch)
            offsets += more
        result = None if revert else join_lines(patched).encode('utf-8', errors='surrogateescape')
        return FilePlan(path, 'applies', '' if revert else _offset_note(offsets), result)
    except HunkMismatch as err:
        return FilePlan(path, 'drifted', reverse_failure if revert else str(err))

def plan_checkout(root, file_patches, revert=False):
    """FilePlan of every file the patches touch, in the order they first appear."""
    by_path = {}
    for file_patch in file_patches:
        by_path.setdefault(file_patch.path, []).append(file_patch)
    return [plan_file(root, path, group, revert=revert) for path, group in by_path.items()]

def write_plans(root, plans):
    """Write every planned result, all or none: each goes to a temporary file beside its target
    first (same permissions), and only when all are written are they renamed into place."""
    staged = []
    try:
        for plan in plans:
            if plan.result is None:
                continue
            target = os.path.realpath(os.path.join(root, *plan.path.split('/')))    # a linked file stays linked
            handle, temp = tempfile.mkstemp(prefix='.mspe-patch-', dir=os.path.dirname(target))
            staged.append((temp, target))
            with os.fdopen(handle, 'wb') as f:
                f.write(plan.result)
            shutil.copymode(target, temp)
    except OSError:
        for temp, _ in staged:
            if os.path.exists(temp):
                os.remove(temp)
        raise
    for temp, target in staged:
        os.replace(temp, target)

#----------------------------------------------------------------------------
# Command line.

class UsageProblem(click.ClickException):
    """A wrong path or patch folder: exit status 2."""
    exit_code = 2

class CannotApply(click.ClickException):
    """A drifted or missing file: exit status 1, nothing written."""
    exit_code = 1

# Report label of each state, per run: --check, apply, apply that failed, --revert, --revert that failed.
_LABELS = {
    'check':         dict(applies='applies', applied='already applied'),
    'apply':         dict(applies='patched', applied='already applied'),
    'apply-failed':  dict(applies='applies', applied='already applied'),
    'revert':        dict(applies='not applied (nothing to revert)', applied='reverted'),
    'revert-failed': dict(applies='not applied', applied='applied (can be reverted)'),
}

def _check_checkout(root, file_patches):
    """Refuse, in one sentence, a PATH that is not a checkout the patches are meant for."""
    if not os.path.isdir(root):
        what = 'is not a folder' if os.path.exists(root) else 'does not exist'
        raise UsageProblem(f'{root} {what}; pass the root folder of a StyleGAN2-ADA checkout (the one holding train.py).')
    targets = list(dict.fromkeys(fp.path for fp in file_patches))
    if not any(os.path.isfile(os.path.join(root, *t.split('/'))) for t in targets):
        raise UsageProblem(f'{root} is not a StyleGAN2-ADA checkout (it holds none of {", ".join(targets)}); '
                           f'pass the folder that holds them.')

@click.command(context_settings=dict(help_option_names=['-h', '--help']))
@click.argument('path', metavar='PATH')
@click.option('--check', is_flag=True, help='Only report, per file, whether the patches apply, are already applied, or drifted.')
@click.option('--revert', is_flag=True, help='Remove the patches again.')
@click.option('--patches', 'patch_dir', default=None, metavar='DIR', help='Apply the .diff files of DIR instead of the shipped ones.')
def main(path, check, revert, patch_dir):
    """Add the mspe_plugin hook (--cfg=mspe/sspe, --pe, canvas flags) to the StyleGAN2-ADA
    checkout or fork at PATH. Nothing is written unless every hunk of every file matches.

    \b
    mspe-patch ~/stylegan2-ada-pytorch --check    # what would happen
    mspe-patch ~/stylegan2-ada-pytorch            # patch train.py, generate.py, projector.py
    mspe-patch ~/stylegan2-ada-pytorch --revert   # take the patches out again
    """
    if check and revert:
        raise click.UsageError('--check and --revert exclude each other; run --check alone to see the state.')
    if patch_dir is None:
        patch_dir = default_patch_dir()
        if patch_dir is None:
            raise UsageProblem('the shipped patches are missing from this mspe_plugin installation; reinstall mspe or pass --patches DIR.')
    elif not os.path.isdir(patch_dir):
        raise UsageProblem(f'--patches {patch_dir} is not a folder; pass the folder that holds the .diff files.')
    try:
        file_patches = load_patches(patch_dir)
    except (PatchFormatError, OSError) as err:
        raise UsageProblem(str(err))
    _check_checkout(path, file_patches)

    try:
        plans = plan_checkout(path, file_patches, revert=revert)
    except OSError as err:
        raise CannotApply(f'could not read {err.filename} ({err.strerror}); check its permissions.')
    failed = [plan.path for plan in plans if plan.state in ('drifted', 'missing')]
    run = 'check' if check else ('revert' if revert else 'apply') + ('-failed' if failed else '')
    width = max(len(plan.path) for plan in plans)
    for plan in plans:
        if plan.state in ('drifted', 'missing'):
            click.echo(f'{plan.path:<{width}}  {plan.state}: {plan.detail}')
        else:
            click.echo(f'{plan.path:<{width}}  {_LABELS[run][plan.state]}{plan.detail}')
    if failed:
        action = 'reverted' if revert else 'patched'
        outcome = '' if check else ', so nothing was written'
        raise CannotApply(f'{", ".join(failed)} cannot be {action} cleanly (see above){outcome}; '
                          f'restore {"them" if len(failed) > 1 else "it"} from upstream or port the hunk by hand, then run mspe-patch again.')
    if check:
        return
    try:
        write_plans(path, plans)
    except OSError as err:
        raise CannotApply(f'could not write into {path} ({err.strerror}), so nothing was changed; check its permissions.')
    changed = sum(plan.result is not None for plan in plans)
    if changed == 0:
        click.echo('Nothing to do: ' + ('no patch is applied.' if revert else 'every patch is already applied.'))
    elif revert:
        click.echo(f'Reverted {changed} file(s) in {path}.')
    else:
        click.echo(f'Patched {changed} file(s) in {path}; the patched scripts need mspe_plugin importable (pip install mspe).')

if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
