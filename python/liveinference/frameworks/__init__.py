"""Framework handlers, one module per framework; import the one you use.

`sklearn`, `pytorch`, `tensorflow`, `onnx`, `xgboost` and `huggingface` each hold Beam's
public handlers for their framework: how to load its model and call it. What they share is
written once: `base.FrameworkHandler` (model path, options, inference-args policy, errors
that name the model, results), `batches` (stacking, device placement, byte counts) and
`loading` (opening a model file, turning a failed load step into a `ModelLoadError`).
"""
