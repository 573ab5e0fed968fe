"""A bare ONNX Runtime session: raw RGB pixels, with the mean and scale the file's
``metadata_props`` declare (``model_info mean_values`` / ``scale_values``, OpenVINO Model
API's keys), argmax, and the labels from ``model_info labels``."""

from _protocol import Refused, main


def classify(model, images):
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    if "model_info labels" not in props:
        raise Refused("no 'model_info labels' in the file's metadata_props")
    labels = props["model_info labels"].split()
    mean = np.array(props.get("model_info mean_values", "0").split(), np.float32)
    scale = np.array(props.get("model_info scale_values", "1").split(), np.float32)
    inp = session.get_inputs()[0]
    nchw = len(inp.shape) == 4 and inp.shape[1] == 3 and inp.shape[-1] != 3
    if not nchw and inp.shape[-1] != images.shape[-1]:
        raise Refused(f"input {inp.name} {inp.shape} does not take RGB images")
    result = []
    for rgb in images:
        x = (rgb[None].astype(np.float32) - mean) / scale
        if nchw:
            x = x.transpose(0, 3, 1, 2)
        if inp.type == "tensor(uint8)":
            x = x.astype(np.uint8)
        scores = session.run(None, {inp.name: x})[0]
        result.append(labels[int(np.argmax(scores[0]))])
    return result, f"onnxruntime {ort.__version__}"


if __name__ == "__main__":
    main(classify, "onnxruntime")
