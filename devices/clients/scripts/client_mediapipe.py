"""MediaPipe Tasks ``ImageClassifier`` given only the model's path: it reads the input's
normalization and the labels from the file's standard TFLite metadata itself."""

from _protocol import main


def classify(model, images):
    import mediapipe as mp
    from mediapipe.tasks.python.vision import ImageClassifier

    labels = []
    with ImageClassifier.create_from_model_path(model) as classifier:
        for rgb in images:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb.copy(order="C"))
            best = classifier.classify(image).classifications[0].categories[0]
            labels.append(best.category_name or f"#{best.index} (no label in the file)")
    return labels, f"mediapipe {mp.__version__}"


if __name__ == "__main__":
    main(classify, "mediapipe")
