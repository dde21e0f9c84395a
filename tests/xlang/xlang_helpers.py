"""Functions the tests allow by module name, as a user's own module would be."""

from liveinference import PredictionResult


def label_name(result: PredictionResult) -> PredictionResult:
    """Turns a 0/1 label into a word."""
    return result._replace(inference="positive" if result.inference == 1 else "negative")


def not_a_prediction(result: PredictionResult) -> str:
    """Returns a plain string, which the typed output refuses."""
    return f"{result.inference}"
