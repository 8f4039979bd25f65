"""Adapt a meta-learned model to a new few-shot task from Python.

    make demo                                     # writes runs/demo-<time>/
    python examples/adapt_to_new_task.py          # the newest runs/demo*, or name a run directory
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

import metanas

if len(sys.argv) > 1:
    run_dir = sys.argv[1]
else:  # the newest demo run (`make demo` stamps its directory with the time)
    runs = sorted(Path("runs").glob("demo*/summary.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        sys.exit("no finished demo under runs/: run `make demo`, or pass a campaign's run directory")
    run_dir = str(runs[-1].parent)
    print(f"using {run_dir}")
learner = metanas.load(run_dir)

# A 3-way 1-shot task on upside-down digits: images (N, H, W) in [0, 1], any labels.
digits = load_digits()
images = np.rot90(digits.images / 16.0, k=2, axes=(1, 2))
rng = np.random.default_rng(0)
support, query, query_labels = [], [], []
for digit in (3, 5, 8):
    idx = rng.permutation(np.flatnonzero(digits.target == digit))
    support.append(images[idx[0]])
    query.extend(images[idx[1:21]])
    query_labels.extend([digit] * 20)

model = learner.adapt(np.stack(support), np.array([3, 5, 8]))
pred = model.predict(np.stack(query))
print("genotype:", model.genotype)
print("accuracy:", float((pred == np.array(query_labels)).mean()))
