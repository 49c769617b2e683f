"""Six nodes wired like examples/penguins/pipeline.yaml."""

from kedro.pipeline import Node, Pipeline

from .nodes import deploy, evaluate, featurise, register, train, validate


def create_pipeline(**kwargs: object) -> Pipeline:
    return Pipeline(
        [
            Node(validate, ["penguins_raw", "params:expectations"], "penguins_validated", name="validate"),
            Node(featurise, ["penguins_validated", "params:features"], "penguins_features", name="featurise"),
            Node(train, ["penguins_features", "params:train"], ["model", "test_data"], name="train"),
            Node(evaluate, ["model", "test_data", "params:evaluate"], "evaluation", name="evaluate"),
            Node(register, ["model", "evaluation", "params:register"], "model_version", name="register"),
            Node(deploy, ["model_version", "params:deploy"], "deployment", name="deploy"),
        ]
    )
