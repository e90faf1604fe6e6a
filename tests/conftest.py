"""What every test shares: one OpenMP thread, set before torch is imported.

The tests run many small tensor operations, where torch's second intra-op thread only adds a wait at the
end of each parallel region; and when another process keeps the cores busy (CI's neighbours, `.ci/stress`)
each region waits for a thread the scheduler has not run yet. Measured on this 2-core machine with two busy
loops: `tests/lm` took 139 s on torch's default threads and 92 s on one (58 s unloaded). Set in the
environment, so the processes the tests start (the app's server, training workers, distributed ranks)
inherit it. A test that needs another count sets it itself (`torch.set_num_threads`); a value the user
exported wins.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
