"""What a model event says, and how it is written as JSON in a channel message."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Union

from liveinference.contract import KeyModelPathMapping, ModelMetadata

__all__ = ["Offer", "decode_offer", "encode_offer"]

Offer = Union[ModelMetadata, List[KeyModelPathMapping]]


def encode_offer(offer: Any) -> Dict[str, Any]:
    """Returns the JSON fields of a model event.

    Raises:
        ValueError: if `offer` is neither ModelMetadata nor a list of KeyModelPathMapping.
    """
    if isinstance(offer, ModelMetadata):
        return {"model_id": offer.model_id, "model_name": offer.model_name}
    if isinstance(offer, Sequence) and not isinstance(offer, str) and all(
        isinstance(m, KeyModelPathMapping) for m in offer
    ):
        return {
            "keys": [
                {"keys": list(m.keys), "update_path": m.update_path, "model_id": m.model_id}
                for m in offer
            ]
        }
    raise ValueError(
        f"a model event must be ModelMetadata(model_id, model_name) or a list of "
        f"KeyModelPathMapping, got {type(offer).__name__}: {offer!r}"
    )


def decode_offer(fields: Dict[str, Any]) -> Offer:
    """Returns the model event written by `encode_offer`.

    Raises:
        ValueError: if the fields name no model.
    """
    if "keys" in fields:
        return [
            KeyModelPathMapping(m["keys"], m["update_path"], m.get("model_id", ""))
            for m in fields["keys"]
        ]
    if not isinstance(fields.get("model_id"), str):
        raise ValueError(f"event {fields!r} names no model_id; it was not written by publish")
    return ModelMetadata(fields["model_id"], fields.get("model_name", ""))
