"""Adapt an Omniglot campaign's models to a 20-way 1-shot task of raw 105x105 drawings.

    metanas run examples/omniglot.yaml --out runs/omniglot
    python examples/adapt_omniglot.py runs/omniglot [ALPHABET]

The images go in as they lie in the zip: 105x105, dark strokes on white. Resizing to the
campaign's 28x28 and inverting (the campaign read its folders with invert: true) is the
learner's job. With the example campaign's seed, Greek and Korean are held-out alphabets:
no character of them was seen in meta-training.
"""

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

import metanas

run_dir = sys.argv[1] if len(sys.argv) > 1 else "runs/omniglot"
alphabet = sys.argv[2] if len(sys.argv) > 2 else "Korean"
zips = sorted((Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot").glob("images_background_small*.zip"))

# {character: [105x105 image in [0, 1], ...]} of one alphabet, straight from the zip
characters: dict[str, list[np.ndarray]] = {}
for path in zips:
    with zipfile.ZipFile(path) as zf:
        for name in sorted(zf.namelist()):
            parts = name.split("/")
            if len(parts) >= 3 and parts[-3] == alphabet and name.endswith(".png"):
                image = Image.open(io.BytesIO(zf.read(name))).convert("L")
                characters.setdefault(parts[-2], []).append(np.asarray(image, dtype=np.float32) / 255.0)
if len(characters) < 20:
    sys.exit(f"alphabet {alphabet!r}: found {len(characters)} characters in {[str(z) for z in zips]}, need 20")

rng = np.random.default_rng(0)
chosen = rng.choice(sorted(characters), size=20, replace=False)
support, support_labels, query, query_labels = [], [], [], []
for label, character in enumerate(chosen):
    drawings = rng.permutation(len(characters[character]))
    support.append(characters[character][drawings[0]])
    support_labels.append(label)
    for i in drawings[1:6]:
        query.append(characters[character][i])
        query_labels.append(label)
print(f"20-way 1-shot on {alphabet}: support {np.stack(support).shape}, query {np.stack(query).shape}")

for which in ("metanas", "metanas_derived", "reptile_conv4"):
    try:
        learner = metanas.load(run_dir, which=which)
    except ValueError as err:  # a campaign that did not meta-train this method
        print(f"{which}: {err}")
        continue
    model = learner.adapt(np.stack(support), np.array(support_labels))
    accuracy = float((model.predict(np.stack(query)) == np.array(query_labels)).mean())
    print(f"{which:<16} accuracy {accuracy:.3f}  genotype {', '.join(model.genotype)}")
