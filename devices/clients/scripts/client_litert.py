"""A bare LiteRT interpreter: raw RGB pixels (float32, or quantized with the input tensor's
own scale and zero point for integer inputs), argmax, and the labels from the file's
standard metadata: the TENSOR_AXIS_LABELS file packed into the model (a zip archive)."""

import zipfile

from _protocol import Refused, main


def read_labels(model):
    try:
        names = zipfile.ZipFile(model).namelist()
    except zipfile.BadZipFile:
        raise Refused("the file packs no associated files (no labels in its standard "
                      "metadata)") from None
    texts = [n for n in names if n.endswith(".txt")]
    if not texts:
        raise Refused(f"no labels file among the file's associated files {names}")
    name = next((n for n in texts if "label" in n.lower()), texts[0])
    return zipfile.ZipFile(model).read(name).decode("utf-8").splitlines()


def classify(model, images):
    import numpy as np
    from ai_edge_litert import __version__
    from ai_edge_litert.interpreter import Interpreter

    labels = read_labels(model)
    interpreter = Interpreter(model_path=model, num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    if tuple(inp["shape"][1:]) != images.shape[1:]:
        raise Refused(f"input tensor {list(inp['shape'])} does not take RGB images "
                      f"{list(images.shape[1:])}")
    result = []
    for rgb in images:
        x = rgb[None].astype(np.float32)
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        result.append(labels[int(np.argmax(interpreter.get_tensor(out["index"])[0]))])
    return result, f"ai-edge-litert {__version__}"


if __name__ == "__main__":
    main(classify, "ai-edge-litert")
