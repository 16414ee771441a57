"""Imported last by the forkserver, after everything it preloads.

`gc.freeze()` moves every object the preloads created (torch, dynamo: millions of them) into
a permanent generation the collector never scans. Without it, the first collection in each
forked worker walks all of them, touching their pages and so copying them (copy-on-write):
hundreds of milliseconds per worker and a larger RSS.

Before that, the adaptive stop's statistics run once: their first call initialises scipy's
distributions lazily, which would otherwise happen in every worker's timed window.
"""

import gc

from bench.stats import relative_ci_halfwidth

relative_ci_halfwidth([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], 0.95)
gc.freeze()
