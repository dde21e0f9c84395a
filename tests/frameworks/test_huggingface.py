"""Hugging Face handlers against transformers called directly, on a tiny model built here.

The model has random weights from a small BertConfig and its tokenizer is trained on a few
sentences with the `tokenizers` package; both are written with save_pretrained. Nothing is
downloaded: HF_HUB_OFFLINE is set before transformers is imported.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import ast  # noqa: E402
import importlib.util  # noqa: E402
import inspect  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import apache_beam as beam  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import liveinference  # noqa: E402
from liveinference import InvalidExampleError, ModelLoadError, RunInference  # noqa: E402
from liveinference import huggingface_inference as our_hf  # noqa: E402
from liveinference.frameworks.huggingface import (  # noqa: E402
    HuggingFaceModelHandlerKeyedTensor,
    HuggingFaceModelHandlerTensor,
    HuggingFacePipelineModelHandler,
    PipelineTask,
)

from beam_arguments import names_as_of_2_77  # noqa: E402

SENTENCES = [
    "the cat sat on the mat", "a dog ran in the park", "the bird sang a song",
    "good movie", "bad movie", "what a great day", "the food was cold",
]
LENGTH = 8
MODEL_CLASS = transformers.AutoModelForSequenceClassification


def _train_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(SENTENCES, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[(token, tokenizer.token_to_id(token)) for token in ("[CLS]", "[SEP]")],
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Directories: the model with its tokenizer, the tokenizer alone, the model alone."""
    tokenizer = _train_tokenizer()
    config = transformers.BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32, num_labels=2,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    root = tmp_path_factory.mktemp("hf")
    dirs = {name: root / name for name in ("full", "tokenizer_only", "model_only")}
    model.save_pretrained(dirs["full"])
    tokenizer.save_pretrained(dirs["full"])
    tokenizer.save_pretrained(dirs["tokenizer_only"])
    model.save_pretrained(dirs["model_only"])
    return {"model": model, "tokenizer": tokenizer, **{name: str(path) for name, path in dirs.items()}}


def _encode(tokenizer, sentences):
    return tokenizer(sentences, padding="max_length", max_length=LENGTH, return_tensors="pt")


def _logits(model, **inputs):
    with torch.no_grad():
        return model(**inputs).logits


def _beam_init_parameters():
    """Beam's constructor parameters, read from its source: the module imports TensorFlow
    and TFAutoModel, which transformers 5 no longer has, so it cannot be imported here."""
    location = importlib.util.find_spec("apache_beam").submodule_search_locations[0]
    path = os.path.join(location, "ml", "inference", "huggingface_inference.py")
    with open(path) as file:
        tree = ast.parse(file.read())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    args = item.args
                    names = [a.arg for a in args.args + args.kwonlyargs] + ([args.kwarg.arg] if args.kwarg else [])
                    found[node.name] = names[1:]
    return found


def test_handlers_take_beams_arguments():
    beams = _beam_init_parameters()
    assert set(beams) == set(our_hf.__all__) - {"PipelineTask"}
    for name, parameters in beams.items():
        ours = list(inspect.signature(getattr(our_hf, name).__init__).parameters)[1:]
        assert ours == names_as_of_2_77(parameters), name


def test_the_huggingface_module_never_imports_beams_inference_package():
    code = (
        "import sys, liveinference.huggingface_inference\n"
        "assert not [m for m in sys.modules if m.startswith('apache_beam.ml')]\n"
    )
    library = os.path.dirname(os.path.dirname(liveinference.__file__))
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": library})


def test_tensor_and_keyed_tensor_handlers_predict_as_the_model_does(run_pipeline, saved):
    encoded = _encode(saved["tokenizer"], SENTENCES)
    ids = list(encoded["input_ids"])
    keyed = [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i]} for i in range(len(SENTENCES))]
    tensor_handler = liveinference.KeyedModelHandler(HuggingFaceModelHandlerTensor(saved["full"], MODEL_CLASS, max_batch_size=4))
    keyed_handler = liveinference.KeyedModelHandler(HuggingFaceModelHandlerKeyedTensor(saved["full"], MODEL_CLASS, "pt"))

    def build(p):
        return {
            "tensor": p | "Ids" >> beam.Create(list(enumerate(ids))) | "Tensor" >> RunInference(tensor_handler),
            "keyed": p | "Dicts" >> beam.Create(list(enumerate(keyed))) | "Keyed" >> RunInference(keyed_handler),
        }

    out = run_pipeline(build)
    plain = _logits(saved["model"], input_ids=encoded["input_ids"])
    masked = _logits(saved["model"], **encoded)
    for name, expected in (("tensor", plain), ("keyed", masked)):
        got = dict(out[name])
        assert sorted(got) == list(range(len(SENTENCES)))
        for index, result in got.items():
            torch.testing.assert_close(result.inference["logits"], expected[index], rtol=1e-5, atol=1e-6)
            assert result.model_id == saved["full"]


def test_pipeline_handler_predicts_as_the_transformers_pipeline_does(run_pipeline, saved):
    handler = HuggingFacePipelineModelHandler(PipelineTask.TextClassification, saved["full"], device="CPU")
    out = run_pipeline(lambda p: {"r": p | beam.Create(SENTENCES) | RunInference(handler)})["r"]
    direct = transformers.pipeline("text-classification", model=saved["full"], device="cpu")
    expected = dict(zip(SENTENCES, direct(SENTENCES)))
    assert len(out) == len(SENTENCES)
    for result in out:
        assert result.inference["label"] == expected[result.example]["label"]
        assert result.inference["score"] == pytest.approx(expected[result.example]["score"], rel=1e-5)
        assert result.model_id == saved["full"]


def test_custom_inference_fn_gets_the_device_and_inference_args(saved):
    seen = {}

    def inference_fn(batch, model, device, inference_args, model_id):
        seen.update(device=device, inference_args=inference_args, model_id=model_id)
        return [liveinference.PredictionResult(example, 0, model_id) for example in batch]

    handler = HuggingFaceModelHandlerTensor(saved["full"], MODEL_CLASS, inference_fn=inference_fn)
    RunInference(handler, inference_args={"output_attentions": False})
    handler.run_inference([torch.zeros(LENGTH, dtype=torch.long)], handler.load_model(), {"output_attentions": False})
    assert seen == {"device": "CPU", "inference_args": {"output_attentions": False}, "model_id": None}


def test_gpu_device_runs_on_cuda_or_falls_back_to_cpu_with_a_warning(saved, caplog):
    handler = HuggingFaceModelHandlerTensor(saved["full"], MODEL_CLASS, device="GPU")
    with caplog.at_level("WARNING", logger="liveinference.frameworks.huggingface"):
        model = handler.load_model()
    ids = _encode(saved["tokenizer"], SENTENCES[:2])["input_ids"]
    results = list(handler.run_inference(list(ids), model))
    expected = _logits(saved["model"], input_ids=ids)
    torch.testing.assert_close(torch.stack([r.inference["logits"].cpu() for r in results]), expected, rtol=1e-4, atol=1e-5)
    if torch.cuda.is_available():
        assert next(model.parameters()).device.type == "cuda"
    else:
        assert "asked for device='GPU', but CUDA is not available" in caplog.text
        assert next(model.parameters()).device.type == "cpu"


def test_tensorflow_tensors_are_stacked_with_tensorflow(saved):
    tf = pytest.importorskip("tensorflow")

    class SummingModel:
        """Stands in for a TF model class: transformers 5 has none."""

        @classmethod
        def from_pretrained(cls, path, **kwargs):
            return lambda input_ids: {"total": tf.reduce_sum(input_ids, axis=1)}

    handler = HuggingFaceModelHandlerKeyedTensor(saved["full"], SummingModel, "tf")
    batch = [{"input_ids": tf.constant([1, 2])}, {"input_ids": tf.constant([3, 4])}]
    results = list(handler.run_inference(batch, handler.load_model()))
    assert [int(r.inference["total"]) for r in results] == [3, 7]


def test_tokenizer_directory_without_a_model_is_named(saved):
    with pytest.raises(ModelLoadError, match=r"tokenizer_only.* holds no model \(only a tokenizer\).*no config\.json.*save_pretrained"):
        HuggingFaceModelHandlerTensor(saved["tokenizer_only"], MODEL_CLASS).load_model()
    with pytest.raises(ModelLoadError, match=r"tokenizer_only.* holds no model"):
        HuggingFacePipelineModelHandler("text-classification", saved["tokenizer_only"]).load_model()


def test_model_directory_without_a_tokenizer_is_refused_by_the_pipeline_handler(saved):
    with pytest.raises(ModelLoadError, match=r"model_only.* holds a model but no tokenizer.*tokenizer\.save_pretrained"):
        HuggingFacePipelineModelHandler("text-classification", saved["model_only"], device="CPU").load_model()


def test_hub_name_is_not_downloaded_and_the_error_says_to_pass_a_directory():
    message = r"'no-such-org/tiny-bert': it is not a local directory, and liveinference does not download models.*pass that directory"
    with pytest.raises(ModelLoadError, match=message):
        HuggingFaceModelHandlerKeyedTensor("no-such-org/tiny-bert", MODEL_CLASS, "pt").load_model()
    with pytest.raises(ModelLoadError, match=message):
        HuggingFacePipelineModelHandler("text-classification", "no-such-org/tiny-bert", device="CPU").load_model()
    with pytest.raises(ModelLoadError, match=r"no model was given for task 'fill-mask'.*pass that directory"):
        HuggingFacePipelineModelHandler(task="fill-mask", device="CPU").load_model()


def test_constructor_refuses_what_cannot_work(saved):
    with pytest.raises(ValueError, match="needs both model_uri .* and model_class"):
        HuggingFaceModelHandlerTensor(saved["full"], None)
    with pytest.raises(ValueError, match="framework must be 'pt' .* or 'tf' .*, got 'jax'"):
        HuggingFaceModelHandlerKeyedTensor(saved["full"], MODEL_CLASS, "jax")
    with pytest.raises(ValueError, match="device must be 'CPU' or 'GPU', got 'TPU'"):
        HuggingFacePipelineModelHandler("fill-mask", saved["full"], device="TPU")
    with pytest.raises(ValueError, match="needs a task or a model"):
        HuggingFacePipelineModelHandler()
    with pytest.raises(ValueError, match="device 'GPU' is given both as an argument and in load_pipeline_args"):
        HuggingFacePipelineModelHandler("fill-mask", saved["full"], device="GPU", load_pipeline_args={"device": "cpu"})


def test_examples_that_cannot_be_stacked_say_why(saved):
    handler = HuggingFaceModelHandlerTensor(saved["full"], MODEL_CLASS)
    model = handler.load_model()
    with pytest.raises(InvalidExampleError, match=r"full.*shapes \[\(5,\), \(8,\)\]; pad them to one length"):
        handler.run_inference([torch.zeros(8, dtype=torch.long), torch.zeros(5, dtype=torch.long)], model)
    with pytest.raises(InvalidExampleError, match=r"must be torch\.Tensor or tf\.Tensor, got \['str'\]"):
        handler.run_inference(["the cat"], model)
    keyed = HuggingFaceModelHandlerKeyedTensor(saved["full"], MODEL_CLASS, "pt")
    ids = torch.zeros(LENGTH, dtype=torch.long)
    with pytest.raises(InvalidExampleError, match=r"same keys; of the 2 examples in this batch, 'attention_mask' is in 1"):
        keyed.run_inference([{"input_ids": ids, "attention_mask": ids}, {"input_ids": ids}], model)


def test_token_ids_outside_the_vocabulary_name_the_model(saved):
    handler = HuggingFaceModelHandlerTensor(saved["full"], MODEL_CLASS)
    with pytest.raises(InvalidExampleError, match=r"model '.*full': the model cannot take examples of shape \(8,\)"):
        handler.run_inference([torch.full((LENGTH,), 10_000)], handler.load_model())


def test_bad_rows_go_to_dead_letters_and_the_rest_are_predicted(run_pipeline, saved):
    ids = list(_encode(saved["tokenizer"], SENTENCES[:4])["input_ids"])
    tensors = [(f"g{i}", t) for i, t in enumerate(ids)] + [("float", torch.zeros(LENGTH)), ("unknown-id", torch.full((LENGTH,), 10_000))]
    texts = ["good movie", 42, "bad movie", None]
    tensor_handler = liveinference.KeyedModelHandler(
        HuggingFaceModelHandlerTensor(saved["full"], MODEL_CLASS, min_batch_size=6, max_batch_size=6)
    )
    pipeline_handler = HuggingFacePipelineModelHandler("text-classification", saved["full"], device="CPU", min_batch_size=4)

    def build(p):
        tensor_results, tensor_dead = (
            p | "Tensors" >> beam.Create(tensors, reshuffle=False) | "RunTensors" >> RunInference(tensor_handler).with_exception_handling()
        )
        text_results, text_dead = (
            p | "Texts" >> beam.Create(texts, reshuffle=False) | "RunTexts" >> RunInference(pipeline_handler).with_exception_handling()
        )
        return {
            "tensor_results": tensor_results, "tensor_dead": tensor_dead.failed_inferences,
            "text_results": text_results, "text_dead": text_dead.failed_inferences,
        }

    out = run_pipeline(build)
    assert sorted(key for key, _ in out["tensor_results"]) == ["g0", "g1", "g2", "g3"]
    assert sorted(record.element[0] for record in out["tensor_dead"]) == ["float", "unknown-id"]
    assert sorted(r.example for r in out["text_results"]) == ["bad movie", "good movie"]
    assert sorted(map(repr, (record.element for record in out["text_dead"]))) == ["42", "None"]
    dead = out["tensor_dead"] + out["text_dead"]
    assert {record.exception_type for record in dead} == {"liveinference.errors.InvalidExampleError"}
