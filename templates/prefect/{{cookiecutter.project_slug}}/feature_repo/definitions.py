"""Feast definitions: the entity ``wine``, one feature view over the sample data, one feature service.

The source is ``../data/wines.parquet`` (written by ``python -m {{ cookiecutter.project_slug }}.data``);
Feast resolves it against this directory, not the working directory.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Float64

MEASUREMENTS = [
    "alcohol",
    "malic_acid",
    "ash",
    "alcalinity_of_ash",
    "magnesium",
    "total_phenols",
    "flavanoids",
    "nonflavanoid_phenols",
    "proanthocyanins",
    "color_intensity",
    "hue",
    "od280_od315",
    "proline",
]

wine = Entity(
    name="wine",
    join_keys=["wine_id"],
    value_type=ValueType.INT64,
    description="One wine sample (wine_id = row number in the sample data).",
)

wines_source = FileSource(
    name="wines_source",
    path="../data/wines.parquet",
    timestamp_field="event_timestamp",
)

wine_measurements = FeatureView(
    name="wine_measurements",
    entities=[wine],
    ttl=timedelta(0),  # 0 = no TTL: a measurement stays valid for any later entity row
    schema=[Field(name=name, dtype=Float64) for name in MEASUREMENTS],
    source=wines_source,
    online=True,
    description="Chemical analysis of each wine.",
)

wine_features = FeatureService(
    name="wine_features",
    features=[wine_measurements],
    description="The features the classifier trains on.",
)
