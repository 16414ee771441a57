"""Imported last by the forkserver, after everything it preloads.

`gc.freeze()` moves every object the preloads created (torch, dynamo: millions of them) into
a permanent generation the collector never scans. Without it, the first collection in each
forked worker walks all of them, touching their pages and so copying them (copy-on-write):
hundreds of milliseconds per worker and a larger RSS.
"""

import gc

gc.freeze()
