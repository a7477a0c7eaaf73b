"""Loading trained and exported models and predicting with them: what predict, evaluate and
export share.

    loading.py     a checkpoint or an exported file -> LoadedModel (model, classes, transform)
    exported.py    reading what `hymtl export` wrote (TorchScript, ONNX) and its metadata
    exporting.py   writing a model as TorchScript or ONNX, with its metadata
    predicting.py  the files of inputs=, and one row of probabilities per usable image
    evaluating.py  a checkpoint's metrics on a split
    verifying.py   how an export agrees with its checkpoint, on the run's images
"""
