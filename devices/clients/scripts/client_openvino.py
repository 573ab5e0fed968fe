"""OpenVINO's Model API given only the model's path: ``Model.create_model`` reads the model
type, labels and preprocessing from the ONNX ``metadata_props`` (``model_info ...``). It
takes images as OpenCV decodes them (BGR), so each RGB image is handed over as BGR."""

from _protocol import main


def classify(model, images):
    import openvino
    from model_api.models import Model

    classifier = Model.create_model(model, device="CPU")
    labels = []
    for rgb in images:
        best = classifier(rgb[..., ::-1].copy()).top_labels[0]
        labels.append(best.name)
    return labels, f"openvino {openvino.__version__}"


if __name__ == "__main__":
    main(classify, "openvino-model-api[onnx]")
