"""A one-line progress bar for long renders (tiles, video frames) without a dependency.

    bar = Progress(64, 'tiles')
    for ...:
        bar.update()
    bar.close()

On a terminal the line is redrawn in place ('\\r'); into a file or pipe it prints at most one line
per tenth of the work, so logs stay short.
"""

import sys
import time

class Progress:
    """Counts `total` steps and draws `desc [#####.....] k/total  elapsed  eta` on `stream`."""
    def __init__(self, total, desc='', stream=None, width=24, enabled=True):
        self.total = max(int(total), 1)
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.enabled = enabled
        self.count = 0
        self.start = time.monotonic()
        self._interactive = bool(getattr(self.stream, 'isatty', lambda: False)())
        self._last_decile = -1

    def line(self):
        """The progress line for the current count."""
        done = min(self.count, self.total)
        filled = self.width * done // self.total
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (self.total - done) if done else float('nan')
        eta_text = f'eta {eta:.0f}s' if done else 'eta ?'
        return f'{self.desc} [{"#" * filled}{"." * (self.width - filled)}] {done}/{self.total}  {elapsed:.0f}s  {eta_text}'

    def update(self, steps=1):
        self.count += steps
        if not self.enabled:
            return
        if self._interactive:
            self.stream.write('\r' + self.line())
            self.stream.flush()
            return
        decile = 10 * min(self.count, self.total) // self.total
        if decile != self._last_decile:
            self._last_decile = decile
            self.stream.write(self.line() + '\n')
            self.stream.flush()

    def close(self):
        if self.enabled and self._interactive:
            self.stream.write('\n')
            self.stream.flush()
