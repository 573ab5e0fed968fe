"""The one protocol of the client scripts beside this file (standard library + numpy only;
nothing of edge-transfer): ``python client_NAME.py MODEL IMAGES.npy OUT.json``.

IMAGES.npy holds uint8 RGB images (N, H, W, 3), the way a photo is decoded. The script runs
MODEL through the client's own API, one image at a time, and writes OUT.json:
``{"labels": [top-1 label per image], "version": "<client version>"}``. Exit codes:
0 ran; 3 the client is not installed here (``{"missing": "..."}``); 4 the client refused
the file or failed on it (``{"refused": "..."}``, its own message).
"""

import json
import sys
import traceback

MISSING, REFUSED = 3, 4


class Refused(Exception):
    """The file lacks what the client needs (said in the client's terms)."""


def main(classify, package):
    model, images_path, out = sys.argv[1:4]
    import numpy as np

    images = np.load(images_path, allow_pickle=False)
    try:
        labels, version = classify(model, images)
    except ImportError as exc:
        _write(out, {"missing": f"{package} is not installed for {sys.executable} ({exc})"})
        sys.exit(MISSING)
    except Exception as exc:  # the client's own error is the row's reason
        message = " ".join(str(exc).split()) or type(exc).__name__
        if not isinstance(exc, Refused):
            message = f"{type(exc).__name__}: {message}"
            traceback.print_exc()
        _write(out, {"refused": message[:600]})
        sys.exit(REFUSED)
    _write(out, {"labels": [str(label) for label in labels], "version": version})


def _write(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
